#include "memkit/config/memory_system_file.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "memkit/core/error.hpp"

namespace memkit {

namespace {

std::string format_what(const std::string& source, std::size_t line, std::size_t column,
                        const std::string& key, const std::string& message) {
    std::string w = source;
    if (line != 0) {
        w += ':' + std::to_string(line);
        if (column != 0) w += ':' + std::to_string(column);
    }
    w += ": ";
    if (!key.empty()) w += key + ": ";
    w += message;
    return w;
}

} // namespace

config_error::config_error(std::string source, std::size_t line, std::size_t column,
                           std::string key, std::string message, std::error_code code)
    : std::runtime_error(format_what(source, line, column, key, message)),
      source_(std::move(source)), line_(line), column_(column), key_(std::move(key)),
      message_(std::move(message)), code_(code) {}

namespace {

enum class value_kind : std::uint8_t { size, fraction, spacing, text };

// One field of memory_system_config: where it sits in the grouped layout (`group`.`key`, group
// empty for the main table) and its member name, which is also its flat key, its
// from_key_values() key and (upper-cased) its environment variable.
struct field_info {
    std::string_view group;
    std::string_view key;
    std::string_view member;
    value_kind kind;
};

constexpr std::array<field_info, 14> fields{{
    {"", "name", "name", value_kind::text},
    {"", "budget", "budget", value_kind::size},
    {"", "soft_budget", "soft_budget", value_kind::size},
    {"small", "max", "small_max", value_kind::size},
    {"small", "spacing", "small_spacing", value_kind::spacing},
    {"small", "min_class", "small_min_class", value_kind::size},
    {"small", "step", "small_step", value_kind::size},
    {"small", "nodes_per_chunk", "small_nodes_per_chunk", value_kind::size},
    {"medium", "max", "medium_max", value_kind::size},
    {"medium", "region_size", "medium_region_size", value_kind::size},
    {"medium", "max_total", "medium_max_total", value_kind::size},
    {"pressure", "medium", "pressure_medium", value_kind::fraction},
    {"pressure", "high", "pressure_high", value_kind::fraction},
    {"pressure", "critical", "pressure_critical", value_kind::fraction},
}};

constexpr std::array<std::string_view, 3> groups{"small", "medium", "pressure"};

const field_info* find_field(std::string_view group, std::string_view key) noexcept {
    for (const field_info& f : fields)
        if (f.group == group && f.key == key) return &f;
    if (group.empty()) // the flat spelling, e.g. small_max in the main table
        for (const field_info& f : fields)
            if (f.member == key) return &f;
    return nullptr;
}

const field_info* find_member(std::string_view member) noexcept {
    for (const field_info& f : fields)
        if (f.member == member) return &f;
    return nullptr;
}

std::string known_keys_of(std::string_view group) {
    std::string r;
    for (const field_info& f : fields) {
        if (f.group != group) continue;
        if (!r.empty()) r += ", ";
        r += f.key;
    }
    if (group.empty())
        for (const std::string_view g : groups) r += ", [" + std::string{g} + "]";
    return r;
}

std::string_view type_name(const toml::node& n) noexcept {
    switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
    }
    return "nothing";
}

const std::error_code invalid_config = make_error_code(errc::invalid_argument);

// Where a field got its value, for errors found later (validate()).
struct origin {
    std::string source;
    std::size_t line = 0;
    std::size_t column = 0;
    std::string key;
};

std::string dotted(std::string_view prefix, std::string_view key) {
    if (prefix.empty()) return std::string{key};
    if (key.empty()) return std::string{prefix};
    std::string r{prefix};
    r += '.';
    r += key;
    return r;
}

// The message of an std::invalid_argument from memory_system_config, without the "where: "
// prefix that it starts with (the config_error carries the key itself).
std::string strip_where(const std::invalid_argument& e, std::string_view where) {
    std::string_view m = e.what();
    if (m.size() > where.size() + 2 && m.substr(0, where.size()) == where &&
        m.substr(where.size(), 2) == ": ")
        m.remove_prefix(where.size() + 2);
    return std::string{m};
}

class reader {
public:
    reader(std::string_view source, const config_load_options& options)
        : source_(source), options_(options) {}

    memory_system_config read(std::string_view text) {
        toml::table doc;
        try {
            doc = toml::parse(text, source_);
        } catch (const toml::parse_error& e) {
            throw config_error(source_, e.source().begin.line, e.source().begin.column, {},
                               std::string{e.description()}, invalid_config);
        }
        if (const toml::table* t = find_table(doc)) read_table(*t);
        if (options_.environment_overrides) read_environment();
        validate();
        return config_;
    }

private:
    [[noreturn]] void fail_at(const toml::source_region& where, const std::string& key,
                              const std::string& message) const {
        throw config_error(source_, where.begin.line, where.begin.column, key, message,
                           invalid_config);
    }

    // The configuration table, or null when the document does not have it.
    const toml::table* find_table(const toml::table& doc) {
        const toml::table* t = &doc;
        std::string_view rest = options_.table;
        while (!rest.empty()) {
            const std::size_t dot = rest.find('.');
            const std::string_view part = rest.substr(0, dot);
            rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
            prefix_ = dotted(prefix_, part);
            const toml::node* n = t->get(part);
            if (n == nullptr) return nullptr;
            t = n->as_table();
            if (t == nullptr)
                fail_at(n->source(), prefix_,
                        "expected a table, got " + std::string{type_name(*n)});
        }
        return t;
    }

    // toml++ keeps keys sorted by name; errors are reported in the order of the file.
    static std::vector<std::pair<const toml::key*, const toml::node*>>
    in_file_order(const toml::table& t) {
        std::vector<std::pair<const toml::key*, const toml::node*>> r;
        for (const auto& [k, node] : t) r.emplace_back(&k, &node);
        std::sort(r.begin(), r.end(), [](const auto& a, const auto& b) {
            const toml::source_position& x = a.first->source().begin;
            const toml::source_position& y = b.first->source().begin;
            return std::pair{x.line, x.column} < std::pair{y.line, y.column};
        });
        return r;
    }

    void read_table(const toml::table& main) {
        for (const auto& [kp, np] : in_file_order(main)) {
            const toml::key& k = *kp;
            const toml::node& node = *np;
            const std::string_view name = k.str();
            if (const field_info* f = find_field({}, name)) {
                set(*f, node, k.source(), dotted(prefix_, name));
                continue;
            }
            const std::string key = dotted(prefix_, name);
            bool is_group = false;
            for (const std::string_view g : groups) is_group = is_group || g == name;
            if (!is_group)
                fail_at(k.source(), key,
                        std::string{node.is_table() ? "unknown table" : "unknown key"} +
                            " (expected " + known_keys_of({}) + ")");
            const toml::table* group = node.as_table();
            if (group == nullptr)
                fail_at(k.source(), key, "expected a table, got " + std::string{type_name(node)});
            for (const auto& [gkp, gnp] : in_file_order(*group)) {
                const toml::key& gk = *gkp;
                const toml::node& gnode = *gnp;
                const std::string gkey = dotted(key, gk.str());
                const field_info* f = find_field(name, gk.str());
                if (f == nullptr)
                    fail_at(gk.source(), gkey,
                            std::string{gnode.is_table() ? "unknown table" : "unknown key"} +
                                " (expected " + known_keys_of(name) + ")");
                set(*f, gnode, gk.source(), gkey);
            }
        }
    }

    void set(const field_info& f, const toml::node& n, const toml::source_region& where,
             const std::string& key) {
        const std::string member{f.member};
        origin here{source_, where.begin.line, where.begin.column, key};
        if (const auto it = origins_.find(member); it != origins_.end()) {
            const origin& first = it->second;
            throw config_error(source_, here.line, here.column, here.key,
                               "set twice (also as " + first.key + " at " + source_ + ":" +
                                   std::to_string(first.line) + ":" + std::to_string(first.column) +
                                   ")",
                               invalid_config);
        }
        origins_[member] = std::move(here);
        const auto wrong_type = [&](std::string_view expected) {
            fail_at(where, key,
                    "expected " + std::string{expected} + ", got " + std::string{type_name(n)});
        };
        try {
            switch (f.kind) {
            case value_kind::size:
                if (const auto* i = n.as_integer()) {
                    const std::int64_t v = i->get();
                    if (v < 0)
                        fail_at(where, key,
                                "negative size " + std::to_string(v) + " (sizes are bytes, >= 0)");
                    config_.set(member, std::to_string(v), key);
                } else if (const auto* s = n.as_string()) {
                    config_.set(member, s->get(), key);
                } else {
                    wrong_type("a size (an integer, or a string such as \"64MiB\")");
                }
                break;
            case value_kind::fraction: {
                double v = 0;
                if (const auto* d = n.as_floating_point()) v = d->get();
                else if (const auto* i = n.as_integer()) v = static_cast<double>(i->get());
                else wrong_type("a number such as 0.8");
                set_fraction(f, v);
                break;
            }
            case value_kind::spacing:
            case value_kind::text:
                if (const auto* s = n.as_string()) config_.set(member, s->get(), key);
                else
                    wrong_type(f.kind == value_kind::spacing
                                   ? "a string (\"power_of_two\" or \"linear\")"
                                   : "a string");
                break;
            }
        } catch (const std::invalid_argument& e) {
            fail_at(where, key, strip_where(e, key));
        }
    }

    void set_fraction(const field_info& f, double v) {
        if (f.member == "pressure_medium") config_.pressure.medium = v;
        else if (f.member == "pressure_high") config_.pressure.high = v;
        else config_.pressure.critical = v;
    }

    // The variables of memory_system_config::from_env(): every field but name.
    void read_environment() {
        for (const field_info& f : fields) {
            if (f.member == "name") continue;
            std::string var = options_.env_prefix;
            for (const char c : f.member)
                var += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
            const char* v =
                options_.getenv ? options_.getenv(var.c_str()) : std::getenv(var.c_str());
            if (v == nullptr) continue;
            try {
                config_.set(f.member, v, var);
            } catch (const std::invalid_argument& e) {
                throw config_error("environment", 0, 0, var, strip_where(e, var), invalid_config);
            }
            origins_[std::string{f.member}] = origin{"environment", 0, 0, var};
        }
    }

    // validate() names the offending field first in its message; the error points at what set
    // that field (the file's key or the variable), or at the file when it kept its default.
    void validate() const {
        try {
            config_.validate();
        } catch (const std::invalid_argument& e) {
            const std::string_view m = e.what();
            const std::size_t colon = m.find(": ");
            const std::string member{m.substr(0, colon)};
            std::string message{colon == std::string_view::npos ? m : m.substr(colon + 2)};
            if (const auto it = origins_.find(member); it != origins_.end())
                throw config_error(it->second.source, it->second.line, it->second.column,
                                   it->second.key, message, invalid_config);
            std::string key = member;
            if (const field_info* f = find_member(member); f != nullptr && !f->group.empty())
                key = dotted(dotted(prefix_, f->group), f->key);
            else key = dotted(prefix_, member);
            throw config_error(source_, 0, 0, key, message + " (" + member + " has its default)",
                               invalid_config);
        }
    }

    std::string source_;
    const config_load_options& options_;
    std::string prefix_; // the dotted path of the configuration table
    memory_system_config config_;
    std::map<std::string, origin> origins_; // member -> where it was set
};

[[noreturn]] void io_error(const std::filesystem::path& path, std::string what, int error) {
    const std::error_code ec{error, std::generic_category()};
    throw config_error(path.string(), 0, 0, {}, std::move(what) + ": " + ec.message(), ec);
}

std::string read_file(const std::filesystem::path& path) {
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) io_error(path, "cannot open", ec.value());
    if (!std::filesystem::exists(st)) io_error(path, "cannot open", ENOENT);
    if (std::filesystem::is_directory(st)) io_error(path, "cannot read", EISDIR);
    errno = 0;
    const std::unique_ptr<std::FILE, int (*)(std::FILE*)> f{std::fopen(path.c_str(), "rb"),
                                                            &std::fclose};
    if (f == nullptr) io_error(path, "cannot open", errno != 0 ? errno : EIO);
    std::string text;
    std::array<char, 8192> buf;
    for (;;) {
        const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
        text.append(buf.data(), n);
        if (n < buf.size()) break;
    }
    if (std::ferror(f.get()) != 0) io_error(path, "cannot read", errno != 0 ? errno : EIO);
    return text;
}

// TOML basic string: quotes, backslashes and control characters escaped.
std::string toml_string(std::string_view s) {
    std::string r = "\"";
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            r += '\\';
            r += c;
        } else if (u < 0x20 || u == 0x7f) {
            char esc[8];
            std::snprintf(esc, sizeof esc, "\\u%04x", u);
            r += esc;
        } else {
            r += c;
        }
    }
    return r + '"';
}

std::string size_value(std::size_t n) {
    constexpr std::array<std::pair<unsigned, std::string_view>, 3> units{
        {{30, "GiB"}, {20, "MiB"}, {10, "KiB"}}};
    if (n != 0)
        for (const auto& [shift, unit] : units)
            if (n % (std::size_t{1} << shift) == 0)
                return '"' + std::to_string(n >> shift) + std::string{unit} + '"';
    return std::to_string(n);
}

std::string fraction_value(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    std::string s{buf, r.ptr};
    // TOML floats need a fraction or an exponent ("1" would read back as an integer, which is
    // accepted too, but a float stays a float).
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
}

} // namespace

memory_system_config parse_memory_system_config(std::string_view toml, std::string_view source_name,
                                                const config_load_options& options) {
    return reader{source_name, options}.read(toml);
}

memory_system_config load_memory_system_config(const std::filesystem::path& path,
                                               const config_load_options& options) {
    const std::string text = read_file(path);
    return reader{path.string(), options}.read(text);
}

std::string to_toml(const memory_system_config& c, std::string_view table) {
    const std::string prefix{table};
    const auto header = [&](std::string_view group) {
        const std::string name = dotted(prefix, group);
        return name.empty() ? std::string{} : "[" + name + "]\n";
    };
    std::string r = header({});
    r += "name = " + toml_string(c.name) + "\n";
    r += "budget = " + size_value(c.budget) + "\n";
    r += "soft_budget = " + size_value(c.soft_budget) + "\n";
    r += "\n";
    r += header("small");
    r += "max = " + size_value(c.small_max) + "\n";
    r += std::string{"spacing = "} +
         (c.small_spacing == size_class_spacing::linear ? "\"linear\"" : "\"power_of_two\"") + "\n";
    r += "min_class = " + size_value(c.small_min_class) + "\n";
    r += "step = " + size_value(c.small_step) + "\n";
    r += "nodes_per_chunk = " + std::to_string(c.small_nodes_per_chunk) + "\n\n";
    r += header("medium");
    r += "max = " + size_value(c.medium_max) + "\n";
    r += "region_size = " + size_value(c.medium_region_size) + "\n";
    r += "max_total = " + size_value(c.medium_max_total) + "\n\n";
    r += header("pressure");
    r += "medium = " + fraction_value(c.pressure.medium) + "\n";
    r += "high = " + fraction_value(c.pressure.high) + "\n";
    r += "critical = " + fraction_value(c.pressure.critical) + "\n";
    return r;
}

} // namespace memkit
