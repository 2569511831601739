// Standard containers on memkit allocators.
//
// Two adaptors cover the standard library: memkit::resource<A> is a std::pmr::memory_resource
// (for std::pmr containers and any API taking a memory_resource*), and memkit::std_allocator<T, A>
// is a classic Allocator (for std::vector<T, Alloc> and friends, without virtual calls). Here a
// word count builds a std::pmr::unordered_map whose nodes, buckets and long keys all live in one
// arena owned by the resource, and a std::vector of word lengths uses a second arena through
// std_allocator. Dropping an arena frees its container memory at once.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory_resource>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <memkit/alloc/arena.hpp>
#include <memkit/pmr/resource.hpp>
#include <memkit/pmr/std_allocator.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "pmr_containers: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

constexpr std::string_view text =
    "the quick brown fox jumps over the lazy dog while the incomprehensibly sleepy dog "
    "dreams of the quick brown fox and of an extraordinarily uncharacteristically fast cat";

template <class F>
void for_each_word(std::string_view s, F&& f) {
    while (!s.empty()) {
        const std::size_t end = s.find(' ');
        f(s.substr(0, end));
        s = end == std::string_view::npos ? std::string_view{} : s.substr(end + 1);
    }
}

} // namespace

int main() {
    // An owning resource: it constructs the arena in place and destroys it with itself.
    memkit::resource<memkit::arena> words_memory{memkit::arena_options{.block_size = 8 * 1024}};
    {
        // The map passes its allocator on to its std::pmr::string keys, so long words (beyond
        // the small-string buffer) are stored in the arena too.
        std::pmr::unordered_map<std::pmr::string, int> counts{&words_memory};
        for_each_word(text, [&](std::string_view w) {
            ++counts[std::pmr::string{w, &words_memory}];
        });

        require(counts.at("the") == 4, "'the' occurs four times");
        require(counts.at("incomprehensibly") == 1, "long keys are counted too");
        const auto& longest = counts.find("uncharacteristically")->first;
        require(words_memory.get().owns(longest.data()), "long keys live in the arena");
        require(words_memory.get().owns(&*counts.begin()), "map nodes live in the arena");
        std::printf("%zu distinct words; the arena holds %zu bytes in %zu block(s)\n",
                    counts.size(), words_memory.get().stats().bytes_in_use,
                    words_memory.get().block_count());
    }

    // A classic allocator over an arena the caller owns; copies of it share that arena.
    memkit::arena lengths_arena;
    using length_vector =
        std::vector<std::size_t, memkit::std_allocator<std::size_t, memkit::arena>>;
    length_vector lengths{lengths_arena};
    for_each_word(text, [&](std::string_view w) { lengths.push_back(w.size()); });

    length_vector copy{lengths_arena};
    copy = lengths; // propagate_on_container_copy_assignment: still the same arena
    require(&copy.get_allocator().get() == &lengths_arena, "copies keep allocating from the arena");
    require(lengths_arena.owns(lengths.data()) && lengths_arena.owns(copy.data()),
            "vector storage lives in the arena");

    std::size_t total = 0;
    for (std::size_t n : lengths) total += n;
    std::printf("%zu words, %zu letters; the length arena served %llu allocations\n",
                lengths.size(), total,
                static_cast<unsigned long long>(lengths_arena.stats().allocations));
    require(lengths.size() == 27, "the text has 27 words");
    std::puts("pmr_containers: ok");
    return 0;
}
