// Parsing records into an arena with memkit::bump_vector, indexing them by pointer as they come.
//
// A loader reads "name,year,score" lines, stores each record in a bump_vector whose chunks come
// from an arena, and indexes it by name in a hash map of pointers while the vector is still
// growing: bump_vector never moves an element, so the pointers stay right. The names are copied
// into the same arena, and the whole data set is freed at once when the arena goes away.
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

#include <memkit/alloc/arena.hpp>
#include <memkit/container/bump_vector.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "bump_vector: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct record {
    std::string_view name; // points into the arena
    int year;
    int score;
};

// Copies `s` into the arena: the view outlives the line it was parsed from.
std::string_view intern(memkit::arena& a, std::string_view s) {
    auto* p = static_cast<char*>(a.allocate(s.size(), 1));
    std::memcpy(p, s.data(), s.size());
    return {p, s.size()};
}

int to_int(std::string_view s) {
    int v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

} // namespace

int main() {
    memkit::arena data;
    memkit::bump_vector<record> records{data}; // its chunks come from `data` too
    std::unordered_map<std::string_view, const record*> by_name;

    for (int i = 0; i < 20000; ++i) {
        const std::string line = "station-" + std::to_string(i) + "," +
                                 std::to_string(1950 + i % 70) + "," + std::to_string(i % 1000);
        const std::string_view text = line;
        const auto c1 = text.find(',');
        const auto c2 = text.find(',', c1 + 1);
        const record& r = records.emplace_back(record{intern(data, text.substr(0, c1)),
                                                      to_int(text.substr(c1 + 1, c2 - c1 - 1)),
                                                      to_int(text.substr(c2 + 1))});
        by_name.emplace(r.name, &r); // taken while `records` keeps growing
    }

    // Every pointer taken during the load still points at its record.
    for (const auto& [name, r] : by_name) require(r->name == name, "pointer still valid");
    require(by_name.at("station-12345") == &records[12345], "random access finds the same record");
    require(records.at(19999).score == 999, "the last record");
    long long total = 0;
    for (const record& r : records) total += r.score;
    require(total == 20LL * (999 * 1000 / 2), "scores sum up");

    std::printf("%zu records, %zu indexed by name; capacity %zu in chunks that never moved\n",
                records.size(), by_name.size(), records.capacity());
    std::printf("arena: %zu bytes in use for records and names\n", data.stats().bytes_in_use);
    return EXIT_SUCCESS;
}
