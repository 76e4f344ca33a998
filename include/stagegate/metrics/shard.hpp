// metrics/shard: one worker thread's counters, written with plain integers.
// Owns: recording per request (no locks, no atomics: only the owning thread touches a shard),
// and handing the accumulated delta over when the control side collects (Envoy's
// swap-and-merge; the collection request arrives as a task posted to the worker's thread).
#pragma once

#include "stagegate/metrics/series.hpp"

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace stagegate::metrics {

// Requests that never reached a model: their reasons are a fixed set.
enum class unrouted_reason : std::uint8_t {
    bad_request,     // malformed, smuggling-shaped, too large, timed out
    unknown_model,
    no_route,
    overloaded,
};
inline constexpr std::size_t unrouted_reasons = 4;
const char* unrouted_label(std::size_t reason);

// What a worker hands over at collection: only series touched since the last one.
struct shard_delta {
    std::vector<std::pair<std::uint32_t, series_counts>> series;
    std::array<std::uint64_t, unrouted_reasons> unrouted{};
};

class shard {
public:
    // `unit`: the request's unit bucket (series.hpp's unit_counts). `cut_short`: the answer
    // broke off after its head went out (series_counts::cut_short).
    void record(std::uint32_t series, unsigned status, std::uint64_t latency_micros,
                std::uint32_t unit, bool cut_short = false) {
        auto& s = at(series);
        const bool cut = cut_short && status < 500;  // a 5xx is a failure already
        s.units.record(unit, status, cut);
        ++s.codes[code_slot(status)];
        s.cut_short += cut ? 1 : 0;
        s.latency.record(latency_micros);
        if (status < 400 && !cut) {
            s.success_latency.record(latency_micros);
        }
    }
    // One OpenAI stream's timing: its first data event `first_token_micros` after the request
    // was read, `events` data events, the last `span_micros` after the first.
    void record_stream(std::uint32_t series, std::uint64_t first_token_micros,
                       std::uint64_t span_micros, std::uint64_t events) {
        auto& s = at(series);
        ++s.streams;
        s.stream_events += events;
        s.time_to_first_token.record(first_token_micros);
        if (events >= 2) {
            s.time_per_output_token.record(span_micros / (events - 1));
        }
    }
    // An OpenAI answer's tokens: `input` from its usage (0 when it had none), `output` counted
    // as `source` says.
    void record_tokens(std::uint32_t series, std::uint64_t input, std::uint64_t output,
                       token_source source) {
        auto& s = at(series);
        s.input_tokens += input;
        s.output_tokens[static_cast<std::size_t>(source)] += output;
    }
    // One gRPC call's status as its client got it.
    void record_grpc(std::uint32_t series, unsigned code) {
        ++at(series).grpc_calls[code < grpc_codes ? code : 2];  // beyond 16: Unknown
    }
    // How one watched OpenAI stream ended.
    void record_stream_end(std::uint32_t series, stream_outcome outcome) {
        ++at(series).stream_ends[static_cast<std::size_t>(outcome)];
    }
    // A completed stream's output rate: `tokens` output tokens, the last `span_micros` after
    // the first (tokens after the first per second; nothing below two tokens or without a span).
    void record_token_rate(std::uint32_t series, std::uint64_t tokens, std::uint64_t span_micros) {
        if (tokens < 2 || span_micros == 0) {
            return;
        }
        const double per_second = static_cast<double>(tokens - 1) * 1e6 /
                                  static_cast<double>(span_micros);
        at(series).output_tokens_per_second.record(
            static_cast<std::uint64_t>(per_second * token_rate_scale + 0.5));
    }
    void record_failure(std::uint32_t series, upstream_failure kind) {
        ++at(series).upstream_failures[static_cast<std::size_t>(kind)];
    }
    // The series' prediction counts, for the proxy to record what it read in an answer.
    prediction_counts& predictions(std::uint32_t series) { return at(series).predictions; }
    void record_unrouted(unrouted_reason reason) { ++unrouted_[static_cast<std::size_t>(reason)]; }
    // Consecutive 5xx answers of a series on this worker; returns the streak after `failed`.
    std::uint32_t record_streak(std::uint32_t series, bool failed) {
        if (series >= streaks_.size()) {
            streaks_.resize(series + 1, 0);
        }
        return streaks_[series] = failed ? streaks_[series] + 1 : 0;
    }

    // Moves everything recorded since the last call into a delta and starts from zero.
    shard_delta take();

private:
    series_counts& at(std::uint32_t series);

    std::vector<std::unique_ptr<series_counts>> series_;  // by id; null until first use
    std::vector<std::uint32_t> dirty_;                     // ids touched since take()
    std::vector<bool> is_dirty_;
    std::array<std::uint64_t, unrouted_reasons> unrouted_{};
    std::vector<std::uint32_t> streaks_;
};

}  // namespace stagegate::metrics
