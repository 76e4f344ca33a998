// rollout/gates: judging a candidate against limits and against the stable version.
// Owns: the gate definitions of a rollout stage and their evaluation into pass / fail /
// inconclusive verdicts, each with the numbers behind it and a sentence a person on call can
// read. Pure functions of merged metrics: the controller decides what to do with verdicts.
// Must not touch: clocks, threads, routing, I/O.
#pragma once

#include "stagegate/metrics/series.hpp"
#include "stagegate/rollout/sequential.hpp"

#include <optional>
#include <string>
#include <vector>

namespace stagegate::rollout {

enum class verdict { pass, fail, inconclusive };
const char* verdict_name(verdict v);

struct quantile_limit {
    double quantile = 0.99;  // 0.5, 0.9, 0.99, ...
    double seconds = 0;      // absolute: at most this
};

struct relative_quantile_limit {
    double quantile = 0.99;
    double max_ratio = 1.2;  // candidate quantile <= stable quantile x ratio
};

struct gate_config {
    // Requests each version needs before any gate may pass or fail ("too little data" is
    // inconclusive, never a pass and never a fail).
    std::uint64_t min_requests = 100;

    // Absolute limits on the candidate.
    std::optional<double> max_error_rate;            // 5xx share, 0..1
    std::optional<double> max_upstream_failure_rate;  // connect/timeout/reset/protocol share
    std::vector<quantile_limit> max_latency;

    // Relative to stable over the same stage (measured concurrently).
    std::optional<double> max_error_rate_delta;  // candidate <= stable + delta
    std::optional<double> max_error_rate_ratio;  // candidate <= stable x ratio
    std::vector<relative_quantile_limit> max_latency_ratio;

    // Anytime-valid sequential tests.
    bool sequential_errors = true;
    bool sequential_latency = true;
    double alpha = 0.01;
    // Which code slots (metrics::code_slot) count as errors; empty: every 5xx.
    std::vector<std::size_t> error_slots;

    // Model quality, from the predictions read in answers. Each gate is judged only in stages
    // that yield its numbers: agreement where stable's requests are mirrored, accuracy where
    // the candidate answers clients (labels come back for those).
    std::uint64_t min_samples = 200;          // predictions, comparisons or labels per version
    std::optional<double> min_agreement;      // mirror top-1 agreement floor
    std::optional<double> max_psi;            // drift vs stable: population stability index
    std::optional<double> max_ks;             // drift vs stable: Kolmogorov-Smirnov distance
    std::optional<double> max_accuracy_drop;  // candidate accuracy >= stable's - this
    std::optional<double> max_mae_increase;   // candidate mean absolute error <= stable's + this
    std::optional<double> max_candidate_age_seconds;
    std::optional<double> candidate_age_seconds;  // from trained_at; unknown fails that gate
    bool drift_on_values = true;      // PSI over value bins (else label bins)
    std::size_t value_bins = 20;
    bool candidate_serves_clients = true;  // false in a mirror-only stage
};

// "5xx", "4xx" or a tracked code ("429") -> the code slots it covers.
std::vector<std::size_t> error_slots_for(const std::vector<std::string>& statuses);

// What a gate saw and concluded.
struct gate_result {
    std::string gate;  // "error_rate", "p99_latency", "error_rate_vs_stable", ...
    verdict outcome = verdict::inconclusive;
    double candidate = 0;  // the candidate's number (rate, seconds, ln BF, ...)
    double stable = 0;     // stable's number, or the limit for absolute gates
    double limit = 0;
    std::uint64_t candidate_requests = 0;
    std::uint64_t stable_requests = 0;
    std::string explanation;
};

struct evaluation {
    std::vector<gate_result> gates;
    bool any_fail() const;
    bool all_pass() const;  // and at least one gate
    const gate_result* first_failure() const;
};

// `candidate` and `stable` are the two versions' counts since the stage began; `rho0` is the
// candidate's share of the two versions' traffic in this stage.
// `mirror`, when the stage mirrors stable's requests, holds the candidate's answers to them
// (with the comparisons with stable's answers).
evaluation evaluate(const gate_config& cfg, const metrics::series_counts& candidate,
                    const metrics::series_counts& stable, double rho0,
                    const metrics::series_counts* mirror = nullptr);

}  // namespace stagegate::rollout
