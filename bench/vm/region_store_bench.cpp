// Benchmarks of memkit::region_store (include/memkit/vm/region_store.hpp): the latency of
// reaching a region's bytes (the target is < 1 us per access) and the cost of opening a
// store, against keeping the same regions in a std::unordered_map<std::string,
// std::vector<std::byte>>, the obvious way to hold named buffers in memory.
//
// The store has 14 regions named D01..D14 (a table of 14 "dimensions"), 4 KiB each for the
// access cases. Every access sums the first 64 bytes of the region (eight 64-bit words), so
// neither side can skip touching the data; writes copy 64 bytes in. One iteration makes 1024
// accesses in a fixed pseudo-random order of regions; ns/op is per access.
//   read-by-name/64B  - region_store::read(name) (hash lookup + shared lock) vs
//                       unordered_map::find(name) alone, and with a std::shared_mutex per entry
//                       taken shared (what a thread-safe map of buffers needs).
//   read-by-id/64B    - region_store::read(region_id) (resolved once with find()) vs the same
//                       map lookups (a map has nothing cheaper that stays safe to share).
//   write/64B         - region_store::write(id, 0, 64 bytes) (exclusive lock, marks dirty) vs
//                       map lookup + memcpy, without and with a std::shared_mutex held exclusive.
//   read-latency/64B  - read-by-name timed access by access: p50, p99 and max as counters (with
//                       the clock's own ~20 ns), against the map with a std::shared_mutex.
//   open-verify/14MiB - open a 14 x 1 MiB store file (header, layout and all CRC32C checksums
//                       verified), then close, vs reading the same bytes with pread() into the
//                       map's 14 vectors. ns/op is per open.
//   open-header-only/14MiB - the same open with verify_checksums = false: O(regions).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "common/harness.hpp"
#include "memkit/vm/region_store.hpp"

namespace {

namespace mb = memkit::bench;
namespace fs = std::filesystem;

constexpr std::size_t region_count = 14;
constexpr std::size_t small_region = 4096;
constexpr std::size_t open_region = std::size_t{1} << 20;
constexpr std::size_t accesses = 1024;           // per benchmark iteration
constexpr std::size_t touched = 64;              // bytes read or written per access
constexpr std::uint64_t order_seed = 0x72656769; // "regi"

std::string region_name(std::size_t i) {
    return std::string("D") + (i + 1 < 10 ? "0" : "") + std::to_string(i + 1);
}

memkit::region_layout make_layout(std::size_t size) {
    memkit::region_layout l;
    for (std::size_t i = 0; i < region_count; ++i) l.add(region_name(i), size);
    return l;
}

const std::vector<std::string>& names() {
    static const std::vector<std::string> n = [] {
        std::vector<std::string> v;
        for (std::size_t i = 0; i < region_count; ++i) v.push_back(region_name(i));
        return v;
    }();
    return n;
}

// Which region each of the `accesses` accesses goes to: fixed seed, same for every subject.
const std::vector<std::size_t>& order() {
    static const std::vector<std::size_t> o = [] {
        std::mt19937_64 rng(order_seed);
        std::vector<std::size_t> v(accesses);
        for (auto& x : v) x = static_cast<std::size_t>(rng() % region_count);
        return v;
    }();
    return o;
}

std::uint64_t sum64(const std::byte* p) noexcept {
    std::uint64_t w[touched / 8];
    std::memcpy(w, p, sizeof w);
    std::uint64_t s = 0;
    for (std::uint64_t x : w) s += x;
    return s;
}

std::vector<std::byte> payload() {
    std::vector<std::byte> v(touched);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::byte>(i * 7 + 1);
    return v;
}

// ----------------------------------------------------------------------------- subjects

struct memkit_store {
    memkit::region_store store = memkit::region_store::anonymous(make_layout(small_region));
    std::vector<memkit::region_id> ids;
    memkit_store() {
        store.activate();
        for (const auto& n : names()) ids.push_back(store.find(n));
        const auto p = payload();
        for (const auto& n : names()) store.write(n, 0, p);
    }
};

struct map_store {
    std::unordered_map<std::string, std::vector<std::byte>> map;
    map_store() {
        const auto p = payload();
        for (const auto& n : names()) {
            auto& v = map[n];
            v.assign(small_region, std::byte{0});
            std::memcpy(v.data(), p.data(), p.size());
        }
    }
};

struct locked_entry {
    std::vector<std::byte> bytes;
    std::unique_ptr<std::shared_mutex> lock = std::make_unique<std::shared_mutex>();
};

struct locked_map_store {
    std::unordered_map<std::string, locked_entry> map;
    locked_map_store() {
        const auto p = payload();
        for (const auto& n : names()) {
            auto& e = map[n];
            e.bytes.assign(small_region, std::byte{0});
            std::memcpy(e.bytes.data(), p.data(), p.size());
        }
    }
};

constexpr const char* memkit_name = "memkit::region_store";
constexpr const char* map_name = "std::unordered_map<string, vector<byte>>";
constexpr const char* locked_map_name = "std::unordered_map + std::shared_mutex";

// ----------------------------------------------------------------------------- access cases

void read_by_name_memkit(benchmark::State& state) {
    memkit_store s;
    for (auto _ : state) {
        std::uint64_t sum = 0;
        for (std::size_t i : order()) {
            auto g = s.store.read(names()[i]);
            sum += sum64(g.data());
        }
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, accesses);
}

void read_by_id_memkit(benchmark::State& state) {
    memkit_store s;
    for (auto _ : state) {
        std::uint64_t sum = 0;
        for (std::size_t i : order()) {
            auto g = s.store.read(s.ids[i]);
            sum += sum64(g.data());
        }
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, accesses);
}

void read_map(benchmark::State& state) {
    map_store s;
    for (auto _ : state) {
        std::uint64_t sum = 0;
        for (std::size_t i : order()) sum += sum64(s.map.find(names()[i])->second.data());
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, accesses);
}

void read_locked_map(benchmark::State& state) {
    locked_map_store s;
    for (auto _ : state) {
        std::uint64_t sum = 0;
        for (std::size_t i : order()) {
            auto& e = s.map.find(names()[i])->second;
            std::shared_lock lock(*e.lock);
            sum += sum64(e.bytes.data());
        }
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, accesses);
}

void write_memkit(benchmark::State& state) {
    memkit_store s;
    const auto p = payload();
    for (auto _ : state) {
        for (std::size_t i : order()) s.store.write(s.ids[i], 0, p);
        benchmark::ClobberMemory();
    }
    mb::set_allocations(state, accesses);
}

void write_map(benchmark::State& state) {
    map_store s;
    const auto p = payload();
    for (auto _ : state) {
        for (std::size_t i : order())
            std::memcpy(s.map.find(names()[i])->second.data(), p.data(), p.size());
        benchmark::ClobberMemory();
    }
    mb::set_allocations(state, accesses);
}

void write_locked_map(benchmark::State& state) {
    locked_map_store s;
    const auto p = payload();
    for (auto _ : state) {
        for (std::size_t i : order()) {
            auto& e = s.map.find(names()[i])->second;
            std::unique_lock lock(*e.lock);
            std::memcpy(e.bytes.data(), p.data(), p.size());
        }
        benchmark::ClobberMemory();
    }
    mb::set_allocations(state, accesses);
}

// ----------------------------------------------------------------------------- latency case

// Times every access on its own (steady_clock, whose own cost of about 20 ns is included) and
// reports the p50, p99 and max of the samples as counters, for the "< 1 us per access" claim.
template <class Access>
void latency(benchmark::State& state, Access access) {
    constexpr std::size_t max_samples = std::size_t{1} << 20;
    std::vector<std::uint32_t> ns;
    ns.reserve(max_samples);
    std::uint64_t sum = 0;
    for (auto _ : state) {
        for (std::size_t i : order()) {
            const auto t0 = std::chrono::steady_clock::now();
            sum += access(i);
            const auto t1 = std::chrono::steady_clock::now();
            if (ns.size() < max_samples)
                ns.push_back(static_cast<std::uint32_t>(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
        }
    }
    benchmark::DoNotOptimize(sum);
    mb::set_allocations(state, accesses);
    if (ns.empty()) return;
    std::sort(ns.begin(), ns.end());
    state.counters["p50_ns"] = ns[ns.size() / 2];
    state.counters["p99_ns"] = ns[ns.size() * 99 / 100];
    state.counters["max_ns"] = ns.back();
}

void latency_memkit(benchmark::State& state) {
    memkit_store s;
    latency(state, [&](std::size_t i) {
        auto g = s.store.read(names()[i]);
        return sum64(g.data());
    });
}

void latency_locked_map(benchmark::State& state) {
    locked_map_store s;
    latency(state, [&](std::size_t i) {
        auto& e = s.map.find(names()[i])->second;
        std::shared_lock lock(*e.lock);
        return sum64(e.bytes.data());
    });
}

// ----------------------------------------------------------------------------- open cases

// The store file for the open cases: made on first use with distinct contents in every region,
// removed when the process exits.
class open_fixture {
public:
    open_fixture() {
        dir_ =
            fs::temp_directory_path() / ("memkit_region_store_bench_" + std::to_string(::getpid()));
        fs::create_directories(dir_);
        path_ = dir_ / "store.mks";
        fs::remove(path_);
        memkit::region_store s = memkit::region_store::create(path_, layout_);
        s.activate();
        std::mt19937_64 rng(order_seed);
        for (const auto& n : names()) {
            auto w = s.write(n);
            for (auto& b : w.bytes()) b = static_cast<std::byte>(rng());
        }
        s.flush();
        s.close();
    }
    ~open_fixture() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    open_fixture(const open_fixture&) = delete;
    open_fixture& operator=(const open_fixture&) = delete;

    [[nodiscard]] const fs::path& path() const { return path_; }
    [[nodiscard]] const memkit::region_layout& layout() const { return layout_; }

private:
    memkit::region_layout layout_ = make_layout(open_region);
    fs::path dir_;
    fs::path path_;
};

open_fixture& fixture() {
    static open_fixture f;
    return f;
}

void open_memkit(benchmark::State& state, bool verify) {
    const open_fixture& f = fixture();
    memkit::region_store_options o;
    o.verify_checksums = verify;
    for (auto _ : state) {
        memkit::region_store s = memkit::region_store::open(f.path(), f.layout(), o);
        s.activate();
        auto g = s.read(s.find("D07"));
        benchmark::DoNotOptimize(sum64(g.data()));
        g.unlock();
        s.close();
    }
    mb::set_allocations(state, 1);
}

void open_pread_map(benchmark::State& state) {
    const open_fixture& f = fixture();
    memkit::region_store probe = memkit::region_store::open(f.path(), f.layout());
    const auto regions = probe.regions(); // the same offsets the store uses
    probe.close();
    for (auto _ : state) {
        std::unordered_map<std::string, std::vector<std::byte>> map;
        const int fd = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            state.SkipWithError("cannot open the store file");
            return;
        }
        for (const auto& r : regions) {
            auto& v = map[r.name];
            v.resize(r.size);
            if (::pread(fd, v.data(), v.size(), static_cast<off_t>(r.offset)) !=
                static_cast<ssize_t>(v.size())) {
                ::close(fd);
                state.SkipWithError("short read of the store file");
                return;
            }
        }
        ::close(fd);
        benchmark::DoNotOptimize(sum64(map.find("D07")->second.data()));
    }
    mb::set_allocations(state, 1);
}

bool register_all() {
    const std::string sz = std::to_string(touched) + "B";
    const std::string by_name = "region_store/read-by-name/" + sz;
    mb::add_case({by_name, memkit_name, mb::role::memkit, accesses}, read_by_name_memkit);
    mb::add_case({by_name, map_name, mb::role::peer, accesses}, read_map);
    mb::add_case({by_name, locked_map_name, mb::role::peer, accesses}, read_locked_map);

    const std::string by_id = "region_store/read-by-id/" + sz;
    mb::add_case({by_id, memkit_name, mb::role::memkit, accesses}, read_by_id_memkit);
    mb::add_case({by_id, map_name, mb::role::peer, accesses}, read_map);
    mb::add_case({by_id, locked_map_name, mb::role::peer, accesses}, read_locked_map);

    const std::string write = "region_store/write/" + sz;
    mb::add_case({write, memkit_name, mb::role::memkit, accesses}, write_memkit);
    mb::add_case({write, map_name, mb::role::peer, accesses}, write_map);
    mb::add_case({write, locked_map_name, mb::role::peer, accesses}, write_locked_map);

    const std::string lat = "region_store/read-latency/" + sz;
    mb::add_case({lat, memkit_name, mb::role::memkit, accesses}, latency_memkit);
    mb::add_case({lat, locked_map_name, mb::role::peer, accesses}, latency_locked_map);

    const std::string pread_name = "pread() into std::unordered_map<string, vector<byte>>";
    const std::string open_verify = "region_store/open-verify/14MiB";
    mb::add_case({open_verify, memkit_name, mb::role::memkit, 1},
                 [](benchmark::State& s) { open_memkit(s, true); });
    mb::add_case({open_verify, pread_name, mb::role::peer, 1}, open_pread_map);
    const std::string open_header = "region_store/open-header-only/14MiB";
    mb::add_case({open_header, memkit_name, mb::role::memkit, 1},
                 [](benchmark::State& s) { open_memkit(s, false); });
    mb::add_case({open_header, pread_name, mb::role::peer, 1}, open_pread_map);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
