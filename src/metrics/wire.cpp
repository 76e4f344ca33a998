#include "stagegate/metrics/wire.hpp"

namespace stagegate::metrics {

using json = nlohmann::json;

namespace {

// [[index, count], ...] for the non-zero entries.
template <class Get>
json sparse(std::size_t size, Get get) {
    json out = json::array();
    for (std::size_t i = 0; i < size; ++i) {
        if (auto n = get(i); n != 0) {
            out.push_back({i, n});
        }
    }
    return out;
}

// Calls put(index, count) for each entry; false when the shape is wrong or an index is out
// of range.
template <class Put>
bool each_sparse(const json& j, std::size_t size, Put put) {
    if (!j.is_array()) {
        return false;
    }
    for (const auto& e : j) {
        if (!e.is_array() || e.size() != 2 || !e[0].is_number_unsigned() ||
            !e[1].is_number_unsigned() || e[0].get<std::uint64_t>() >= size) {
            return false;
        }
    }
    for (const auto& e : j) {
        put(e[0].get<std::size_t>(), e[1].get<std::uint64_t>());
    }
    return true;
}

}  // namespace

json to_wire(const series_counts& c) {
    const auto& p = c.predictions;
    return {
        {"codes", sparse(code_slots, [&](std::size_t i) { return c.codes[i]; })},
        {"failures", sparse(upstream_failure_kinds,
                            [&](std::size_t i) { return c.upstream_failures[i]; })},
        {"cut_short", c.cut_short},
        {"streams", c.streams},
        {"stream_events", c.stream_events},
        {"ttft_sum", c.time_to_first_token.sum_micros()},
        {"ttft", sparse(latency_histogram::bucket_count,
                        [&](std::size_t i) { return c.time_to_first_token.bucket(i); })},
        {"tpot_sum", c.time_per_output_token.sum_micros()},
        {"tpot", sparse(latency_histogram::bucket_count,
                        [&](std::size_t i) { return c.time_per_output_token.bucket(i); })},
        {"input_tokens", c.input_tokens},
        {"output_tokens", sparse(token_sources, [&](std::size_t i) { return c.output_tokens[i]; })},
        {"stream_ends", sparse(stream_outcomes, [&](std::size_t i) { return c.stream_ends[i]; })},
        {"grpc_calls", sparse(grpc_codes, [&](std::size_t i) { return c.grpc_calls[i]; })},
        {"token_rate_sum", c.output_tokens_per_second.sum_micros()},
        {"token_rate", sparse(latency_histogram::bucket_count, [&](std::size_t i) {
             return c.output_tokens_per_second.bucket(i);
         })},
        {"latency_sum", c.latency.sum_micros()},
        {"latency", sparse(latency_histogram::bucket_count,
                           [&](std::size_t i) { return c.latency.bucket(i); })},
        {"unit_requests", sparse(unit_buckets, [&](std::size_t i) { return c.units.requests[i]; })},
        {"unit_server_errors",
         sparse(unit_buckets, [&](std::size_t i) { return c.units.server_errors[i]; })},
        {"unit_client_errors",
         sparse(unit_buckets, [&](std::size_t i) { return c.units.client_errors[i]; })},
        {"success_latency_sum", c.success_latency.sum_micros()},
        {"success_latency", sparse(latency_histogram::bucket_count,
                                   [&](std::size_t i) { return c.success_latency.bucket(i); })},
        {"predictions",
         {{"parsed", p.parsed},
          {"missing", p.missing},
          {"invalid", p.invalid},
          {"unread", p.unread},
          {"labels", p.labels},
          {"values", p.values},
          {"value_sum", p.value_sum},
          {"label_bins", sparse(prediction_bins, [&](std::size_t i) { return p.label_bins[i]; })},
          {"value_bins", sparse(prediction_bins, [&](std::size_t i) { return p.value_bins[i]; })},
          {"compared_labels", p.compared_labels},
          {"agreed_labels", p.agreed_labels},
          {"abs_diff", sparse(diff_histogram::bucket_count,
                              [&](std::size_t i) { return p.abs_diff.bucket(i); })},
          {"rel_diff", sparse(diff_histogram::bucket_count,
                              [&](std::size_t i) { return p.rel_diff.bucket(i); })},
          {"abs_diff_sum", p.abs_diff.sum()},
          {"rel_diff_sum", p.rel_diff.sum()},
          {"mirrors_dropped", p.mirrors_dropped},
          {"feedback", p.feedback},
          {"correct", p.correct},
          {"valued_feedback", p.valued_feedback},
          {"abs_error_sum", p.abs_error_sum}}}};
}

bool add_from_wire(const json& wire, series_counts& into) {
    if (!wire.is_object() || !wire.contains("predictions") || !wire["predictions"].is_object()) {
        return false;
    }
    series_counts c;
    const auto& p = wire["predictions"];
    auto count = [](const json& j, const char* key, std::uint64_t& out) {
        if (!j.contains(key) || !j[key].is_number_unsigned()) {
            return false;
        }
        out = j[key].get<std::uint64_t>();
        return true;
    };
    auto real = [](const json& j, const char* key, double& out) {
        if (!j.contains(key) || !j[key].is_number()) {
            return false;
        }
        out = j[key].get<double>();
        return true;
    };
    std::uint64_t latency_sum = 0;
    bool ok = count(wire, "latency_sum", latency_sum) &&
              each_sparse(wire.value("codes", json()), code_slots,
                          [&](std::size_t i, std::uint64_t n) { c.codes[i] = n; }) &&
              each_sparse(wire.value("failures", json()), upstream_failure_kinds,
                          [&](std::size_t i, std::uint64_t n) { c.upstream_failures[i] = n; }) &&
              each_sparse(wire.value("latency", json()), latency_histogram::bucket_count,
                          [&](std::size_t i, std::uint64_t n) { c.latency.restore(i, n, 0); });
    auto& q = c.predictions;
    ok = ok && count(p, "parsed", q.parsed) && count(p, "missing", q.missing) &&
         count(p, "invalid", q.invalid) && count(p, "unread", q.unread) &&
         count(p, "labels", q.labels) && count(p, "values", q.values) &&
         real(p, "value_sum", q.value_sum) &&
         each_sparse(p.value("label_bins", json()), prediction_bins,
                     [&](std::size_t i, std::uint64_t n) { q.label_bins[i] = n; }) &&
         each_sparse(p.value("value_bins", json()), prediction_bins,
                     [&](std::size_t i, std::uint64_t n) { q.value_bins[i] = n; }) &&
         count(p, "compared_labels", q.compared_labels) &&
         count(p, "agreed_labels", q.agreed_labels) &&
         each_sparse(p.value("abs_diff", json()), diff_histogram::bucket_count,
                     [&](std::size_t i, std::uint64_t n) { q.abs_diff.restore(i, n); }) &&
         each_sparse(p.value("rel_diff", json()), diff_histogram::bucket_count,
                     [&](std::size_t i, std::uint64_t n) { q.rel_diff.restore(i, n); }) &&
         count(p, "mirrors_dropped", q.mirrors_dropped) && count(p, "feedback", q.feedback) &&
         count(p, "correct", q.correct) && count(p, "valued_feedback", q.valued_feedback) &&
         real(p, "abs_error_sum", q.abs_error_sum);
    // Replicas of an older release send no units, success latencies or cut answers: they
    // count as none.
    if (wire.contains("cut_short")) {
        ok = ok && count(wire, "cut_short", c.cut_short);
    }
    if (wire.contains("unit_requests")) {
        ok = ok &&
             each_sparse(wire["unit_requests"], unit_buckets,
                         [&](std::size_t i, std::uint64_t n) { c.units.requests[i] = n; }) &&
             each_sparse(wire.value("unit_server_errors", json()), unit_buckets,
                         [&](std::size_t i, std::uint64_t n) { c.units.server_errors[i] = n; }) &&
             each_sparse(wire.value("unit_client_errors", json()), unit_buckets,
                         [&](std::size_t i, std::uint64_t n) { c.units.client_errors[i] = n; });
    }
    std::uint64_t success_sum = 0;
    if (wire.contains("success_latency")) {
        ok = ok && count(wire, "success_latency_sum", success_sum) &&
             each_sparse(wire["success_latency"], latency_histogram::bucket_count,
                         [&](std::size_t i, std::uint64_t n) {
                             c.success_latency.restore(i, n, 0);
                         });
    }
    // Nor the sums of prediction differences.
    if (p.contains("abs_diff_sum")) {
        double abs_sum = 0;
        double rel_sum = 0;
        ok = ok && real(p, "abs_diff_sum", abs_sum) && real(p, "rel_diff_sum", rel_sum);
        q.abs_diff.restore(0, 0, abs_sum);
        q.rel_diff.restore(0, 0, rel_sum);
    }
    // Nor stream timings.
    std::uint64_t ttft_sum = 0;
    std::uint64_t tpot_sum = 0;
    if (wire.contains("streams")) {
        ok = ok && count(wire, "streams", c.streams) &&
             count(wire, "stream_events", c.stream_events) &&
             count(wire, "ttft_sum", ttft_sum) && count(wire, "tpot_sum", tpot_sum) &&
             each_sparse(wire.value("ttft", json()), latency_histogram::bucket_count,
                         [&](std::size_t i, std::uint64_t n) {
                             c.time_to_first_token.restore(i, n, 0);
                         }) &&
             each_sparse(wire.value("tpot", json()), latency_histogram::bucket_count,
                         [&](std::size_t i, std::uint64_t n) {
                             c.time_per_output_token.restore(i, n, 0);
                         });
    }
    // Nor gRPC codes.
    if (wire.contains("grpc_calls")) {
        ok = ok && each_sparse(wire["grpc_calls"], grpc_codes,
                               [&](std::size_t i, std::uint64_t n) { c.grpc_calls[i] = n; });
    }
    // Nor tokens, stream endings and token rates.
    std::uint64_t token_rate_sum = 0;
    if (wire.contains("input_tokens")) {
        ok = ok && count(wire, "input_tokens", c.input_tokens) &&
             each_sparse(wire.value("output_tokens", json()), token_sources,
                         [&](std::size_t i, std::uint64_t n) { c.output_tokens[i] = n; }) &&
             each_sparse(wire.value("stream_ends", json()), stream_outcomes,
                         [&](std::size_t i, std::uint64_t n) { c.stream_ends[i] = n; }) &&
             count(wire, "token_rate_sum", token_rate_sum) &&
             each_sparse(wire.value("token_rate", json()), latency_histogram::bucket_count,
                         [&](std::size_t i, std::uint64_t n) {
                             c.output_tokens_per_second.restore(i, n, 0);
                         });
    }
    if (!ok) {
        return false;
    }
    c.output_tokens_per_second.restore(0, 0, token_rate_sum);
    c.time_to_first_token.restore(0, 0, ttft_sum);
    c.time_per_output_token.restore(0, 0, tpot_sum);
    c.latency.restore(0, 0, latency_sum);
    c.success_latency.restore(0, 0, success_sum);
    into.merge(c);
    return true;
}

}  // namespace stagegate::metrics
