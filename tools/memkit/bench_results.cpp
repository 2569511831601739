#include "bench_results.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>

#include <fmt/format.h>

namespace memkit::cli {

bool run_collector::ReportContext(const Context& /*context*/) { return true; }

subject_result& run_collector::entry_for(const std::string& name) {
    const auto split = bench::split_name(name);
    const std::string case_name = split ? split->case_name : name;
    const std::string subject = split ? split->subject : std::string{};
    for (subject_result& r : results_)
        if (r.case_name == case_name && r.subject == subject) return r;
    const bench::case_spec* spec = bench::find_case(name);
    results_.push_back({case_name, subject, spec ? spec->who : bench::role::peer, {}, {}});
    return results_.back();
}

void run_collector::ReportRuns(const std::vector<Run>& runs) {
    subject_result* last = nullptr;
    for (const Run& run : runs) {
        // Aggregates (mean, median, stddev) are recomputed from the repetitions themselves, so
        // that a single repetition and many are handled alike.
        if (run.run_type != Run::RT_Iteration) continue;
        const std::string& name = run.run_name.function_name;
        subject_result& r = entry_for(name);
        last = &r;
        if (run.error_occurred) {
            r.error = run.error_message.empty() ? "failed" : run.error_message;
            continue;
        }
        const bench::case_spec* spec = bench::find_case(name);
        const double ops = spec ? static_cast<double>(spec->ops_per_iteration) : 1.0;
        const double ns_per_iteration =
            run.GetAdjustedCPUTime() * 1e9 / benchmark::GetTimeUnitMultiplier(run.time_unit);
        r.ns_per_op.push_back(ns_per_iteration / ops);
    }
    if (last == nullptr || progress_ == nullptr) return;
    ++reported_;
    const int width = static_cast<int>(std::to_string(expected_).size());
    const std::string pass =
        passes_ > 1 ? fmt::format("[pass {}/{}] ", pass_, passes_) : std::string{};
    if (!last->error.empty()) {
        fmt::print(progress_, "{}[{:>{}}/{}] {} | {}: error: {}\n", pass, reported_, width,
                   expected_, last->case_name, last->subject, last->error);
    } else {
        fmt::print(progress_, "{}[{:>{}}/{}] {} | {}: {:.2f} ns/op\n", pass, reported_, width,
                   expected_, last->case_name, last->subject, last->ns_per_op.back());
    }
    std::fflush(progress_);
}

double median(std::vector<double> values) {
    if (values.empty()) return std::nan("");
    const auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
    std::nth_element(values.begin(), mid, values.end());
    if (values.size() % 2 == 1) return *mid;
    const double upper = *mid;
    const double lower = *std::max_element(values.begin(), mid);
    return (lower + upper) / 2;
}

std::vector<result_row> pair_results(const std::vector<subject_result>& results) {
    std::vector<result_row> rows;
    std::vector<std::string> cases;
    for (const subject_result& r : results)
        if (std::find(cases.begin(), cases.end(), r.case_name) == cases.end())
            cases.push_back(r.case_name);

    for (const std::string& c : cases) {
        const auto is_subject = [&](const subject_result& r) {
            return r.case_name == c && r.who == bench::role::memkit && r.error.empty() &&
                   !r.ns_per_op.empty();
        };
        const auto subject = std::find_if(results.begin(), results.end(), is_subject);
        if (subject == results.end()) continue;
        const double subject_ns = median(subject->ns_per_op);
        for (const subject_result& peer : results) {
            if (peer.case_name != c || &peer == &*subject || !peer.error.empty() ||
                peer.ns_per_op.empty())
                continue;
            const double peer_ns = median(peer.ns_per_op);
            rows.push_back({c, subject->subject, subject_ns, peer.subject, peer_ns,
                            subject_ns > 0 ? peer_ns / subject_ns : std::nan("")});
        }
    }
    return rows;
}

std::string format_table(const std::vector<result_row>& rows) {
    const std::string h_case = "case", h_mk = "memkit ns/op", h_peer = "peer",
                      h_peer_ns = "peer ns/op", h_ratio = "ratio";
    std::size_t w_case = h_case.size(), w_peer = h_peer.size();
    for (const result_row& r : rows) {
        w_case = std::max(w_case, r.case_name.size());
        w_peer = std::max(w_peer, r.peer.size());
    }
    const std::size_t w_mk = h_mk.size(), w_peer_ns = h_peer_ns.size(), w_ratio = 6;

    std::string out;
    auto it = std::back_inserter(out);
    fmt::format_to(it, "{:<{}} | {:>{}} | {:<{}} | {:>{}} | {:>{}}\n", h_case, w_case, h_mk, w_mk,
                   h_peer, w_peer, h_peer_ns, w_peer_ns, h_ratio, w_ratio);
    fmt::format_to(it, "{:-<{}}-+-{:-<{}}-+-{:-<{}}-+-{:-<{}}-+-{:-<{}}\n", "", w_case, "", w_mk,
                   "", w_peer, "", w_peer_ns, "", w_ratio);
    for (const result_row& r : rows) {
        fmt::format_to(it, "{:<{}} | {:>{}.2f} | {:<{}} | {:>{}.2f} | {:>{}.2f}\n", r.case_name,
                       w_case, r.subject_ns, w_mk, r.peer, w_peer, r.peer_ns, w_peer_ns, r.ratio,
                       w_ratio);
    }
    return out;
}

nlohmann::ordered_json to_json(const std::vector<result_row>& rows) {
    // Three decimals are well below run-to-run noise and keep the file readable.
    const auto round3 = [](double v) { return std::round(v * 1000.0) / 1000.0; };
    nlohmann::ordered_json results = nlohmann::ordered_json::array();
    for (const result_row& r : rows) {
        results.push_back({{"case", r.case_name},
                           {"subject", r.subject},
                           {"subject_ns", round3(r.subject_ns)},
                           {"peer", r.peer},
                           {"peer_ns", round3(r.peer_ns)},
                           {"ratio", round3(r.ratio)}});
    }
    return nlohmann::ordered_json{{"results", std::move(results)}};
}

} // namespace memkit::cli
