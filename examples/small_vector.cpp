// Tokenizing lines into small vectors: most lines have a handful of fields, so their tokens stay
// inside the vector and the heap is never touched; a long line spills over transparently. The
// tokenizer takes a small_vector_base&, so callers choose the inline capacity. The last part
// keeps per-request scratch on an arena through the pmr variant.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <memory_resource>
#include <string_view>

#include "memkit/alloc/arena.hpp"
#include "memkit/container/small_vector.hpp"
#include "memkit/pmr/resource.hpp"

namespace {

// Splits `line` on spaces into `out`, which may have any inline capacity.
void split(std::string_view line, memkit::small_vector_base<std::string_view>& out) {
    out.clear();
    std::size_t pos = 0;
    while (pos < line.size()) {
        const std::size_t start = line.find_first_not_of(' ', pos);
        if (start == std::string_view::npos) break;
        const std::size_t end = std::min(line.find(' ', start), line.size());
        out.push_back(line.substr(start, end - start));
        pos = end;
    }
}

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
    }
}

} // namespace

int main() {
    const std::string_view lines[] = {
        "mov eax 1",
        "add eax ebx",
        "call format with a rather long list of arguments that does not fit in eight",
    };
    memkit::small_vector<std::string_view, 8> fields; // reused: keeps its capacity
    for (std::string_view line : lines) {
        split(line, fields);
        std::printf("%2zu fields, %-11s first '%.*s'\n", fields.size(),
                    fields.is_inline() ? "inline," : "on the heap,",
                    static_cast<int>(fields.front().size()), fields.front().data());
    }
    check(fields.size() == 15 && !fields.is_inline(), "the long line spills to the heap");
    split(lines[1], fields);
    check(fields == memkit::small_vector<std::string_view, 3>{"add", "eax", "ebx"},
          "tokens of a short line");
    fields.shrink_to_fit(); // back into the inline buffer
    check(fields.is_inline(), "shrink_to_fit returns to the inline buffer");

    // Per-request scratch: ids beyond the inline four come from the arena, and everything is
    // released at once with the arena.
    memkit::arena scratch;
    memkit::resource r{scratch};
    memkit::pmr::small_vector<int, 4> ids{&r};
    for (int i = 1; i <= 10; ++i) ids.push_back(i * i);
    check(scratch.owns(ids.data()), "the heap buffer comes from the arena");
    const auto removed = erase_if(ids, [](int x) { return x % 2 != 0; });
    std::printf("%zu even squares kept, %zu odd ones erased, %zu bytes of arena in use\n",
                ids.size(), static_cast<std::size_t>(removed), scratch.stats().bytes_in_use);
    check(ids.size() == 5 && ids.back() == 100, "erase_if keeps the even squares");

    return failures == 0 ? 0 : 1;
}
