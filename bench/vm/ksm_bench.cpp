// Benchmarks of memkit::page_deduplicator (include/memkit/vm/ksm.hpp): how fast it finds identical
// pages, the estimate of what kernel samepage merging would save.
//
// Pattern "scan": 64 MiB of 4 KiB pages (16384), made of 64 tenants' copies of a 1 MiB table
// (the same 256 pages in each: 98 % duplicates) - or, for "unique", 16384 pages that are all
// different (the worst case for the table: one insert per page). Each iteration examines every
// page once; times are per page. The peer is the straightforward C++ way: an
// std::unordered_map<std::string_view, count> over the pages, which hashes each page with
// std::hash and compares with operator==.
//
// KSM's actual saving is not a timing: tests/vm/ksm_test.cpp measures it where ksmd can be
// switched on (docs/vm.md has the number).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/harness.hpp"
#include "memkit/vm/ksm.hpp"
#include "memkit/vm/virtual_memory.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t page = 4096;
constexpr std::size_t total = std::size_t{64} << 20;
constexpr std::size_t pages = total / page;

// Page-aligned memory filled once and shared by every subject of a case.
const std::byte* make_pages(bool duplicated) {
    static std::vector<memkit::reservation> keep; // lives as long as the benchmarks
    keep.emplace_back(total);
    auto* mem = static_cast<std::byte*>(keep.back().commit(0, total));
    constexpr std::size_t table_pages = 256;
    for (std::size_t i = 0; i < pages; ++i) {
        std::mt19937_64 rng(duplicated ? i % table_pages : i);
        for (std::size_t j = 0; j < page; j += 8) {
            const std::uint64_t v = rng();
            std::memcpy(mem + i * page + j, &v, 8);
        }
    }
    return mem;
}

void scan_memkit(benchmark::State& state, const std::byte* mem) {
    for (auto _ : state) {
        memkit::page_deduplicator d{page};
        d.add({mem, total});
        benchmark::DoNotOptimize(d.report().duplicate_pages);
    }
    mb::set_allocations(state, pages);
}

void scan_unordered_map(benchmark::State& state, const std::byte* mem) {
    for (auto _ : state) {
        std::unordered_map<std::string_view, std::size_t> seen;
        seen.reserve(1024);
        std::size_t duplicates = 0;
        for (std::size_t i = 0; i < pages; ++i) {
            const std::string_view key{reinterpret_cast<const char*>(mem + i * page), page};
            if (++seen[key] > 1) ++duplicates;
        }
        benchmark::DoNotOptimize(duplicates);
    }
    mb::set_allocations(state, pages);
}

void register_scan(const char* name, bool duplicated) {
    const std::string c = std::string("page_deduplicator/scan/") + name;
    const std::byte* mem = nullptr;
    auto data = [duplicated, mem]() mutable {
        if (mem == nullptr) mem = make_pages(duplicated);
        return mem;
    };
    // Filled lazily at the first run, so that filtering other cases out costs nothing.
    auto shared = std::make_shared<decltype(data)>(data);
    mb::add_case({c, "memkit::page_deduplicator", mb::role::memkit, pages},
                 [shared](benchmark::State& s) { scan_memkit(s, (*shared)()); });
    mb::add_case({c, "std::unordered_map<string_view>", mb::role::peer, pages},
                 [shared](benchmark::State& s) { scan_unordered_map(s, (*shared)()); });
}

bool register_all() {
    register_scan("64MiB-similar", true);
    register_scan("64MiB-unique", false);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
