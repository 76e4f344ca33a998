// rollout/gates: judging a candidate against limits and against the stable version.
// Owns: the gate definitions of a rollout and their evaluation into pass / fail /
// inconclusive verdicts, each with the numbers behind it and a sentence a person on call can
// read. Pure functions of merged metrics: the controller decides what to do with verdicts.
//
// Decisions on evidence, both ways. Every operational gate says what "no harm" means (a limit,
// or a tolerance relative to stable) and is judged with anytime-valid confidence bounds
// (rollout/evidence) over all the candidate's traffic since the rollout began, stable's
// figures weighted segment by segment: it fails when the bounds show the candidate beyond
// the limit (at most alpha of healthy candidates, however often it is looked at, split over
// the gates), passes when they show it within (a candidate beyond the limit passes with
// probability at most beta), and is inconclusive otherwise. No gate assumes that the
// candidate's share of requests equals its weight (sticky splits do not give it), and a
// faster or better candidate can only pass. Latency gates judge successful answers only;
// errors are judged as errors.
// Must not touch: clocks, threads, routing, I/O.
#pragma once

#include "stagegate/metrics/series.hpp"

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

// Floors, for quantities where less is worse (a stream's output tokens per second).
struct quantile_floor {
    double quantile = 0.5;
    double minimum = 0;  // absolute: at least this
};

struct relative_quantile_floor {
    double quantile = 0.5;
    double min_ratio = 0.8;  // candidate quantile >= stable quantile x ratio (0 < ratio <= 1)
};

struct relative_quantile_limit {
    double quantile = 0.99;
    double max_ratio = 1.2;  // candidate quantile <= stable quantile x ratio
};

// The additive allowance beside a ratio configured alone (0.1 points): a ratio cannot be
// shown met when neither version has any errors, an allowance can.
inline constexpr double ratio_only_floor = 0.001;

struct gate_config {
    // Requests each version needs before a gate may pass (a gate may fail earlier: its bounds
    // hold at any sample size).
    std::uint64_t min_requests = 100;

    // Absolute limits on the candidate.
    std::optional<double> max_error_rate;            // 5xx share, 0..1
    std::optional<double> max_upstream_failure_rate;  // connect/timeout/reset/protocol share
    std::vector<quantile_limit> max_latency;

    // Tolerances relative to stable: the candidate's error rate may be at most
    // max(stable x ratio, stable + delta) (a delta alone: stable + delta; a ratio alone:
    // with delta ratio_only_floor), its latency quantile at most max(stable x ratio, stable +
    // latency_slack_seconds).
    std::optional<double> max_error_rate_delta;
    std::optional<double> max_error_rate_ratio;
    std::vector<relative_quantile_limit> max_latency_ratio;
    double latency_slack_seconds = 0.001;
    // OpenAI streams, judged like latency over the candidate's streams: the time to first
    // token and the time per output token, absolute and relative to stable.
    std::vector<quantile_limit> max_ttft;
    std::vector<relative_quantile_limit> max_ttft_ratio;
    std::vector<quantile_limit> max_time_per_token;
    std::vector<relative_quantile_limit> max_time_per_token_ratio;
    // The output tokens per second of completed OpenAI streams, a floor: absolute (tokens/s),
    // and relative to stable (a candidate that streams slower, whatever its time to first
    // token). Low quantiles are the slow streams: {"p10": 0.8} asks the candidate's slowest
    // tenth to stream at least 0.8 x stable's.
    std::vector<quantile_floor> min_tokens_per_second;
    std::vector<relative_quantile_floor> min_tokens_per_second_ratio;

    // With no tolerance configured, errors and latency are still compared with stable, with
    // the default tolerances: errors x1.2 or +0.5 points, p50 and p90 x1.2.
    bool sequential_errors = true;
    bool sequential_latency = true;
    // 4xx answers compared with stable too (the same kinds of requests reach both versions),
    // with the error tolerance; counted as errors already when error_statuses include them.
    bool client_errors = true;
    double alpha = 0.01;  // at most this share of healthy candidates rolled back
    double beta = 0.05;   // a candidate beyond a tolerance passes that gate at most this often
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
    double candidate = 0;  // the candidate's estimate (rate, seconds, ...)
    double stable = 0;     // stable's estimate (0 for absolute gates)
    double limit = 0;      // what the candidate may reach: the limit, or stable's allowance
    // The candidate's confidence bounds: the lower one at the rollback level, the upper one at
    // the pass level (an upper bound of +infinity is reported as null: not yet bounded).
    double candidate_low = 0;
    double candidate_high = 0;
    std::uint64_t candidate_requests = 0;
    std::uint64_t stable_requests = 0;
    std::string explanation;
    // Passed, or inconclusive with enough data and not even a hint of harm (the fail test at
    // an even chance): what widening to the next stage asks for while the bounds cannot tell.
    bool on_track = false;
};

struct evaluation {
    std::vector<gate_result> gates;
    bool any_fail() const;
    bool all_pass() const;      // and at least one gate
    bool all_on_track() const;  // every gate on track (so none failed)
    const gate_result* first_failure() const;
};

// What the gates judge: each version's counts per segment of the rollout (a stretch of time at
// one traffic split), oldest first, the current one last. Operational gates judge all of them;
// quality gates the current segment (and `mirror`, the candidate's answers to stable's
// mirrored requests in it, when the stage mirrors).
struct traffic {
    std::vector<metrics::series_counts> candidate;
    std::vector<metrics::series_counts> stable;
    const metrics::series_counts* mirror = nullptr;
};

evaluation evaluate(const gate_config& cfg, const traffic& seen);

}  // namespace stagegate::rollout
