// metrics/series: what is counted per (model, version, stage), and the names behind ids.
// Owns: series_counts (status codes, upstream failures, latency, predictions), the bounded status-code and
// failure-kind label sets, and series_registry (label triple <-> small integer id).
// Labels come only from the config and the controller, never from client input, so the
// number of series is bounded by models x versions x stages.
// Must not touch: sockets, threads (the registry's mutex is control-side only).
#pragma once

#include "stagegate/metrics/histogram.hpp"
#include "stagegate/metrics/quality.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace stagegate::metrics {

// Status codes that get their own label; every other code is counted by class ("4xx").
inline constexpr std::array<unsigned, 8> tracked_codes = {200, 400, 404, 429, 500, 502, 503, 504};
inline constexpr std::size_t code_slots = tracked_codes.size() + 5;  // + 1xx..5xx

inline std::size_t code_slot(unsigned status) {
    for (std::size_t i = 0; i < tracked_codes.size(); ++i) {
        if (tracked_codes[i] == status) {
            return i;
        }
    }
    unsigned cls = status / 100;
    return tracked_codes.size() + (cls >= 1 && cls <= 5 ? cls - 1 : 4);
}
std::string code_label(std::size_t slot);  // "200", ..., "1xx", ..., "5xx"

enum class upstream_failure : std::uint8_t { connect, timeout, reset, protocol };
inline constexpr std::size_t upstream_failure_kinds = 4;
const char* failure_label(std::size_t kind);

// Where an OpenAI answer's output token count came from: the `usage` object the backend sent,
// or (a stream without one) its data events that carried a non-empty content delta.
enum class token_source : std::uint8_t { usage, counted };
inline constexpr std::size_t token_sources = 2;
const char* token_source_label(std::size_t source);

// How a watched OpenAI stream (a 2xx event stream) ended. Every one but `completed` and
// `client_gone` is a failure of the version (counted in cut_short): the backend closed or
// reset the connection or ended the body before the API's end event, the gateway cut a stream
// that stalled past stream_idle_ms or ran past total_ms, or the backend sent an error event.
// `client_gone`: the client left first; the backend is not to blame.
enum class stream_outcome : std::uint8_t {
    completed,
    cut_by_upstream,
    cut_by_idle_timeout,
    cut_by_total_timeout,
    client_gone,
    error_event,
};
inline constexpr std::size_t stream_outcomes = 6;
const char* stream_outcome_label(std::size_t outcome);

// gRPC status codes 0..16 (OK .. UNAUTHENTICATED), named as grpc-go names them (the labels
// go-grpc-prometheus' grpc_code uses): "OK", "Canceled", ..., "Unavailable".
inline constexpr std::size_t grpc_codes = 17;
const char* grpc_code_label(std::size_t code);

// Output tokens per second are kept in a latency_histogram in thousandths of a token per
// second (its log-linear buckets, 1.6 % relative error, serve any positive quantity): from
// 0.032 tokens/s up to 134,000 tokens/s.
inline constexpr double token_rate_scale = 1000.0;

// Requests and failures per unit bucket: the low bits of the sticky key's hash (a random draw
// for requests without one). One user's requests all land in one bucket, so the spread of the
// buckets' rates beyond what independent requests would give shows how correlated a
// version's requests are (heavy users, tenants with flaky inputs), and the gates widen their
// bounds by it. 256 buckets, so that the gates can judge a version per unit (rollout/evidence
// weigh_units) over a few hundred units rather than 32: a heavy user's bucket is then mostly
// theirs alone, and with 32 a sticky A/A rollout could rarely be shown within a x1.5
// tolerance (docs/rollout-simulation.md). 6 KiB a series.
inline constexpr std::size_t unit_buckets = 256;
struct unit_counts {
    std::array<std::uint64_t, unit_buckets> requests{};
    std::array<std::uint64_t, unit_buckets> server_errors{};  // 5xx
    std::array<std::uint64_t, unit_buckets> client_errors{};  // 4xx
    // `failed`: an answer that broke off after its head (see series_counts::cut_short).
    void record(std::uint32_t unit, unsigned status, bool failed = false) {
        unit &= unit_buckets - 1;
        ++requests[unit];
        server_errors[unit] += status >= 500 || failed ? 1 : 0;
        client_errors[unit] += status >= 400 && status < 500 ? 1 : 0;
    }
};

struct series_counts {
    std::array<std::uint64_t, code_slots> codes{};
    std::array<std::uint64_t, upstream_failure_kinds> upstream_failures{};
    latency_histogram latency;  // every answered request, gateway in to last byte out
    // Answers below 400 only: what latency gates judge, so that fast failures (a stable that
    // answers 503 at once) or fast 400s never make a version look faster.
    latency_histogram success_latency;
    unit_counts units;
    prediction_counts predictions;
    // Answers below 500 whose body broke off after the head reached the client (the backend
    // closed, reset or stalled mid-stream): counted under their status code, and as failures.
    std::uint64_t cut_short = 0;
    // OpenAI streams (2xx event streams of requests routed by their body's model): per stream,
    // the time from the request being read to its first data event, and the mean time between
    // its later events (OpenTelemetry GenAI's time per output token, one data event taken as
    // one token: vLLM, TGI and SGLang send a delta per token; the usage and finish events make
    // it an estimate), and how many streams and data events there were.
    latency_histogram time_to_first_token;
    latency_histogram time_per_output_token;
    std::uint64_t streams = 0;
    std::uint64_t stream_events = 0;
    // OpenAI answers' tokens (OpenTelemetry GenAI's gen_ai.token.type input and output): input
    // tokens from `usage` only, output tokens by where their count came from.
    std::uint64_t input_tokens = 0;
    std::array<std::uint64_t, token_sources> output_tokens{};
    // Watched streams by how they ended (every one, with or without data events).
    std::array<std::uint64_t, stream_outcomes> stream_ends{};
    // gRPC calls by the status their client got: the backend's grpc-status, or the code of the
    // gateway's own answer (a status above 16 counts as Unknown).
    std::array<std::uint64_t, grpc_codes> grpc_calls{};
    // Per completed stream with at least two output tokens: its output tokens after the first
    // over the time from its first data event to its last, in token_rate_scale units.
    latency_histogram output_tokens_per_second;

    std::uint64_t requests() const;
    // 5xx answers (including the gateway's own 502/503/504) and answers cut short. 4xx are the
    // client's doing.
    std::uint64_t server_errors() const;
    void merge(const series_counts& other);
    void clear();
};

struct series_labels {
    std::string model;
    std::string version;
    std::string stage;
};

// Hands out dense ids for label triples; the same triple keeps its id for the process's life.
class series_registry {
public:
    std::uint32_t id_for(std::string_view model, std::string_view version, std::string_view stage);
    std::vector<series_labels> labels() const;  // indexed by id
    std::size_t size() const;

private:
    mutable std::mutex mutex_;
    std::map<std::tuple<std::string, std::string, std::string>, std::uint32_t> ids_;
    std::vector<series_labels> labels_;
};

}  // namespace stagegate::metrics
