// A symbol table on memkit::flat_map.
//
// A tiny configuration language defines symbols (`name = value`) and then uses them in
// expressions. The definitions arrive unsorted, with one name defined twice, so the table is
// built in one bulk step: the definitions are sorted once and the first definition of a name
// wins, as with std::map::insert. Lookups then take std::string_view slices of the source text
// directly (std::less<> makes the map's comparator transparent), so resolving a name never
// builds a std::string. A flat_set of reserved words is checked the same way.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <memkit/container/flat_map.hpp>
#include <memkit/container/flat_set.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "flat_map example: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

constexpr std::string_view definitions = "width = 640\n"
                                         "height = 480\n"
                                         "depth = 24\n"
                                         "fps = 60\n"
                                         "width = 1280\n" // a redefinition: ignored
                                         "border = 8\n";

constexpr std::string_view expressions[] = {"width + border + border", "height + border",
                                            "fps + fps + fps", "depth + alpha"};

std::string_view trim(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

template <class F>
void split(std::string_view s, char sep, F&& f) {
    while (!s.empty()) {
        const std::size_t end = s.find(sep);
        f(trim(s.substr(0, end)));
        s = end == std::string_view::npos ? std::string_view{} : s.substr(end + 1);
    }
}

} // namespace

int main() {
    // Parse the definitions in source order, then build the table in one step.
    std::vector<std::pair<std::string, long>> parsed;
    split(definitions, '\n', [&](std::string_view line) {
        const std::size_t eq = line.find('=');
        parsed.emplace_back(std::string(trim(line.substr(0, eq))),
                            std::stol(std::string(trim(line.substr(eq + 1)))));
    });
    const memkit::flat_map<std::string, long, std::less<>> symbols(parsed.begin(), parsed.end());
    require(symbols.size() == 5, "five distinct names");
    require(symbols.at("width") == 640, "the first definition wins");
    require(symbols.keys().front() == "border", "keys are sorted");

    const memkit::flat_set<std::string_view> reserved{"if", "else", "alpha", "while"};

    int unresolved = 0;
    for (std::string_view expr : expressions) {
        long total = 0;
        std::string_view missing;
        split(expr, '+', [&](std::string_view name) {
            if (auto it = symbols.find(name); it != symbols.end()) // no std::string built
                total += it->second;
            else missing = name;
        });
        if (missing.empty()) {
            std::printf("%-24.*s = %ld\n", static_cast<int>(expr.size()), expr.data(), total);
        } else {
            ++unresolved;
            std::printf("%-24.*s : '%.*s' is %s\n", static_cast<int>(expr.size()), expr.data(),
                        static_cast<int>(missing.size()), missing.data(),
                        reserved.contains(missing) ? "a reserved word" : "not defined");
        }
    }
    require(unresolved == 1, "one expression uses an undefined name");

    // Symbols in a range, in order: everything from "d" up to (not including) "h".
    std::printf("names in [d, h):");
    for (auto it = symbols.lower_bound("d"); it != symbols.lower_bound("h"); ++it)
        std::printf(" %s", it->first.c_str());
    std::printf("\n");
    require(symbols.upper_bound("fps") - symbols.lower_bound("d") == 2, "depth and fps");
    return 0;
}
