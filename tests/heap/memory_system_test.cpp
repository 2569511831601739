#include "memkit/heap/memory_system.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory_resource>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using memkit::memory_system;
using memkit::memory_system_config;
using memkit::memory_tier;
using memkit::pressure_level;

// Expects std::invalid_argument whose message starts with `field` followed by ':'.
template <class F>
void expect_invalid(F&& f, const std::string& field) {
    try {
        f();
        ADD_FAILURE() << "no exception for " << field;
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.rfind(field + ":", 0), 0u) << msg;
    }
}

TEST(MemorySystem, RoutesByExactBoundaries) {
    memory_system_config c;
    c.small_max = 128;
    c.medium_max = 4096;
    memory_system s{c};
    struct req {
        std::size_t size;
        memory_tier tier;
    };
    const req reqs[] = {{1, memory_tier::small},      {128, memory_tier::small},
                        {129, memory_tier::medium},   {4096, memory_tier::medium},
                        {4097, memory_tier::large},   {1 << 20, memory_tier::large}};
    std::vector<void*> ps;
    for (const req& r : reqs) {
        EXPECT_EQ(s.tier_for(r.size), r.tier) << r.size;
        ps.push_back(s.allocate(r.size, 8));
    }
    auto st = s.stats();
    EXPECT_EQ(st.small.allocations, 2u);
    EXPECT_EQ(st.small.bytes_in_use, 129u);
    EXPECT_EQ(st.medium.allocations, 2u);
    EXPECT_EQ(st.medium.bytes_in_use, 129u + 4096u);
    EXPECT_EQ(st.large.allocations, 2u);
    EXPECT_EQ(st.large.bytes_in_use, 4097u + (1u << 20));
    EXPECT_EQ(st.budget_used, 129u + 129u + 4096u + 4097u + (1u << 20));
    for (std::size_t i = 0; i < ps.size(); ++i) s.deallocate(ps[i], reqs[i].size, 8);
    st = s.stats();
    EXPECT_EQ(st.small.deallocations, 2u);
    EXPECT_EQ(st.medium.deallocations, 2u);
    EXPECT_EQ(st.large.deallocations, 2u);
    EXPECT_EQ(st.small.bytes_in_use + st.medium.bytes_in_use + st.large.bytes_in_use, 0u);
    EXPECT_EQ(st.small.peak_bytes, 129u);
    EXPECT_EQ(st.medium.peak_bytes, 4225u);
    EXPECT_EQ(st.large.peak_bytes, 4097u + (1u << 20));
    EXPECT_EQ(st.budget_used, 0u);
    EXPECT_EQ(st.budget_peak, 129u + 129u + 4096u + 4097u + (1u << 20));
}

TEST(MemorySystem, BudgetRefusesWithExactFieldsAndReleases) {
    auto s = memory_system::builder().budget(1000).name("svc").build();
    void* a = s.allocate(600);
    try {
        (void)s.allocate(500);
        FAIL() << "expected memory_budget_exceeded";
    } catch (const memkit::memory_budget_exceeded& e) {
        EXPECT_EQ(e.budget_name(), "svc");
        EXPECT_EQ(e.requested(), 500u);
        EXPECT_EQ(e.remaining(), 400u);
        EXPECT_EQ(e.used(), 600u);
        EXPECT_EQ(e.limit(), 1000u);
        EXPECT_EQ(e.code(), memkit::make_error_code(memkit::errc::budget_exceeded));
    }
    EXPECT_EQ(s.budget().used(), 600u);
    EXPECT_EQ(s.stats(memory_tier::medium).allocations, 1u); // the refused one never reached it
    void* b = s.allocate(400);
    EXPECT_EQ(s.budget().used(), 1000u);
    EXPECT_THROW((void)s.allocate(1), memkit::budget_exceeded);
    s.deallocate(a, 600);
    void* c = s.allocate(600);
    s.deallocate(b, 400);
    s.deallocate(c, 600);
    EXPECT_EQ(s.budget().used(), 0u);
    EXPECT_EQ(s.budget().peak(), 1000u);
}

TEST(MemorySystem, BadRequests) {
    memory_system s{memory_system_config{}};
    EXPECT_THROW((void)s.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)s.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)s.allocate(8, std::size_t{1} << 31), memkit::invalid_alignment);
    EXPECT_EQ(s.budget().used(), 0u);
}

TEST(MemorySystem, MediumTierLimitGivesOutOfMemoryAndReleasesBudget) {
    auto s = memory_system::builder().small(64).medium(32768, 65536, 65536).build();
    std::vector<void*> ps;
    bool failed = false;
    for (int i = 0; i < 8; ++i) {
        try {
            ps.push_back(s.allocate(30000));
        } catch (const memkit::out_of_memory& e) {
            EXPECT_EQ(e.requested(), 30000u);
            failed = true;
            break;
        }
    }
    ASSERT_TRUE(failed);
    EXPECT_EQ(ps.size(), 2u); // a 64 KiB heap holds two 30000-byte blocks, not three
    EXPECT_EQ(s.budget().used(), ps.size() * 30000u);
    EXPECT_EQ(s.stats(memory_tier::medium).allocations, ps.size());
    for (void* p : ps) s.deallocate(p, 30000);
    void* p = s.allocate(30000); // usable again
    s.deallocate(p, 30000);
    EXPECT_EQ(s.budget().used(), 0u);
}

struct recording_plugin : memkit::memory_plugin {
    std::string tag;
    std::vector<std::string>* log;
    std::mutex* mu;
    memory_system* initialized = nullptr;
    std::vector<pressure_level> pressures;
    recording_plugin(std::string t, std::vector<std::string>* l, std::mutex* m)
        : tag(std::move(t)), log(l), mu(m) {}
    void add(const std::string& s) noexcept {
        std::lock_guard<std::mutex> g(*mu);
        log->push_back(tag + ":" + s);
    }
    void on_init(memory_system& s) override {
        initialized = &s;
        add("init");
    }
    void on_allocation(std::size_t size, std::size_t align, void*) noexcept override {
        add("alloc " + std::to_string(size) + "/" + std::to_string(align));
    }
    void on_deallocation(std::size_t size, std::size_t align, void*) noexcept override {
        add("free " + std::to_string(size) + "/" + std::to_string(align));
    }
    void on_pressure(pressure_level l) noexcept override {
        pressures.push_back(l);
        add(std::string{"pressure "} + std::string{memkit::to_string(l)});
    }
};

TEST(MemorySystem, PluginsCalledInOrderWithPressure) {
    std::vector<std::string> log;
    std::mutex mu;
    auto a = std::make_shared<recording_plugin>("a", &log, &mu);
    auto b = std::make_shared<recording_plugin>("b", &log, &mu);
    auto s = memory_system::builder().budget(1000).plugin(a).plugin(b).build();
    EXPECT_EQ(a->initialized, &s);
    EXPECT_EQ(s.plugin_count(), 2u);
    void* p1 = s.allocate(100, 16);  // 10 %: low
    void* p2 = s.allocate(600, 8);   // 70 %: medium
    void* p3 = s.allocate(250, 8);   // 95 %: critical
    s.deallocate(p3, 250, 8);        // 70 %: medium
    s.deallocate(p2, 600, 8);        // 10 %: low
    s.deallocate(p1, 100, 16);
    const std::vector<std::string> expected = {
        "a:init",         "b:init",          "a:alloc 100/16",   "b:alloc 100/16",
        "a:pressure medium", "b:pressure medium", "a:alloc 600/8", "b:alloc 600/8",
        "a:pressure critical", "b:pressure critical", "a:alloc 250/8", "b:alloc 250/8",
        "a:free 250/8",   "b:free 250/8",    "a:pressure medium", "b:pressure medium",
        "a:free 600/8",   "b:free 600/8",    "a:pressure low",  "b:pressure low",
        "a:free 100/16",  "b:free 100/16"};
    EXPECT_EQ(log, expected);
    EXPECT_EQ(a->pressures, (std::vector<pressure_level>{pressure_level::medium,
                                                          pressure_level::critical,
                                                          pressure_level::medium,
                                                          pressure_level::low}));
}

TEST(MemorySystem, NullPluginRejected) {
    memory_system::builder b;
    EXPECT_THROW(b.plugin(nullptr), std::invalid_argument);
    EXPECT_THROW(memory_system(memory_system_config{}, {nullptr}), std::invalid_argument);
}

TEST(MemorySystem, ConfigValidationNamesTheField) {
    auto check = [](auto mutate, const std::string& field) {
        memory_system_config c;
        mutate(c);
        expect_invalid([&] { c.validate(); }, field);
        expect_invalid([&] { memory_system s{c}; }, field);
    };
    check([](memory_system_config& c) { c.small_max = 0; }, "small_max");
    check([](memory_system_config& c) { c.small_max = 1 << 20; c.medium_max = 1 << 21; },
          "small_max");
    check([](memory_system_config& c) { c.small_max = c.medium_max; }, "small_max");
    check([](memory_system_config& c) { c.small_min_class = 0; }, "small_min_class");
    check([](memory_system_config& c) { c.small_min_class = 512; }, "small_min_class");
    check([](memory_system_config& c) {
        c.small_spacing = memkit::size_class_spacing::linear;
        c.small_step = 0;
    }, "small_step");
    check([](memory_system_config& c) {
        c.small_spacing = memkit::size_class_spacing::linear;
        c.small_max = 4096;
        c.small_step = 8;
    }, "small_step");
    check([](memory_system_config& c) { c.medium_region_size = 4095; }, "medium_region_size");
    check([](memory_system_config& c) { c.medium_max_total = 4096; }, "medium_max_total");
    check([](memory_system_config& c) { c.budget = 100; c.soft_budget = 101; }, "soft_budget");
    check([](memory_system_config& c) { c.pressure.medium = 0; }, "pressure_medium");
    check([](memory_system_config& c) { c.pressure.medium = 0.9; }, "pressure_medium");
    check([](memory_system_config& c) { c.pressure.high = 0.99; c.pressure.critical = 0.95; },
          "pressure_high");
    check([](memory_system_config& c) { c.pressure.critical = 1.5; }, "pressure_critical");
    memory_system_config ok;
    ok.budget = 100;
    ok.soft_budget = 100;
    EXPECT_NO_THROW(ok.validate());
}

TEST(MemorySystem, FromEnvWithFakeGetenv) {
    std::map<std::string, std::string> env = {
        {"MEMKIT_SMALL_MAX", "512"},       {"MEMKIT_MEDIUM_MAX", "64KiB"},
        {"MEMKIT_BUDGET", "1GiB"},         {"MEMKIT_SOFT_BUDGET", "512 M"},
        {"MEMKIT_MEDIUM_REGION_SIZE", "2MiB"}, {"MEMKIT_SMALL_SPACING", "linear"},
        {"MEMKIT_SMALL_STEP", "32"},       {"MEMKIT_PRESSURE_HIGH", "0.85"},
        {"MEMKIT_TEST_PRESETS", "whatever"}};
    auto getenv = [&env](const char* n) -> const char* {
        auto it = env.find(n);
        return it == env.end() ? nullptr : it->second.c_str();
    };
    auto c = memory_system_config::from_env("MEMKIT_", getenv);
    EXPECT_EQ(c.small_max, 512u);
    EXPECT_EQ(c.medium_max, 65536u);
    EXPECT_EQ(c.budget, std::size_t{1} << 30);
    EXPECT_EQ(c.soft_budget, std::size_t{512} << 20);
    EXPECT_EQ(c.medium_region_size, std::size_t{2} << 20);
    EXPECT_EQ(c.small_spacing, memkit::size_class_spacing::linear);
    EXPECT_EQ(c.small_step, 32u);
    EXPECT_DOUBLE_EQ(c.pressure.high, 0.85);
    EXPECT_DOUBLE_EQ(c.pressure.medium, 0.60); // default kept
    EXPECT_EQ(c.small_min_class, 8u);          // default kept

    // Defaults when nothing is set; another prefix reads other names.
    auto none = [](const char*) -> const char* { return nullptr; };
    auto d = memory_system_config::from_env("MEMKIT_", none);
    EXPECT_EQ(d.small_max, 256u);
    EXPECT_EQ(d.medium_max, 65536u);
    EXPECT_EQ(d.budget, 0u);
    env["APP_SMALL_MAX"] = "1K";
    EXPECT_EQ(memory_system_config::from_env("APP_", getenv).small_max, 1024u);

    // Suffixes.
    EXPECT_EQ(memory_system_config::parse_size("7", "x"), 7u);
    EXPECT_EQ(memory_system_config::parse_size("7B", "x"), 7u);
    EXPECT_EQ(memory_system_config::parse_size("3K", "x"), 3072u);
    EXPECT_EQ(memory_system_config::parse_size("3kib", "x"), 3072u);
    EXPECT_EQ(memory_system_config::parse_size("2M", "x"), 2u << 20);
    EXPECT_EQ(memory_system_config::parse_size(" 2 MiB ", "x"), 2u << 20);
    EXPECT_EQ(memory_system_config::parse_size("4G", "x"), std::size_t{4} << 30);
    EXPECT_EQ(memory_system_config::parse_size("4GiB", "x"), std::size_t{4} << 30);

    // Malformed values name the variable.
    for (const char* bad : {"", "abc", "12X", "-5", "1.5K", "99999999999999999999",
                            "17179869184GiB"}) {
        env = {{"MEMKIT_MEDIUM_MAX", bad}};
        expect_invalid([&] { (void)memory_system_config::from_env("MEMKIT_", getenv); },
                       "MEMKIT_MEDIUM_MAX");
    }
    env = {{"MEMKIT_SMALL_SPACING", "cubic"}};
    expect_invalid([&] { (void)memory_system_config::from_env("MEMKIT_", getenv); },
                   "MEMKIT_SMALL_SPACING");
    env = {{"MEMKIT_PRESSURE_MEDIUM", "lots"}};
    expect_invalid([&] { (void)memory_system_config::from_env("MEMKIT_", getenv); },
                   "MEMKIT_PRESSURE_MEDIUM");
    // A well-formed but invalid configuration: validate() names the field.
    env = {{"MEMKIT_SMALL_MAX", "64KiB"}};
    expect_invalid([&] { (void)memory_system_config::from_env("MEMKIT_", getenv); },
                   "small_max");
}

TEST(MemorySystem, FromKeyValues) {
    auto c = memory_system_config::from_key_values(
        {{"small_max", "128"}, {"medium_max", "1MiB"}, {"budget", "10M"},
         {"pressure_critical", "0.9"}, {"small_nodes_per_chunk", "64"}});
    EXPECT_EQ(c.small_max, 128u);
    EXPECT_EQ(c.medium_max, 1u << 20);
    EXPECT_EQ(c.budget, 10u << 20);
    EXPECT_DOUBLE_EQ(c.pressure.critical, 0.9);
    EXPECT_EQ(c.small_nodes_per_chunk, 64u);
    expect_invalid([] { (void)memory_system_config::from_key_values({{"smal_max", "1"}}); },
                   "smal_max");
    expect_invalid([] { (void)memory_system_config::from_key_values({{"budget", "-1"}}); },
                   "budget");
    expect_invalid(
        [] {
            (void)memory_system_config::from_key_values(
                {{"small_max", "4096"}, {"medium_max", "4096"}});
        },
        "small_max");
}

TEST(MemorySystem, AlignmentThroughEveryTierAndIntegrity) {
    auto s = memory_system::builder().small(256).medium(16384).build();
    struct block {
        unsigned char* p;
        std::size_t size, align;
        unsigned char fill;
    };
    std::vector<block> blocks;
    unsigned char fill = 1;
    for (std::size_t size : {1u, 8u, 100u, 256u, 257u, 5000u, 16384u, 16385u, 100000u}) {
        for (std::size_t align = 1; align <= 4096; align *= 2) {
            auto* p = static_cast<unsigned char*>(s.allocate(size, align));
            ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u) << size << "/" << align;
            std::memset(p, fill, size);
            blocks.push_back({p, size, align, fill});
            fill = static_cast<unsigned char>(fill % 250 + 1);
        }
    }
    // Non-overlap.
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges;
    for (const block& b : blocks)
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(b.p),
                            reinterpret_cast<std::uintptr_t>(b.p) + b.size);
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
        EXPECT_LE(ranges[i - 1].second, ranges[i].first);
    for (const block& b : blocks) {
        for (std::size_t i = 0; i < b.size; ++i)
            if (b.p[i] != b.fill) {
                ADD_FAILURE() << "corrupted " << b.size << "/" << b.align;
                break;
            }
        s.deallocate(b.p, b.size, b.align);
    }
    const auto st = s.stats();
    EXPECT_EQ(st.small.allocations, 4u * 13u);
    EXPECT_EQ(st.medium.allocations, 3u * 13u);
    EXPECT_EQ(st.large.allocations, 2u * 13u);
    EXPECT_EQ(st.budget_used, 0u);
}

TEST(MemorySystem, PmrVector) {
    memory_system s{memory_system_config{}};
    {
        std::pmr::vector<int> v{s.as_resource()};
        for (int i = 0; i < 100000; ++i) v.push_back(i);
        for (int i = 0; i < 100000; ++i) ASSERT_EQ(v[static_cast<std::size_t>(i)], i);
        EXPECT_GT(s.stats(memory_tier::large).allocations, 0u);
        EXPECT_GT(s.stats(memory_tier::small).allocations, 0u);
        const auto before = s.stats(memory_tier::small).allocations;
        std::pmr::string str{"a string long enough to leave the small buffer", s.as_resource()};
        EXPECT_EQ(str.size(), 46u);
        EXPECT_EQ(s.stats(memory_tier::small).allocations, before + 1);
    }
    EXPECT_EQ(s.budget().used(), 0u);
    void* p = s.as_resource()->allocate(0, 1);
    EXPECT_EQ(s.budget().used(), 1u);
    s.as_resource()->deallocate(p, 0, 1);
    EXPECT_EQ(s.budget().used(), 0u);
    EXPECT_TRUE(s.as_resource()->is_equal(*s.as_resource()));
    memory_system other{memory_system_config{}};
    EXPECT_FALSE(s.as_resource()->is_equal(*other.as_resource()));
}

struct counting_plugin : memkit::memory_plugin {
    std::atomic<std::uint64_t> allocs{0}, frees{0};
    void on_allocation(std::size_t, std::size_t, void*) noexcept override {
        allocs.fetch_add(1, std::memory_order_relaxed);
    }
    void on_deallocation(std::size_t, std::size_t, void*) noexcept override {
        frees.fetch_add(1, std::memory_order_relaxed);
    }
};

TEST(MemorySystemConcurrency, FourThreadStress) {
    auto plugin = std::make_shared<counting_plugin>();
    auto s = memory_system::builder().small(256).medium(8192).budget(std::size_t{1} << 30)
                 .plugin(plugin).build();
    constexpr int threads = 4, ops = 20000;
    std::atomic<bool> bad{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919u + 1u);
            std::uniform_int_distribution<std::size_t> pick(0, 2), small(1, 256),
                medium(257, 8192), large(8193, 40000), align_log(0, 7);
            struct live {
                unsigned char* p;
                std::size_t size, align;
                unsigned char tag;
            };
            std::vector<live> mine;
            for (int i = 0; i < ops; ++i) {
                if (mine.size() < 64 && (mine.empty() || rng() % 2 == 0)) {
                    const std::size_t k = pick(rng);
                    const std::size_t size =
                        k == 0 ? small(rng) : k == 1 ? medium(rng) : large(rng);
                    const std::size_t align = std::size_t{1} << align_log(rng);
                    auto* p = static_cast<unsigned char*>(s.allocate(size, align));
                    const auto tag = static_cast<unsigned char>(t * 50 + i % 50);
                    p[0] = tag;
                    p[size - 1] = tag;
                    mine.push_back({p, size, align, tag});
                } else {
                    const std::size_t j = rng() % mine.size();
                    const live l = mine[j];
                    if (l.p[0] != l.tag || l.p[l.size - 1] != l.tag) bad.store(true);
                    s.deallocate(l.p, l.size, l.align);
                    mine[j] = mine.back();
                    mine.pop_back();
                }
            }
            for (const live& l : mine) s.deallocate(l.p, l.size, l.align);
        });
    }
    for (auto& th : ts) th.join();
    EXPECT_FALSE(bad.load());
    const auto st = s.stats();
    EXPECT_EQ(st.budget_used, 0u);
    const std::uint64_t allocs =
        st.small.allocations + st.medium.allocations + st.large.allocations;
    EXPECT_EQ(allocs, st.small.deallocations + st.medium.deallocations + st.large.deallocations);
    EXPECT_EQ(allocs, plugin->allocs.load());
    EXPECT_EQ(allocs, plugin->frees.load());
    EXPECT_EQ(st.small.bytes_in_use + st.medium.bytes_in_use + st.large.bytes_in_use, 0u);
    EXPECT_GT(st.small.allocations, 0u);
    EXPECT_GT(st.medium.allocations, 0u);
    EXPECT_GT(st.large.allocations, 0u);
}

} // namespace
