#include "memkit/core/error.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace memkit {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "memkit"; }
    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
        case errc::out_of_memory: return "out of memory";
        case errc::invalid_alignment: return "invalid alignment";
        case errc::bad_size: return "bad size";
        case errc::not_owned: return "pointer not owned by this allocator";
        case errc::double_free: return "double free";
        case errc::lifo_violation: return "deallocation out of LIFO order";
        case errc::limit_exceeded: return "limit exceeded";
        case errc::invalid_argument: return "invalid argument";
        case errc::budget_exceeded: return "budget exceeded";
        case errc::corruption_detected: return "heap corruption detected";
        case errc::still_in_use: return "still in use";
        }
        return "unknown memkit error";
    }
};

std::string alignment_message(const char* allocator, std::size_t alignment, std::size_t max_alignment) {
    std::string m = std::string(allocator) + ": invalid alignment " + std::to_string(alignment);
    if ((alignment & (alignment - 1)) != 0 || alignment == 0) m += " (not a power of two)";
    else m += " (maximum supported is " + std::to_string(max_alignment) + ")";
    return m;
}

std::string size_message(const char* allocator, std::size_t size, std::size_t max_size) {
    std::string m = std::string(allocator) + ": bad size " + std::to_string(size);
    if (size == 0) m += " (zero-size request)";
    else m += " (maximum is " + std::to_string(max_size) + ")";
    return m;
}

void default_handler(const violation& v) {
    std::fprintf(stderr, "memkit: %s: %s (pointer %p)%s%s\n", v.allocator,
                 error_category().message(static_cast<int>(v.code)).c_str(), v.pointer,
                 v.detail ? ": " : "", v.detail ? v.detail : "");
    std::abort();
}

std::atomic<violation_handler> g_handler{&default_handler};

} // namespace

const std::error_category& error_category() noexcept {
    static const category c;
    return c;
}

out_of_memory::out_of_memory(const char* allocator, std::size_t requested, std::size_t available,
                             std::size_t used, std::size_t capacity) noexcept
    : allocator_(allocator ? allocator : "memkit"), requested_(requested), available_(available),
      used_(used), capacity_(capacity) {
    auto field = [](std::size_t v, char* buf, std::size_t n) {
        if (v == unknown) std::snprintf(buf, n, "?");
        else std::snprintf(buf, n, "%zu", v);
    };
    char a[24], u[24], c[24];
    field(available, a, sizeof a);
    field(used, u, sizeof u);
    field(capacity, c, sizeof c);
    std::snprintf(msg_, sizeof msg_,
                  "%s: out of memory (requested %zu bytes, available %s, used %s, capacity %s)",
                  allocator_, requested, a, u, c);
}

out_of_memory::out_of_memory(preformatted, const char* allocator, std::size_t requested,
                             std::size_t available, std::size_t used, std::size_t capacity,
                             const char* message) noexcept
    : allocator_(allocator ? allocator : "memkit"), requested_(requested), available_(available),
      used_(used), capacity_(capacity) {
    std::snprintf(msg_, sizeof msg_, "%s", message);
}

namespace {
std::array<char, 224> budget_message(const char* allocator, std::size_t requested,
                                     std::size_t remaining, std::size_t used,
                                     std::size_t limit) noexcept {
    std::array<char, 224> buf{};
    std::snprintf(buf.data(), buf.size(),
                  "%s: budget exceeded (requested %zu bytes, remaining %zu of %zu, used %zu)",
                  allocator ? allocator : "memkit", requested, remaining, limit, used);
    return buf;
}
} // namespace

budget_exceeded::budget_exceeded(const char* allocator, std::size_t requested,
                                 std::size_t remaining, std::size_t used, std::size_t limit) noexcept
    : out_of_memory(preformatted{}, allocator, requested, remaining, used, limit,
                    budget_message(allocator, requested, remaining, used, limit).data()) {}

corruption_detected::corruption_detected(const char* allocator, const void* address,
                                         const char* detail)
    : std::runtime_error([&] {
          char buf[256];
          std::snprintf(buf, sizeof buf, "%s: heap corruption detected at %p: %s",
                        allocator ? allocator : "memkit", address, detail ? detail : "");
          return std::string(buf);
      }()),
      address_(address) {}

invalid_alignment::invalid_alignment(const char* allocator, std::size_t alignment,
                                     std::size_t max_alignment)
    : std::invalid_argument(alignment_message(allocator, alignment, max_alignment)),
      alignment_(alignment), max_alignment_(max_alignment) {}

bad_size::bad_size(const char* allocator, std::size_t size, std::size_t max_size)
    : std::invalid_argument(size_message(allocator, size, max_size)), size_(size),
      max_size_(max_size) {}

violation_handler set_violation_handler(violation_handler h) noexcept {
    return g_handler.exchange(h ? h : &default_handler);
}

void report_violation(const violation& v) noexcept { g_handler.load()(v); }

void throw_bad_request(const char* allocator, std::size_t size, std::size_t align,
                       std::size_t max_size, std::size_t max_align) {
    if (align == 0 || (align & (align - 1)) != 0 || align > max_align)
        throw invalid_alignment(allocator, align, max_align);
    throw bad_size(allocator, size, max_size);
}

} // namespace memkit
