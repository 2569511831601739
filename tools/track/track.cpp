// libmemkit_track.so: an LD_PRELOAD library that records every heap allocation and
// deallocation of a program, with a short stack trace, to a binary trace file
// (trace_format.hpp), for `memkit report`.
//
// It is driven by the environment, which `memkit track` sets:
//   MEMKIT_TRACK_OUTPUT    the trace file. Without it the library only forwards calls.
//   MEMKIT_TRACK_ROOT_PID  the pid that writes MEMKIT_TRACK_OUTPUT itself; every other process
//                          (fork children, programs it executes) writes MEMKIT_TRACK_OUTPUT.<pid>
//                          (see open_trace). Unset: any process may take MEMKIT_TRACK_OUTPUT
//                          while it is empty or absent.
//
// How it stays safe inside malloc:
// - The real functions come from dlsym(RTLD_NEXT). dlsym may call calloc before they are known;
//   such calls (and any other during that window) are served from a static bootstrap buffer,
//   whose blocks are never freed.
// - A thread-local flag marks "inside the tracker": allocations made while recording (by
//   unw_backtrace, dl_iterate_phdr, pthread_atfork, ...) go straight to the real functions.
// - Events go to one buffer under one mutex, so that the file holds them in the order they
//   happened. The stack is captured before taking the mutex, where most of the time goes.
// - fork: the prepare handler takes the mutex and flushes; the child starts its own file with its
//   own stack and module definitions. Blocks inherited from the parent and freed in the child
//   appear as frees of unknown blocks, which the report counts separately.
// - Exit: the buffer is flushed by a library destructor (exit, return from main, exit from any
//   thread), by the _exit/_Exit wrappers, and by fatal-signal handlers installed where the
//   program keeps the default action. See trace_format.hpp for what can still be lost.
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <new>

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if MEMKIT_TRACK_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#else
#include <execinfo.h>
#endif

#include "trace_format.hpp"

#define MEMKIT_TRACK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

namespace mt = memkit::track;

using malloc_fn = void* (*)(std::size_t);
using free_fn = void (*)(void*);
using calloc_fn = void* (*)(std::size_t, std::size_t);
using realloc_fn = void* (*)(void*, std::size_t);
using reallocarray_fn = void* (*)(void*, std::size_t, std::size_t);
using posix_memalign_fn = int (*)(void**, std::size_t, std::size_t);
using aligned_alloc_fn = void* (*)(std::size_t, std::size_t);
using usable_size_fn = std::size_t (*)(void*);
using exit_fn = void (*)(int);
using execve_fn = int (*)(const char*, char* const*, char* const*);
using execvpe_fn = int (*)(const char*, char* const*, char* const*);
using execv_fn = int (*)(const char*, char* const*);
using fexecve_fn = int (*)(int, char* const*, char* const*);

struct real_functions {
    malloc_fn malloc = nullptr;
    free_fn free = nullptr;
    calloc_fn calloc = nullptr;
    realloc_fn realloc = nullptr;
    reallocarray_fn reallocarray = nullptr;
    posix_memalign_fn posix_memalign = nullptr;
    aligned_alloc_fn aligned_alloc = nullptr;
    aligned_alloc_fn memalign = nullptr;
    malloc_fn valloc = nullptr;
    malloc_fn pvalloc = nullptr;
    usable_size_fn malloc_usable_size = nullptr;
    exit_fn exit_ = nullptr;
    exit_fn Exit_ = nullptr;
    execve_fn execve = nullptr;
    execvpe_fn execvpe = nullptr;
    execv_fn execv = nullptr;
    execv_fn execvp = nullptr;
    fexecve_fn fexecve = nullptr;
};
real_functions real;

// --- state ---------------------------------------------------------------------------------

enum : int { st_uninit, st_resolving, st_forwarding, st_recording, st_finished };
std::atomic<int> state{st_uninit};

__attribute__((tls_model("initial-exec"))) thread_local bool in_tracker = false;

struct guard {
    guard() noexcept { in_tracker = true; }
    ~guard() { in_tracker = false; }
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
};

// --- bootstrap allocations (while dlsym runs) ---------------------------------------------

constexpr std::size_t bootstrap_size = 256 * 1024;
constexpr std::size_t bootstrap_header = 16; // holds the block size, keeps 16-byte alignment
alignas(64) unsigned char bootstrap_buffer[bootstrap_size];
std::atomic<std::size_t> bootstrap_used{0};

bool is_bootstrap(const void* p) noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const auto lo = reinterpret_cast<std::uintptr_t>(bootstrap_buffer);
    return a >= lo && a < lo + bootstrap_size;
}

void* bootstrap_alloc(std::size_t n, std::size_t align = 16) noexcept {
    if (align < 16) align = 16;
    const std::size_t need = n + bootstrap_header + align;
    if (need < n) return nullptr;
    const std::size_t at = bootstrap_used.fetch_add((need + 15) & ~std::size_t{15});
    if (at + need > bootstrap_size) return nullptr;
    const auto base = reinterpret_cast<std::uintptr_t>(bootstrap_buffer) + at + bootstrap_header;
    const std::uintptr_t user = (base + align - 1) & ~(std::uintptr_t{align} - 1);
    std::memcpy(reinterpret_cast<void*>(user - sizeof(std::size_t)), &n, sizeof n);
    return reinterpret_cast<void*>(user); // static storage: already zeroed
}

std::size_t bootstrap_block_size(const void* p) noexcept {
    std::size_t n = 0;
    std::memcpy(&n, static_cast<const unsigned char*>(p) - sizeof n, sizeof n);
    return n;
}

// --- the writer (all of it under `lock`) ---------------------------------------------------

pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
int trace_fd = -1;
unsigned char buffer[mt::trace_buffer_size];
std::size_t buffer_used = 0;
std::uintptr_t last_pointer = 0;
std::uint64_t last_time_us = 0; // monotonic microseconds of the last time record
std::uint64_t start_mono_us = 0;

char output_path[4096];
pid_t trace_pid = 0; // the process the open trace belongs to

// False in a vfork() child, which shares this memory (and the open trace) with its parent until
// it calls exec or _exit: it must not end the parent's trace.
bool own_trace() noexcept { return getpid() == trace_pid; }
char exe_path[4096];
std::uintptr_t self_lo = 0, self_hi = 0; // this library's code, skipped in stacks

std::uint64_t monotonic_us() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

void write_all(const unsigned char* p, std::size_t n) noexcept {
    while (n > 0 && trace_fd >= 0) {
        const ssize_t w = ::write(trace_fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; // disk full or similar: the trace ends early, the program goes on
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

void flush() noexcept {
    write_all(buffer, buffer_used);
    buffer_used = 0;
}

unsigned char* reserve(std::size_t n) noexcept {
    if (buffer_used + n > sizeof buffer) flush();
    return buffer + buffer_used;
}

void commit(const unsigned char* end) noexcept {
    buffer_used = static_cast<std::size_t>(end - buffer);
}

void put_string_record(unsigned char*& out, const char* s, std::size_t n) noexcept {
    out = mt::put_varint(out, n);
    std::memcpy(out, s, n);
    out += n;
}

void emit_time() noexcept {
    const std::uint64_t now = monotonic_us();
    if (now == last_time_us) return;
    unsigned char* out = reserve(1 + mt::max_varint_size);
    *out++ = static_cast<unsigned char>(mt::tag::time);
    out = mt::put_varint(out, now - last_time_us);
    commit(out);
    last_time_us = now;
}

// --- modules ---------------------------------------------------------------------------------

struct module_range {
    std::uintptr_t lo, hi, bias;
};
constexpr std::size_t max_modules = 4096;
module_range* modules = nullptr; // mmap'd, max_modules entries
std::size_t module_count = 0;

bool known_address(std::uintptr_t a) noexcept {
    for (std::size_t i = module_count; i-- > 0;)
        if (a >= modules[i].lo && a < modules[i].hi) return true;
    return false;
}

int on_module(dl_phdr_info* info, std::size_t, void*) noexcept {
    std::uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        const std::uintptr_t a = info->dlpi_addr + ph.p_vaddr;
        if (a < lo) lo = a;
        if (a + ph.p_memsz > hi) hi = a + ph.p_memsz;
    }
    if (lo >= hi) return 0;
    for (std::size_t i = 0; i < module_count; ++i)
        if (modules[i].lo == lo && modules[i].bias == info->dlpi_addr) return 0;
    if (module_count == max_modules) return 0;
    modules[module_count++] = {lo, hi, info->dlpi_addr};

    const char* name = info->dlpi_name;
    if (name == nullptr || name[0] == '\0') name = exe_path; // the main program
    std::size_t len = std::strlen(name);
    if (len > 4096) len = 4096;
    unsigned char* out = reserve(1 + 3 * mt::max_varint_size + mt::max_varint_size + len);
    *out++ = static_cast<unsigned char>(mt::tag::module);
    out = mt::put_varint(out, info->dlpi_addr);
    out = mt::put_varint(out, lo);
    out = mt::put_varint(out, hi);
    put_string_record(out, name, len);
    commit(out);
    return 0;
}

void scan_modules() noexcept { dl_iterate_phdr(on_module, nullptr); }

// --- stacks ----------------------------------------------------------------------------------

// An open-addressing set of stack hashes -> ids, in mmap'd memory. Distinct stacks are told
// apart by a 64-bit hash of their frames: a collision merges two stacks in the report, which at
// a 2^-64 chance per pair is not worth storing the frames for.
struct stack_slot {
    std::uint64_t hash;
    std::uint64_t id; // 0: empty
};
stack_slot* stack_table = nullptr;
std::size_t stack_capacity = 0; // a power of two
std::size_t stack_count = 0;

void* map_zeroed(std::size_t bytes) noexcept {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

bool grow_stacks() noexcept {
    const std::size_t cap = stack_capacity == 0 ? 4096 : stack_capacity * 2;
    auto* t = static_cast<stack_slot*>(map_zeroed(cap * sizeof(stack_slot)));
    if (t == nullptr) return false;
    for (std::size_t i = 0; i < stack_capacity; ++i) {
        if (stack_table[i].id == 0) continue;
        std::size_t j = stack_table[i].hash & (cap - 1);
        while (t[j].id != 0) j = (j + 1) & (cap - 1);
        t[j] = stack_table[i];
    }
    if (stack_table != nullptr) munmap(stack_table, stack_capacity * sizeof(stack_slot));
    stack_table = t;
    stack_capacity = cap;
    return true;
}

std::uint64_t hash_frames(void* const* f, std::size_t n) noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (std::size_t i = 0; i < n; ++i) {
        h ^= reinterpret_cast<std::uintptr_t>(f[i]);
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h == 0 ? 1 : h;
}

// Returns the id of the stack, writing its definition (and any new module) the first time.
std::uint64_t intern_stack(void* const* f, std::size_t n) noexcept {
    if (n == 0) return 0;
    const std::uint64_t h = hash_frames(f, n);
    if (stack_count * 2 >= stack_capacity && !grow_stacks()) return 0;
    std::size_t j = h & (stack_capacity - 1);
    while (stack_table[j].id != 0) {
        if (stack_table[j].hash == h) return stack_table[j].id;
        j = (j + 1) & (stack_capacity - 1);
    }
    const std::uint64_t id = ++stack_count;
    stack_table[j] = {h, id};

    for (std::size_t i = 0; i < n; ++i) {
        if (!known_address(reinterpret_cast<std::uintptr_t>(f[i]))) {
            scan_modules(); // a module loaded since the last scan (dlopen)
            break;
        }
    }
    unsigned char* out = reserve(1 + (2 + n) * mt::max_varint_size);
    *out++ = static_cast<unsigned char>(mt::tag::stack);
    out = mt::put_varint(out, id);
    out = mt::put_varint(out, n);
    std::uintptr_t prev = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto a = reinterpret_cast<std::uintptr_t>(f[i]);
        out = mt::put_varint(out, mt::zigzag(static_cast<std::int64_t>(a - prev)));
        prev = a;
    }
    commit(out);
    return id;
}

struct captured_stack {
    void* frames[mt::max_frames + 8];
    std::size_t first = 0, count = 0;
};

// Always inlined, so that the frames it sees start in the hook that called it.
__attribute__((always_inline)) inline void capture(captured_stack& s) noexcept {
    constexpr int cap = static_cast<int>(mt::max_frames + 8);
#if MEMKIT_TRACK_HAVE_LIBUNWIND
    const int n = unw_backtrace(s.frames, cap);
#else
    const int n = backtrace(s.frames, cap);
#endif
    std::size_t i = 0;
    const std::size_t total = n > 0 ? static_cast<std::size_t>(n) : 0;
    while (i < total && reinterpret_cast<std::uintptr_t>(s.frames[i]) >= self_lo &&
           reinterpret_cast<std::uintptr_t>(s.frames[i]) < self_hi)
        ++i;
    s.first = i;
    s.count = total - i > mt::max_frames ? mt::max_frames : total - i;
}

// --- recording -------------------------------------------------------------------------------

void put_pointer(unsigned char*& out, const void* p) noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    out = mt::put_varint(out, mt::zigzag(static_cast<std::int64_t>(a - last_pointer)));
    last_pointer = a;
}

void record_alloc_locked(const void* p, std::size_t size, mt::alloc_kind kind,
                         const captured_stack& s) noexcept {
    const std::uint64_t id = intern_stack(s.frames + s.first, s.count);
    emit_time();
    unsigned char* out = reserve(1 + 3 * mt::max_varint_size);
    *out++ = static_cast<unsigned char>(static_cast<unsigned>(mt::tag::alloc) +
                                        static_cast<unsigned>(kind));
    put_pointer(out, p);
    out = mt::put_varint(out, size);
    out = mt::put_varint(out, id);
    commit(out);
}

void record_free_locked(const void* p, mt::free_kind kind) noexcept {
    unsigned char* out = reserve(1 + mt::max_varint_size);
    *out++ = static_cast<unsigned char>(static_cast<unsigned>(mt::tag::free) +
                                        static_cast<unsigned>(kind));
    put_pointer(out, p);
    commit(out);
}

struct lock_guard {
    lock_guard() noexcept { pthread_mutex_lock(&lock); }
    ~lock_guard() { pthread_mutex_unlock(&lock); }
    lock_guard(const lock_guard&) = delete;
    lock_guard& operator=(const lock_guard&) = delete;
};

__attribute__((always_inline)) inline void record_alloc(const void* p, std::size_t size,
                                                        mt::alloc_kind kind) noexcept {
    captured_stack s;
    capture(s);
    lock_guard g;
    if (state.load(std::memory_order_relaxed) != st_recording) return;
    record_alloc_locked(p, size, kind, s);
}

void record_free(const void* p, mt::free_kind kind) noexcept {
    lock_guard g;
    if (state.load(std::memory_order_relaxed) != st_recording) return;
    record_free_locked(p, kind);
}

// Writes the end record and stops recording. Callers hold the lock.
void finish_locked(mt::end_reason why, int value) noexcept {
    if (state.load(std::memory_order_relaxed) != st_recording) return;
    const std::uint64_t now = monotonic_us();
    unsigned char* out = reserve(3 + 2 * mt::max_varint_size);
    *out++ = static_cast<unsigned char>(mt::tag::end);
    *out++ = static_cast<unsigned char>(why);
    out = mt::put_varint(out, static_cast<std::uint64_t>(value));
    out = mt::put_varint(out, now > last_time_us ? now - last_time_us : 0);
    commit(out);
    flush();
    state.store(st_finished, std::memory_order_release);
}

// --- start-up --------------------------------------------------------------------------------

// Decimal digits of v at out; returns the end. No allocation (snprintf may allocate).
char* put_decimal(char* out, std::uint64_t v) noexcept {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0) *out++ = tmp[--n];
    return out;
}

std::uint64_t parse_decimal(const char* s) noexcept {
    std::uint64_t v = 0;
    for (; s != nullptr && *s >= '0' && *s <= '9'; ++s)
        v = v * 10 + static_cast<unsigned>(*s - '0');
    return v;
}

void write_header() noexcept {
    unsigned char* out = reserve(8 + 4 * mt::max_varint_size);
    std::memcpy(out, mt::trace_magic, sizeof mt::trace_magic);
    out += sizeof mt::trace_magic;
    out = mt::put_varint(out, mt::trace_version);
    out = mt::put_varint(out, static_cast<std::uint64_t>(getpid()));
    out = mt::put_varint(out, static_cast<std::uint64_t>(getppid()));
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    out = mt::put_varint(out, static_cast<std::uint64_t>(ts.tv_sec) * 1000000u +
                                  static_cast<std::uint64_t>(ts.tv_nsec) / 1000u);
    commit(out);

    const std::size_t exe_len = std::strlen(exe_path);
    out = reserve(mt::max_varint_size + exe_len);
    put_string_record(out, exe_path, exe_len);
    commit(out);

    char cmd[4096];
    std::size_t cmd_len = 0;
    const int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = 0;
        while (cmd_len < sizeof cmd && (r = ::read(fd, cmd + cmd_len, sizeof cmd - cmd_len)) > 0)
            cmd_len += static_cast<std::size_t>(r);
        ::close(fd);
    }
    while (cmd_len > 0 && cmd[cmd_len - 1] == '\0') --cmd_len;
    for (std::size_t i = 0; i < cmd_len; ++i)
        if (cmd[i] == '\0') cmd[i] = ' ';
    out = reserve(mt::max_varint_size + cmd_len);
    put_string_record(out, cmd, cmd_len);
    commit(out);

    start_mono_us = monotonic_us();
    last_time_us = start_mono_us;
}

// Opens this process's trace file and writes its header and the loaded modules. The root
// process takes MEMKIT_TRACK_OUTPUT if it is empty (memkit track creates it empty); every other
// process, and a root whose file already holds a trace (a program that replaced itself with exec,
// like the last command of `bash -c`), takes MEMKIT_TRACK_OUTPUT.<pid>, or .<pid>.<n> when an
// exec chain in that process already took that. Callers hold the lock or are alone.
bool open_trace(bool root) noexcept {
    char path[4096 + 64];
    std::size_t len = std::strlen(output_path);
    std::memcpy(path, output_path, len + 1);
    trace_fd = -1;
    if (root) {
        trace_fd = ::open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        struct stat st {};
        if (trace_fd >= 0 && (fstat(trace_fd, &st) != 0 || st.st_size != 0)) {
            ::close(trace_fd);
            trace_fd = -1;
        }
    }
    if (trace_fd < 0) {
        path[len++] = '.';
        len = static_cast<std::size_t>(
            put_decimal(path + len, static_cast<std::uint64_t>(getpid())) - path);
        path[len] = '\0';
        for (std::uint64_t n = 2; trace_fd < 0 && n < 1000; ++n) {
            trace_fd = ::open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (trace_fd < 0 && errno != EEXIST) return false;
            if (trace_fd < 0) {
                char* end = path + len;
                *end++ = '.';
                *put_decimal(end, n) = '\0';
            }
        }
        if (trace_fd < 0) return false;
    }
    trace_pid = getpid();
    buffer_used = 0;
    last_pointer = 0;
    write_header();
    module_count = 0;
    scan_modules();
    flush(); // the header is on disk even if the program dies at once
    return true;
}

void fork_prepare() noexcept {
    pthread_mutex_lock(&lock);
    if (state.load(std::memory_order_relaxed) == st_recording) flush();
}

void fork_parent() noexcept { pthread_mutex_unlock(&lock); }

void fork_child() noexcept {
    pthread_mutex_init(&lock, nullptr);
    if (state.load(std::memory_order_relaxed) != st_recording) return;
    ::close(trace_fd);
    trace_fd = -1;
    // A fresh file: stacks and modules are defined again in it.
    if (stack_table != nullptr) std::memset(stack_table, 0, stack_capacity * sizeof(stack_slot));
    stack_count = 0;
    if (!open_trace(false)) state.store(st_forwarding, std::memory_order_release);
}

constexpr int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

void on_fatal_signal(int sig) noexcept {
    // SA_RESETHAND restored the default action; re-raising after the flush ends the process
    // as the signal would have. If this thread was inside the tracker, the lock may be held.
    if (pthread_mutex_trylock(&lock) == 0) {
        finish_locked(mt::end_reason::signal, sig);
        pthread_mutex_unlock(&lock);
    }
    raise(sig);
}

void install_signal_handlers() noexcept {
    for (int sig : fatal_signals) {
        struct sigaction old {};
        if (sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
        struct sigaction sa {};
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigaction(sig, &sa, nullptr);
    }
}

int find_self(dl_phdr_info* info, std::size_t, void*) noexcept {
    const auto me = reinterpret_cast<std::uintptr_t>(&find_self);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        const std::uintptr_t a = info->dlpi_addr + ph.p_vaddr;
        if (me >= a && me < a + ph.p_memsz) {
            self_lo = a;
            self_hi = a + ph.p_memsz;
            return 1;
        }
    }
    return 0;
}

template <class F>
F resolve(const char* name) noexcept {
    return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

void start_recording() noexcept {
    const char* out = getenv("MEMKIT_TRACK_OUTPUT");
    if (out == nullptr || out[0] == '\0' || std::strlen(out) >= sizeof output_path) return;
    std::strcpy(output_path, out);
    const ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[n > 0 ? n : 0] = '\0';
    modules = static_cast<module_range*>(map_zeroed(max_modules * sizeof(module_range)));
    if (modules == nullptr || !grow_stacks()) return;
    dl_iterate_phdr(find_self, nullptr);

    const char* root = getenv("MEMKIT_TRACK_ROOT_PID");
    const bool is_root =
        root == nullptr || parse_decimal(root) == static_cast<std::uint64_t>(getpid());
#if MEMKIT_TRACK_HAVE_LIBUNWIND
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
#else
    void* warm[2];
    backtrace(warm, 2); // loads libgcc_s now rather than inside the first recorded malloc
#endif
    {
        lock_guard g;
        if (!open_trace(is_root)) return;
        state.store(st_recording, std::memory_order_release);
    }
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    install_signal_handlers();
}

void initialize() noexcept {
    int expected = st_uninit;
    if (!state.compare_exchange_strong(expected, st_resolving)) return;
    guard g;
    real.malloc = resolve<malloc_fn>("malloc");
    real.free = resolve<free_fn>("free");
    real.calloc = resolve<calloc_fn>("calloc");
    real.realloc = resolve<realloc_fn>("realloc");
    real.reallocarray = resolve<reallocarray_fn>("reallocarray");
    real.posix_memalign = resolve<posix_memalign_fn>("posix_memalign");
    real.aligned_alloc = resolve<aligned_alloc_fn>("aligned_alloc");
    real.memalign = resolve<aligned_alloc_fn>("memalign");
    real.valloc = resolve<malloc_fn>("valloc");
    real.pvalloc = resolve<malloc_fn>("pvalloc");
    real.malloc_usable_size = resolve<usable_size_fn>("malloc_usable_size");
    real.exit_ = resolve<exit_fn>("_exit");
    real.Exit_ = resolve<exit_fn>("_Exit");
    real.execve = resolve<execve_fn>("execve");
    real.execvpe = resolve<execvpe_fn>("execvpe");
    real.execv = resolve<execv_fn>("execv");
    real.execvp = resolve<execv_fn>("execvp");
    real.fexecve = resolve<fexecve_fn>("fexecve");
    state.store(st_forwarding, std::memory_order_release);
    start_recording();
}

// --- the hooks -------------------------------------------------------------------------------

enum class mode { bootstrap, forward, record };

inline mode enter() noexcept {
    int s = state.load(std::memory_order_acquire);
    if (__builtin_expect(s == st_uninit, 0)) {
        initialize();
        s = state.load(std::memory_order_acquire);
    }
    if (s == st_resolving) return mode::bootstrap;
    if (s != st_recording || in_tracker) return mode::forward;
    return mode::record;
}

__attribute__((always_inline)) inline void* tracked_malloc(std::size_t n,
                                                           mt::alloc_kind kind) noexcept {
    switch (enter()) {
    case mode::bootstrap: return bootstrap_alloc(n);
    case mode::forward: return real.malloc(n);
    case mode::record: break;
    }
    guard g;
    void* p = real.malloc(n);
    if (p != nullptr) record_alloc(p, n, kind);
    return p;
}

__attribute__((always_inline)) inline void* tracked_aligned(std::size_t align, std::size_t n,
                                                            mt::alloc_kind kind) noexcept {
    switch (enter()) {
    case mode::bootstrap: return bootstrap_alloc(n, align);
    case mode::forward: return real.aligned_alloc(align, n);
    case mode::record: break;
    }
    guard g;
    void* p = nullptr;
    if (real.posix_memalign(&p, align, n) != 0) return nullptr;
    record_alloc(p, n, kind);
    return p;
}

inline void tracked_free(void* p, mt::free_kind kind) noexcept {
    if (p == nullptr || is_bootstrap(p)) return;
    switch (enter()) {
    case mode::bootstrap: return; // the real free is not known yet: leak the block
    case mode::forward: real.free(p); return;
    case mode::record: break;
    }
    guard g;
    // Recorded before the block is released, so that its next owner's alloc comes after it.
    record_free(p, kind);
    real.free(p);
}

[[noreturn]] void throw_bad_alloc() { throw std::bad_alloc(); }

template <bool Array>
void* new_impl(std::size_t n) {
    constexpr auto kind = Array ? mt::alloc_kind::op_new_array : mt::alloc_kind::op_new;
    for (;;) {
        if (void* p = tracked_malloc(n == 0 ? 1 : n, kind)) return p;
        std::new_handler h = std::get_new_handler();
        if (h == nullptr) throw_bad_alloc();
        h();
    }
}

template <bool Array>
void* new_aligned_impl(std::size_t n, std::size_t align) {
    constexpr auto kind =
        Array ? mt::alloc_kind::op_new_array_aligned : mt::alloc_kind::op_new_aligned;
    if (align < sizeof(void*)) align = sizeof(void*);
    for (;;) {
        if (void* p = tracked_aligned(align, n == 0 ? 1 : n, kind)) return p;
        std::new_handler h = std::get_new_handler();
        if (h == nullptr) throw_bad_alloc();
        h();
    }
}

template <bool Array>
void* new_nothrow(std::size_t n) noexcept {
    try {
        return new_impl<Array>(n);
    } catch (...) {
        return nullptr;
    }
}

template <bool Array>
void* new_aligned_nothrow(std::size_t n, std::size_t align) noexcept {
    try {
        return new_aligned_impl<Array>(n, align);
    } catch (...) {
        return nullptr;
    }
}

constexpr auto op_delete = mt::free_kind::op_delete;
constexpr auto op_delete_array = mt::free_kind::op_delete_array;

// Library constructor and destructor: start as early as possible; finish as late as possible.
__attribute__((constructor(101))) void track_start() noexcept {
    if (state.load(std::memory_order_acquire) == st_uninit) initialize();
}

__attribute__((destructor(101))) void track_end() noexcept {
    // libstdc++'s emergency exception-handling pool is never freed; like valgrind, release it
    // so that it is not reported as a leak.
    using freeres_fn = void (*)();
    if (auto f = reinterpret_cast<freeres_fn>(dlsym(RTLD_DEFAULT, "_ZN9__gnu_cxx9__freeresEv")))
        f();
    lock_guard g;
    finish_locked(mt::end_reason::exit, 0);
}

} // namespace

// --- exported interposers ----------------------------------------------------------------------

MEMKIT_TRACK_EXPORT void* malloc(std::size_t n) noexcept {
    return tracked_malloc(n, mt::alloc_kind::malloc);
}

MEMKIT_TRACK_EXPORT void free(void* p) noexcept { tracked_free(p, mt::free_kind::free); }

MEMKIT_TRACK_EXPORT void* calloc(std::size_t count, std::size_t size) noexcept {
    std::size_t n = 0;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return nullptr;
    }
    switch (enter()) {
    case mode::bootstrap: return bootstrap_alloc(n);
    case mode::forward: return real.calloc(count, size);
    case mode::record: break;
    }
    guard g;
    void* p = real.calloc(count, size);
    if (p != nullptr) record_alloc(p, n, mt::alloc_kind::calloc);
    return p;
}

namespace {

void* realloc_impl(void* old, std::size_t n, std::size_t count, mt::alloc_kind kind) noexcept {
    const bool is_array = kind == mt::alloc_kind::reallocarray;
    if (old != nullptr && is_bootstrap(old)) {
        // A bootstrap block cannot grow in place; move it to the real heap.
        void* p = malloc(n);
        if (p != nullptr) {
            const std::size_t keep = bootstrap_block_size(old);
            std::memcpy(p, old, keep < n ? keep : n);
        }
        return p;
    }
    switch (enter()) {
    case mode::bootstrap: return bootstrap_alloc(n);
    case mode::forward:
        return is_array ? real.reallocarray(old, count, n / (count == 0 ? 1 : count))
                        : real.realloc(old, n);
    case mode::record: break;
    }
    guard g;
    captured_stack s;
    capture(s);
    // The lock is held across the call so that the old block's free and the new block's alloc
    // stay together and in order with respect to other threads.
    lock_guard l;
    void* p = is_array ? real.reallocarray(old, count, n / (count == 0 ? 1 : count))
                       : real.realloc(old, n);
    if (state.load(std::memory_order_relaxed) != st_recording) return p;
    if (p == nullptr && n != 0) return p; // failed: the old block is untouched
    if (old != nullptr) record_free_locked(old, mt::free_kind::realloc);
    if (p != nullptr) record_alloc_locked(p, n, kind, s);
    return p;
}

} // namespace

MEMKIT_TRACK_EXPORT void* realloc(void* old, std::size_t n) noexcept {
    return realloc_impl(old, n, 1, mt::alloc_kind::realloc);
}

MEMKIT_TRACK_EXPORT void* reallocarray(void* old, std::size_t count, std::size_t size) noexcept {
    std::size_t n = 0;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return nullptr;
    }
    return realloc_impl(old, n, count, mt::alloc_kind::reallocarray);
}

MEMKIT_TRACK_EXPORT int posix_memalign(void** out, std::size_t align, std::size_t n) noexcept {
    switch (enter()) {
    case mode::bootstrap: {
        void* p = bootstrap_alloc(n, align);
        if (p == nullptr) return ENOMEM;
        *out = p;
        return 0;
    }
    case mode::forward: return real.posix_memalign(out, align, n);
    case mode::record: break;
    }
    guard g;
    const int rc = real.posix_memalign(out, align, n);
    if (rc == 0) record_alloc(*out, n, mt::alloc_kind::posix_memalign);
    return rc;
}

namespace {

template <class Call>
__attribute__((always_inline)) inline void* aligned_hook(std::size_t n, std::size_t align,
                                                         mt::alloc_kind kind, Call call) noexcept {
    switch (enter()) {
    case mode::bootstrap: return bootstrap_alloc(n, align);
    case mode::forward: return call();
    case mode::record: break;
    }
    guard g;
    void* p = call();
    if (p != nullptr) record_alloc(p, n, kind);
    return p;
}

} // namespace

MEMKIT_TRACK_EXPORT void* aligned_alloc(std::size_t align, std::size_t n) noexcept {
    return aligned_hook(n, align, mt::alloc_kind::aligned_alloc,
                        [=] { return real.aligned_alloc(align, n); });
}

MEMKIT_TRACK_EXPORT void* memalign(std::size_t align, std::size_t n) noexcept {
    return aligned_hook(n, align, mt::alloc_kind::memalign,
                        [=] { return real.memalign(align, n); });
}

MEMKIT_TRACK_EXPORT void* valloc(std::size_t n) noexcept {
    return aligned_hook(n, 4096, mt::alloc_kind::valloc, [=] { return real.valloc(n); });
}

MEMKIT_TRACK_EXPORT void* pvalloc(std::size_t n) noexcept {
    return aligned_hook(n, 4096, mt::alloc_kind::pvalloc, [=] { return real.pvalloc(n); });
}

MEMKIT_TRACK_EXPORT std::size_t malloc_usable_size(void* p) noexcept {
    if (p == nullptr) return 0;
    if (is_bootstrap(p)) return bootstrap_block_size(p);
    if (state.load(std::memory_order_acquire) < st_forwarding) return 0;
    return real.malloc_usable_size(p);
}

MEMKIT_TRACK_EXPORT __attribute__((noreturn)) void _exit(int status) {
    if (real.exit_ == nullptr) real.exit_ = resolve<exit_fn>("_exit");
    if (own_trace()) {
        lock_guard g;
        finish_locked(mt::end_reason::quick_exit, status);
    }
    real.exit_(status);
    __builtin_unreachable();
}

MEMKIT_TRACK_EXPORT __attribute__((noreturn)) void _Exit(int status) noexcept {
    if (real.Exit_ == nullptr) real.Exit_ = resolve<exit_fn>("_Exit");
    if (own_trace()) {
        lock_guard g;
        finish_locked(mt::end_reason::quick_exit, status);
    }
    real.Exit_(status);
    __builtin_unreachable();
}

// exec: the program is about to be replaced, and with it this buffer. The end record says so;
// if the exec fails, the record is taken back (the file is cut where it started) and recording
// goes on.
namespace {

struct exec_mark {
    off_t end_at = -1; // where the end record starts; -1: nothing written
};

exec_mark before_exec() noexcept {
    exec_mark m;
    lock_guard g;
    if (state.load(std::memory_order_relaxed) != st_recording || !own_trace()) return m;
    flush();
    m.end_at = lseek(trace_fd, 0, SEEK_CUR);
    finish_locked(mt::end_reason::exec, 0);
    return m;
}

void after_failed_exec(const exec_mark& m) noexcept {
    if (m.end_at < 0) return;
    const int saved = errno;
    lock_guard g;
    if (state.load(std::memory_order_relaxed) == st_finished &&
        ftruncate(trace_fd, m.end_at) == 0 && lseek(trace_fd, m.end_at, SEEK_SET) == m.end_at)
        state.store(st_recording, std::memory_order_release);
    errno = saved;
}

template <class F>
F ensure(F& fn, const char* name) noexcept {
    if (fn == nullptr) fn = resolve<F>(name);
    return fn;
}

} // namespace

MEMKIT_TRACK_EXPORT int execve(const char* path, char* const argv[], char* const envp[]) noexcept {
    const execve_fn f = ensure(real.execve, "execve");
    const exec_mark m = before_exec();
    const int rc = f(path, argv, envp);
    after_failed_exec(m);
    return rc;
}

MEMKIT_TRACK_EXPORT int execvpe(const char* file, char* const argv[], char* const envp[]) noexcept {
    const execvpe_fn f = ensure(real.execvpe, "execvpe");
    const exec_mark m = before_exec();
    const int rc = f(file, argv, envp);
    after_failed_exec(m);
    return rc;
}

MEMKIT_TRACK_EXPORT int execv(const char* path, char* const argv[]) noexcept {
    const execv_fn f = ensure(real.execv, "execv");
    const exec_mark m = before_exec();
    const int rc = f(path, argv);
    after_failed_exec(m);
    return rc;
}

MEMKIT_TRACK_EXPORT int execvp(const char* file, char* const argv[]) noexcept {
    const execv_fn f = ensure(real.execvp, "execvp");
    const exec_mark m = before_exec();
    const int rc = f(file, argv);
    after_failed_exec(m);
    return rc;
}

MEMKIT_TRACK_EXPORT int fexecve(int fd, char* const argv[], char* const envp[]) noexcept {
    const fexecve_fn f = ensure(real.fexecve, "fexecve");
    const exec_mark m = before_exec();
    const int rc = f(fd, argv, envp);
    after_failed_exec(m);
    return rc;
}

// operator new and delete, every variant. Sized deletes ignore the size: the trace knows it.
#define MEMKIT_TRACK_OP __attribute__((visibility("default")))

MEMKIT_TRACK_OP void* operator new(std::size_t n) { return new_impl<false>(n); }
MEMKIT_TRACK_OP void* operator new[](std::size_t n) { return new_impl<true>(n); }
MEMKIT_TRACK_OP void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return new_nothrow<false>(n);
}
MEMKIT_TRACK_OP void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return new_nothrow<true>(n);
}
MEMKIT_TRACK_OP void* operator new(std::size_t n, std::align_val_t a) {
    return new_aligned_impl<false>(n, static_cast<std::size_t>(a));
}
MEMKIT_TRACK_OP void* operator new[](std::size_t n, std::align_val_t a) {
    return new_aligned_impl<true>(n, static_cast<std::size_t>(a));
}
MEMKIT_TRACK_OP void* operator new(std::size_t n, std::align_val_t a,
                                   const std::nothrow_t&) noexcept {
    return new_aligned_nothrow<false>(n, static_cast<std::size_t>(a));
}
MEMKIT_TRACK_OP void* operator new[](std::size_t n, std::align_val_t a,
                                     const std::nothrow_t&) noexcept {
    return new_aligned_nothrow<true>(n, static_cast<std::size_t>(a));
}

MEMKIT_TRACK_OP void operator delete(void* p) noexcept { tracked_free(p, op_delete); }
MEMKIT_TRACK_OP void operator delete[](void* p) noexcept { tracked_free(p, op_delete_array); }
MEMKIT_TRACK_OP void operator delete(void* p, const std::nothrow_t&) noexcept {
    tracked_free(p, op_delete);
}
MEMKIT_TRACK_OP void operator delete[](void* p, const std::nothrow_t&) noexcept {
    tracked_free(p, op_delete_array);
}
MEMKIT_TRACK_OP void operator delete(void* p, std::size_t) noexcept { tracked_free(p, op_delete); }
MEMKIT_TRACK_OP void operator delete[](void* p, std::size_t) noexcept {
    tracked_free(p, op_delete_array);
}
MEMKIT_TRACK_OP void operator delete(void* p, std::align_val_t) noexcept {
    tracked_free(p, op_delete);
}
MEMKIT_TRACK_OP void operator delete[](void* p, std::align_val_t) noexcept {
    tracked_free(p, op_delete_array);
}
MEMKIT_TRACK_OP void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    tracked_free(p, op_delete);
}
MEMKIT_TRACK_OP void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    tracked_free(p, op_delete_array);
}
MEMKIT_TRACK_OP void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    tracked_free(p, op_delete);
}
MEMKIT_TRACK_OP void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    tracked_free(p, op_delete_array);
}
