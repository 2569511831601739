#include "memkit/heap/memory_system.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace memkit {

namespace {

constexpr std::size_t npos_size = std::numeric_limits<std::size_t>::max();

[[noreturn]] void fail(std::string_view where, const std::string& what) {
    std::string msg{where};
    msg += ": ";
    msg += what;
    throw std::invalid_argument(msg);
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

double parse_fraction(std::string_view text, std::string_view where) {
    const std::string s{trim(text)};
    if (s.empty()) fail(where, "empty value (expected a fraction such as 0.8)");
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !(v == v))
        fail(where, "malformed fraction '" + s + "' (expected a number such as 0.8)");
    return v;
}

std::string upper(std::string_view s) {
    std::string r{s};
    for (char& c : r) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return r;
}

// The keys of from_key_values(), in the order from_env() reads them.
constexpr std::string_view known_keys[] = {
    "small_max",          "medium_max",       "small_spacing",   "small_min_class",
    "small_step",         "small_nodes_per_chunk", "medium_region_size", "medium_max_total",
    "budget",             "soft_budget",      "pressure_medium", "pressure_high",
    "pressure_critical"};

std::string num(std::size_t n) { return std::to_string(n); }

} // namespace

std::size_t memory_system_config::parse_size(std::string_view text, std::string_view where) {
    const std::string_view s = trim(text);
    if (s.empty()) fail(where, "empty value (expected a size such as 64KiB)");
    if (s.front() == '-') fail(where, "negative size '" + std::string{s} + "'");
    std::size_t i = 0, value = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        const auto d = static_cast<std::size_t>(s[i] - '0');
        if (value > (npos_size - d) / 10) fail(where, "size '" + std::string{s} + "' overflows");
        value = value * 10 + d;
        ++i;
    }
    if (i == 0)
        fail(where, "malformed size '" + std::string{s} +
                        "' (expected digits with an optional B, K, KiB, M, MiB, G or GiB suffix)");
    const std::string_view suffix = trim(s.substr(i));
    unsigned shift = 0;
    if (suffix.empty() || iequals(suffix, "B")) shift = 0;
    else if (iequals(suffix, "K") || iequals(suffix, "KiB")) shift = 10;
    else if (iequals(suffix, "M") || iequals(suffix, "MiB")) shift = 20;
    else if (iequals(suffix, "G") || iequals(suffix, "GiB")) shift = 30;
    else
        fail(where, "malformed size '" + std::string{s} + "' (unknown suffix '" +
                        std::string{suffix} + "'; expected B, K, KiB, M, MiB, G or GiB)");
    if (shift != 0 && value > (npos_size >> shift))
        fail(where, "size '" + std::string{s} + "' overflows");
    return value << shift;
}

bool memory_system_config::set(std::string_view key, std::string_view value,
                               std::string_view where) {
    if (key == "small_max") small_max = parse_size(value, where);
    else if (key == "medium_max") medium_max = parse_size(value, where);
    else if (key == "small_spacing") {
        const std::string_view v = trim(value);
        if (iequals(v, "power_of_two")) small_spacing = size_class_spacing::power_of_two;
        else if (iequals(v, "linear")) small_spacing = size_class_spacing::linear;
        else
            fail(where,
                 "unknown spacing '" + std::string{v} + "' (expected power_of_two or linear)");
    } else if (key == "small_min_class") small_min_class = parse_size(value, where);
    else if (key == "small_step") small_step = parse_size(value, where);
    else if (key == "small_nodes_per_chunk") small_nodes_per_chunk = parse_size(value, where);
    else if (key == "medium_region_size") medium_region_size = parse_size(value, where);
    else if (key == "medium_max_total") medium_max_total = parse_size(value, where);
    else if (key == "budget") budget = parse_size(value, where);
    else if (key == "soft_budget") soft_budget = parse_size(value, where);
    else if (key == "pressure_medium") pressure.medium = parse_fraction(value, where);
    else if (key == "pressure_high") pressure.high = parse_fraction(value, where);
    else if (key == "pressure_critical") pressure.critical = parse_fraction(value, where);
    else if (key == "name") name = std::string{trim(value)};
    else return false;
    return true;
}

void memory_system_config::validate() const {
    if (small_max == 0) fail("small_max", "must be at least 1");
    if (small_max > max_small_max)
        fail("small_max", num(small_max) + " is above the limit of " + num(max_small_max));
    if (small_max >= medium_max)
        fail("small_max", num(small_max) + " must be below medium_max (" + num(medium_max) + ")");
    if (small_min_class == 0) fail("small_min_class", "must be at least 1");
    if (small_min_class > small_max)
        fail("small_min_class",
             num(small_min_class) + " must not be above small_max (" + num(small_max) + ")");
    if (small_spacing == size_class_spacing::linear) {
        if (small_step == 0) fail("small_step", "must be at least 1");
        // Same class list and limits as pool_collection (256 classes, 65536 routing entries).
        std::size_t classes = 0, granule = npos_size, s = small_min_class;
        for (;; s += small_step) {
            if (++classes > pool_collection::max_classes)
                fail("small_step", "gives more than 256 size classes up to small_max (" +
                                       num(small_max) + ")");
            granule = std::min(granule, s & (~s + 1));
            if (s >= small_max) break;
        }
        if ((s - 1) / granule + 1 > pool_collection::max_table_entries)
            fail("small_step", "classes too fine for small_max (" + num(small_max) +
                                   "): the routing table would exceed 65536 entries");
    }
    if (medium_region_size < 4096)
        fail("medium_region_size", num(medium_region_size) + " is below 4096");
    if (medium_max_total != 0 && medium_max_total < medium_region_size)
        fail("medium_max_total", num(medium_max_total) + " is below medium_region_size (" +
                                     num(medium_region_size) + ")");
    if (budget != 0 && soft_budget > budget)
        fail("soft_budget",
             num(soft_budget) + " is above budget (" + num(budget) + ")");
    if (!(pressure.medium > 0.0 && pressure.medium < pressure.high))
        fail("pressure_medium", "must be above 0 and below pressure_high");
    if (!(pressure.high < pressure.critical))
        fail("pressure_high", "must be below pressure_critical");
    if (!(pressure.critical <= 1.0)) fail("pressure_critical", "must not be above 1");
}

memory_system_config
memory_system_config::from_env(const char* prefix,
                               const std::function<const char*(const char*)>& getenv) {
    const std::string pre = prefix != nullptr ? prefix : "";
    memory_system_config c;
    for (const std::string_view key : known_keys) {
        const std::string var = pre + upper(key);
        const char* v = getenv ? getenv(var.c_str()) : std::getenv(var.c_str());
        if (v != nullptr) c.set(key, v, var);
    }
    c.validate();
    return c;
}

memory_system_config
memory_system_config::from_key_values(const std::map<std::string, std::string>& values) {
    memory_system_config c;
    for (const auto& [key, value] : values)
        if (!c.set(key, value, key)) fail(key, "unknown key");
    c.validate();
    return c;
}

namespace {

pool_collection make_small(const memory_system_config& c) {
    pool_collection_options o;
    o.spacing = c.small_spacing;
    o.min_class = c.small_min_class;
    o.max_class = c.small_max;
    o.step = c.small_step;
    o.pool.nodes_per_chunk = c.small_nodes_per_chunk;
    o.large = large_policy::parent; // alignments no class can give
    return pool_collection{o};
}

tlsf_heap make_medium(const memory_system_config& c) {
    tlsf_options o;
    o.growth = true;
    o.region_size = c.medium_region_size;
    if (c.medium_max_total != 0) o.max_total = c.medium_max_total;
    return tlsf_heap{c.medium_region_size, o};
}

const memory_system_config& validated(const memory_system_config& c) {
    c.validate();
    return c;
}

} // namespace

memory_system::memory_system(const memory_system_config& config,
                             std::vector<std::shared_ptr<memory_plugin>> plugins)
    : config_(validated(config)), small_max_(config.small_max), medium_max_(config.medium_max),
      plugins_(std::move(plugins)), has_plugins_(!plugins_.empty()),
      budget_(std::make_unique<memory_budget>(
          config.budget == 0 ? memory_budget::unlimited : config.budget,
          config.soft_budget == 0 ? memory_budget::unlimited : config.soft_budget, config.name,
          config.pressure)),
      small_(make_small(config)), medium_(make_medium(config)) {
    for (const auto& p : plugins_)
        if (p == nullptr) throw std::invalid_argument("memkit::memory_system: null plugin");
    if (has_plugins_) {
        budget_->on_level_change([this](const budget_level_event& e) {
            for (const auto& p : plugins_) p->on_pressure(e.to);
        });
        for (const auto& p : plugins_) p->on_init(*this);
    }
}

memory_system::~memory_system() {
    // Blocks never deallocated (the small and medium ones die with their tier) would make the
    // budget report a leak of its own; the system owns the budget, so it settles it.
    if (const std::size_t n = budget_->used(); n != 0) budget_->release(n);
}

allocator_stats memory_system::stats(memory_tier t) const noexcept {
    const tier_counters& c = counters_[static_cast<std::size_t>(t)];
    allocator_stats s;
    s.allocations = c.allocations.load(std::memory_order_relaxed);
    s.deallocations = c.deallocations.load(std::memory_order_relaxed);
    s.bytes_in_use = c.bytes.load(std::memory_order_relaxed);
    s.peak_bytes = c.peak.load(std::memory_order_relaxed);
    return s;
}

memory_system_stats memory_system::stats() const noexcept {
    memory_system_stats s;
    s.small = stats(memory_tier::small);
    s.medium = stats(memory_tier::medium);
    s.large = stats(memory_tier::large);
    s.budget_used = budget_->used();
    s.budget_peak = budget_->peak();
    return s;
}

void memory_system::raise_peak(tier_counters& c, std::size_t now) noexcept {
    std::size_t peak = c.peak.load(std::memory_order_relaxed);
    while (now > peak &&
           !c.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
}

void memory_system::bad_request(std::size_t size, std::size_t align) {
    if (size == 0) throw bad_size(name, size, system_allocator::max_size());
    throw invalid_alignment(name, align, max_alignment);
}

void memory_system::tier_failed(memory_tier t, std::size_t size) {
    budget_->release(size);
    std::size_t used = 0;
    if (t == memory_tier::small) used = small_.stats().bytes_in_use;
    else if (t == memory_tier::medium) used = medium_.stats().bytes_in_use;
    throw out_of_memory(t == memory_tier::small    ? "memkit::memory_system (small tier)"
                        : t == memory_tier::medium ? "memkit::memory_system (medium tier)"
                                                   : "memkit::memory_system (large tier)",
                        size, out_of_memory::unknown,
                        t == memory_tier::large ? out_of_memory::unknown : used);
}

void memory_system::notify_allocation(std::size_t size, std::size_t align, void* p) noexcept {
    for (const auto& pl : plugins_) pl->on_allocation(size, align, p);
}

void memory_system::notify_deallocation(std::size_t size, std::size_t align, void* p) noexcept {
    for (const auto& pl : plugins_) pl->on_deallocation(size, align, p);
}

memory_system::builder& memory_system::builder::plugin(std::shared_ptr<memory_plugin> p) {
    if (p == nullptr) throw std::invalid_argument("memkit::memory_system::builder: null plugin");
    plugins_.push_back(std::move(p));
    return *this;
}

} // namespace memkit
