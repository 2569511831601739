// Benchmarks of memkit::mapped_file (include/memkit/vm/mapped_file.hpp) against reading the same
// file with read(2) / pread(2) into a buffer, the two ways a program reads a file without mmap.
//
// The file is 256 MiB of pseudo-random words by default; set MEMKIT_BENCH_FULL=1 for the 1 GiB
// file of the issue (it needs 1 GiB of free page cache and about 4x longer runs). It is written
// once per process, on first use, in a fresh directory under the system temp directory, and
// removed at exit. Its pages are in the page cache for every case (it was just written), so the
// cases measure the cost of getting cached file data into the program, not disk speed.
//
// Every subject does the same work with the data: it sums the 64-bit words it reads, so neither
// the copy of read()/pread() nor the page-table walk of the mapping can be optimised away.
//   sequential/<size>       - the whole file front to back. mapped_file: one process-wide mapping
//                             (made and faulted in on first use), advise(sequential), summed in
//                             place. read(): lseek to 0, then read() 1 MiB chunks into a buffer.
//                             ns/op is per 4 KiB of file.
//   open-scan-close/<size>  - the same scan, but each iteration opens, maps (or reads) and closes
//                             the file: the cost of a fresh mapping (page faults, unmapping)
//                             included. ns/op is per 4 KiB of file.
//   random/4KiB             - 4096 reads of a 4 KiB block at random page-aligned offsets (fixed
//                             seed): summed in place in the mapping vs pread() into a buffer.
//   random/64B              - 65536 reads of a 64-byte record at random 64-byte-aligned offsets:
//                             where a system call per read costs most. ns/op is per read.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "common/harness.hpp"
#include "memkit/vm/mapped_file.hpp"

namespace {

namespace mb = memkit::bench;
namespace fs = std::filesystem;

constexpr std::size_t MiB = std::size_t{1} << 20;
constexpr std::size_t page_bytes = 4096; // the unit of ns/op for the scans
constexpr std::size_t chunk_bytes = 1 * MiB;
constexpr std::size_t random_block_reads = 4096;
constexpr std::size_t random_record_reads = 65536;
constexpr std::uint64_t offsets_seed = 0x6d6d6170; // "mmap"

bool full_mode() {
    const char* v = std::getenv("MEMKIT_BENCH_FULL");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

std::size_t file_bytes() { return full_mode() ? 1024 * MiB : 256 * MiB; }

std::string size_label() { return full_mode() ? "1GiB" : "256MiB"; }

// The benchmark file: created on first use, removed when the process exits (static destructor).
class bench_file {
public:
    bench_file() : size_(file_bytes()) {
        dir_ =
            fs::temp_directory_path() / ("memkit_mapped_file_bench_" + std::to_string(::getpid()));
        fs::create_directories(dir_);
        path_ = dir_ / "data.bin";
        const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), path_.string());
        std::vector<std::uint64_t> chunk(chunk_bytes / sizeof(std::uint64_t));
        std::uint64_t x = 0x9e3779b97f4a7c15ULL;
        for (std::size_t done = 0; done < size_; done += chunk_bytes) {
            for (auto& w : chunk) { // splitmix64: fast and deterministic
                x += 0x9e3779b97f4a7c15ULL;
                std::uint64_t z = x;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                w = z ^ (z >> 31);
            }
            if (::write(fd, chunk.data(), chunk_bytes) != static_cast<ssize_t>(chunk_bytes)) {
                ::close(fd);
                throw std::system_error(errno, std::generic_category(), "write " + path_.string());
            }
        }
        // Wait for the write-back here, so that it does not run (on this machine's cores and
        // its page cache) during the first cases.
        ::fsync(fd);
        ::close(fd);
    }
    bench_file(const bench_file&) = delete;
    bench_file& operator=(const bench_file&) = delete;
    ~bench_file() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    [[nodiscard]] const fs::path& path() const noexcept { return path_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    fs::path dir_, path_;
    std::size_t size_;
};

const bench_file& the_file() {
    static const bench_file f;
    return f;
}

// The process-wide mapping of the steady-state cases, faulted in once.
memkit::mapped_file& the_mapping() {
    static memkit::mapped_file m = [] {
        memkit::mapped_file f(the_file().path());
        f.advise(memkit::access_advice::will_need);
        return f;
    }();
    return m;
}

int open_or_throw(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), p.string());
    return fd;
}

// The same summing loop for every subject (word loads through memcpy: any alignment, no
// aliasing questions, and one vectorised loop).
inline std::uint64_t sum_words(const std::byte* p, std::size_t n) noexcept {
    std::uint64_t s = 0;
    for (std::size_t i = 0; i + sizeof(std::uint64_t) <= n; i += sizeof(std::uint64_t)) {
        std::uint64_t w;
        std::memcpy(&w, p + i, sizeof w);
        s += w;
    }
    return s;
}

std::uint64_t read_all(int fd, std::vector<std::byte>& buf) {
    std::uint64_t s = 0;
    if (::lseek(fd, 0, SEEK_SET) != 0) throw std::system_error(errno, std::generic_category());
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
        if (n == 0) break;
        s += sum_words(buf.data(), static_cast<std::size_t>(n));
    }
    return s;
}

// Offsets, multiples of `unit`, at which a whole `unit` fits in the file (fixed seed).
std::vector<std::size_t> random_offsets(std::size_t count, std::size_t unit) {
    std::mt19937_64 gen{offsets_seed};
    const std::size_t slots = the_file().size() / unit;
    std::vector<std::size_t> v(count);
    for (auto& o : v) o = static_cast<std::size_t>(gen() % slots) * unit;
    return v;
}

void finish(benchmark::State& state, std::size_t ops, std::size_t bytes) {
    mb::set_allocations(state, ops);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

// --- sequential -----------------------------------------------------------------------------

void sequential_mapped(benchmark::State& state) {
    memkit::mapped_file& f = the_mapping();
    f.advise(memkit::access_advice::sequential);
    for (auto _ : state) benchmark::DoNotOptimize(sum_words(f.data(), f.size()));
    finish(state, f.size() / page_bytes, f.size());
}

void sequential_read(benchmark::State& state) {
    const int fd = open_or_throw(the_file().path());
    std::vector<std::byte> buf(chunk_bytes);
    for (auto _ : state) benchmark::DoNotOptimize(read_all(fd, buf));
    ::close(fd);
    finish(state, the_file().size() / page_bytes, the_file().size());
}

// --- open-scan-close ------------------------------------------------------------------------

void open_scan_close_mapped(benchmark::State& state) {
    const fs::path& p = the_file().path();
    for (auto _ : state) {
        memkit::mapped_file f(p);
        f.advise(memkit::access_advice::sequential);
        benchmark::DoNotOptimize(sum_words(f.data(), f.size()));
    }
    finish(state, the_file().size() / page_bytes, the_file().size());
}

void open_scan_close_read(benchmark::State& state) {
    const fs::path& p = the_file().path();
    std::vector<std::byte> buf(chunk_bytes);
    for (auto _ : state) {
        const int fd = open_or_throw(p);
        benchmark::DoNotOptimize(read_all(fd, buf));
        ::close(fd);
    }
    finish(state, the_file().size() / page_bytes, the_file().size());
}

// --- random ---------------------------------------------------------------------------------

template <std::size_t Unit, std::size_t Count>
void random_mapped(benchmark::State& state) {
    memkit::mapped_file& f = the_mapping();
    f.advise(memkit::access_advice::random);
    const std::vector<std::size_t> offsets = random_offsets(Count, Unit);
    const std::byte* base = f.data();
    for (auto _ : state) {
        std::uint64_t s = 0;
        for (std::size_t o : offsets) s += sum_words(base + o, Unit);
        benchmark::DoNotOptimize(s);
    }
    f.advise(memkit::access_advice::normal);
    finish(state, Count, Count * Unit);
}

template <std::size_t Unit, std::size_t Count>
void random_pread(benchmark::State& state) {
    const int fd = open_or_throw(the_file().path());
    const std::vector<std::size_t> offsets = random_offsets(Count, Unit);
    alignas(64) std::byte buf[Unit];
    for (auto _ : state) {
        std::uint64_t s = 0;
        for (std::size_t o : offsets) {
            if (::pread(fd, buf, Unit, static_cast<off_t>(o)) != static_cast<ssize_t>(Unit))
                state.SkipWithError("short pread");
            s += sum_words(buf, Unit);
        }
        benchmark::DoNotOptimize(s);
    }
    ::close(fd);
    finish(state, Count, Count * Unit);
}

bool register_all() {
    const std::string size = size_label();
    const std::size_t pages = file_bytes() / page_bytes;
    const std::string seq = "mapped_file/sequential/" + size;
    mb::add_case({seq, "memkit::mapped_file", mb::role::memkit, pages}, sequential_mapped);
    mb::add_case({seq, "read()", mb::role::peer, pages}, sequential_read);

    const std::string osc = "mapped_file/open-scan-close/" + size;
    mb::add_case({osc, "memkit::mapped_file", mb::role::memkit, pages}, open_scan_close_mapped);
    mb::add_case({osc, "read()", mb::role::peer, pages}, open_scan_close_read);

    mb::add_case(
        {"mapped_file/random/4KiB", "memkit::mapped_file", mb::role::memkit, random_block_reads},
        random_mapped<4096, random_block_reads>);
    mb::add_case({"mapped_file/random/4KiB", "pread()", mb::role::peer, random_block_reads},
                 random_pread<4096, random_block_reads>);
    mb::add_case(
        {"mapped_file/random/64B", "memkit::mapped_file", mb::role::memkit, random_record_reads},
        random_mapped<64, random_record_reads>);
    mb::add_case({"mapped_file/random/64B", "pread()", mb::role::peer, random_record_reads},
                 random_pread<64, random_record_reads>);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
