// Catching memory bugs with memkit::debug_allocator.
//
// A test harness runs a small word-counting component over a debug_allocator: the component's
// std::pmr containers allocate through memkit::resource, so every block gets fences, fill
// patterns and a quarantine. After the run the harness calls verify() and prints the counters.
// Then it shows what the allocator reports for three classic bugs: a one-byte overrun (found by
// verify()), a free with the wrong size (a violation, sent to the installed handler), and a
// leak (reported when the allocator is destroyed, here to a callback).
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory_resource>
#include <string>
#include <string_view>

#include <memkit/alloc/system.hpp>
#include <memkit/core/annotations.hpp>
#include <memkit/core/error.hpp>
#include <memkit/debug/debug_allocator.hpp>
#include <memkit/pmr/resource.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "debug_allocator: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

using checked_heap = memkit::debug_allocator<memkit::system_allocator>;

// The component under test: counts the words of a text in pmr containers.
std::size_t count_words(std::string_view text, std::pmr::memory_resource* mr) {
    std::pmr::map<std::pmr::string, int> counts{mr};
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && text[i] == ' ') ++i;
        std::size_t j = i;
        while (j < text.size() && text[j] != ' ') ++j;
        if (j > i) ++counts[std::pmr::string(text.substr(i, j - i), mr)];
        i = j;
    }
    return counts.size();
}

memkit::errc last_violation{};
void remember(const memkit::violation& v) {
    last_violation = v.code;
    std::printf("  violation reported: %s\n", v.detail);
}

} // namespace

int main() {
    {
        memkit::resource<checked_heap> r;
        const std::size_t distinct = count_words(
            "the quick brown fox jumps over the lazy dog while the extraordinarily patient "
            "observer keeps counting every single word of this sentence",
            &r);
        require(distinct == 20, "20 distinct words");
        const std::size_t checked = r.get().verify(); // throws corruption_detected on damage
        const memkit::debug_stats s = r.get().diagnostics();
        std::printf("clean run: %zu words, %llu allocations, %zu live blocks, %zu in quarantine, "
                    "%zu blocks verified\n",
                    distinct, static_cast<unsigned long long>(s.allocations), s.live_blocks,
                    s.quarantined_blocks, checked);
        require(s.live_blocks == 0 && s.corruptions == 0 && s.violations == 0, "no findings");
    }

    // 1. A one-byte overrun. Under AddressSanitizer the fences are poisoned, so ASan itself
    //    stops the program at the write; the demonstration runs only without it.
    if constexpr (!memkit::has_address_sanitizer) {
        checked_heap heap;
        char* name = static_cast<char*>(heap.allocate(5));
        std::strcpy(name, "hello"); // 6 bytes with the terminator: the bug
        try {
            heap.verify();
            require(false, "verify() finds the overrun");
        } catch (const memkit::corruption_detected& e) {
            std::printf("overrun found by verify(): %s\n", e.what());
        }
        const memkit::violation_handler previous = memkit::set_violation_handler(&remember);
        heap.deallocate(name, 5); // reported once (by verify), then withheld from malloc
        memkit::set_violation_handler(previous);
        require(heap.diagnostics().condemned_blocks == 1, "the damaged block is not reused");
    } else {
        std::printf("overrun demonstration skipped: AddressSanitizer catches the write itself\n");
    }

    // 2. A free with the wrong size: reported, and the block stays live.
    {
        checked_heap heap;
        const memkit::violation_handler previous = memkit::set_violation_handler(&remember);
        void* p = heap.allocate(64);
        heap.deallocate(p, 32);
        memkit::set_violation_handler(previous);
        require(last_violation == memkit::errc::bad_size, "wrong size reported");
        heap.deallocate(p, 64);
    }

    // 3. A leak, reported to a callback when the allocator is destroyed.
    std::size_t leaked_bytes = 0;
    {
        memkit::debug_options opts;
        opts.on_leak = [&](const memkit::leak_report& r) {
            leaked_bytes = r.bytes;
            std::printf("leak report: %.*s\n", static_cast<int>(r.text.size()), r.text.data());
        };
        checked_heap heap{opts};
        (void)heap.allocate(48); // never freed
        heap.deallocate(heap.allocate(16), 16);
    }
    require(leaked_bytes == 48, "48 bytes leaked");
    return EXIT_SUCCESS;
}
