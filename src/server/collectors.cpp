#include "stagegate/server/collectors.hpp"

#include "stagegate/server/data_plane.hpp"

#include <algorithm>
#include <array>
#include <map>

namespace stagegate::server {

namespace {

using metrics::label_set;

// Request counts, latency, upstream failures and answers cut short.
void write_traffic_series(metrics::text_writer& out, const metrics::store& store,
                          const std::vector<metrics::series_labels>& labels) {
    auto& requests = out.counter("stagegate_requests_total",
                                 "Requests answered, by model, version, stage and status code "
                                 "(untracked codes by class).");
    auto& duration = out.histogram("stagegate_request_duration_seconds",
                                   "Time from the request being read to the last byte of the "
                                   "answer.");
    auto& upstream_errors = out.counter("stagegate_upstream_errors_total",
                                        "Upstream failures by model, version, stage and kind "
                                        "(a mirror stage's under stage=\"<stage>/mirror\").");
    auto& cut_short = out.counter("stagegate_responses_cut_short_total",
                                  "Answers that failed after their status reached the client: "
                                  "the body broke off (the backend closed, reset or stalled "
                                  "mid-stream), or an OpenAI stream ended without [DONE] or with "
                                  "an error event; each is also in stagegate_requests_total under "
                                  "its code, and a failure for the gates.");
    // Names after OpenTelemetry's GenAI conventions (gen_ai.server.time_to_first_token,
    // gen_ai.server.time_per_output_token), in Prometheus form.
    auto& ttft = out.histogram("stagegate_stream_time_to_first_token_seconds",
                               "OpenAI streams: time from the request being read to the first "
                               "data event reaching the gateway.");
    auto& tpot = out.histogram("stagegate_stream_time_per_output_token_seconds",
                               "OpenAI streams: per stream, the mean time between data events "
                               "after the first (one event taken as one token).");
    auto& streams = out.counter("stagegate_streams_total",
                                "OpenAI streams that sent at least one data event.");
    auto& stream_events = out.counter("stagegate_stream_events_total",
                                      "Data events of OpenAI streams (token deltas, and the "
                                      "usage or finish events some servers add).");
    // OpenTelemetry GenAI's token usage (gen_ai.client.token.usage, gen_ai.token.type) as a
    // counter: rate() of it is the tokens per second a version serves (and what it costs),
    // summed exactly over workers and replicas, where a histogram per answer would add a dozen
    // series per label set for a distribution nobody gates on.
    auto& tokens = out.counter("stagegate_gen_ai_tokens_total",
                               "OpenAI answers' tokens by type (input, output) and where the "
                               "count came from: source=usage, the backend's usage object "
                               "(non-streamed answers, streams with stream_options.include_usage"
                               "); source=counted, a stream's data events carrying a non-empty "
                               "content delta, one token each.");
    auto& token_rate = out.histogram("stagegate_stream_output_tokens_per_second",
                                     "OpenAI streams that completed with at least two output "
                                     "tokens: per stream, its output tokens after the first over "
                                     "the time from its first data event to its last.");
    auto& stream_ends = out.counter("stagegate_stream_outcomes_total",
                                    "OpenAI streams (2xx event streams) by how they ended: "
                                    "completed, cut_by_upstream (the backend closed, reset or "
                                    "ended the body before [DONE] or response.completed), "
                                    "cut_by_idle_timeout (stream_idle_ms), cut_by_total_timeout "
                                    "(total_ms), client_gone, error_event. All but completed and "
                                    "client_gone are in stagegate_responses_cut_short_total.");
    auto& grpc_calls = out.counter("stagegate_grpc_calls_total",
                                   "gRPC calls by the status their client got (grpc_code as "
                                   "grpc-go names it: OK, Unavailable, ...): the backend's "
                                   "grpc-status, or the code of the gateway's own answer.");
    for (std::uint32_t id = 0; id < labels.size(); ++id) {
        const auto* t = store.total(id);
        if (!t) {
            continue;
        }
        const auto& l = labels[id];
        const label_set series = {{"model", l.model}, {"version", l.version}, {"stage", l.stage}};
        for (std::size_t c = 0; c < metrics::code_slots; ++c) {
            if (t->codes[c] == 0) {
                continue;
            }
            auto with_code = series;
            with_code.emplace_back("code", metrics::code_label(c));
            requests.add(std::move(with_code), static_cast<double>(t->codes[c]));
        }
        if (t->cut_short > 0) {
            cut_short.add(series, static_cast<double>(t->cut_short));
        }
        for (std::size_t code = 0; code < metrics::grpc_codes; ++code) {
            if (t->grpc_calls[code] > 0) {
                auto with_code = series;
                with_code.emplace_back("grpc_code", metrics::grpc_code_label(code));
                grpc_calls.add(std::move(with_code), static_cast<double>(t->grpc_calls[code]));
            }
        }
        duration.add(series, t->latency, metrics::duration_buckets);
        if (t->streams > 0) {
            ttft.add(series, t->time_to_first_token, metrics::duration_buckets);
            tpot.add(series, t->time_per_output_token, metrics::duration_buckets);
            streams.add(series, static_cast<double>(t->streams));
            stream_events.add(series, static_cast<double>(t->stream_events));
        }
        const auto with = [&](std::initializer_list<std::pair<std::string, std::string>> more) {
            auto labelled = series;
            labelled.insert(labelled.end(), more.begin(), more.end());
            return labelled;
        };
        if (t->input_tokens > 0) {
            tokens.add(with({{"type", "input"}, {"source", "usage"}}),
                       static_cast<double>(t->input_tokens));
        }
        for (std::size_t k = 0; k < metrics::token_sources; ++k) {
            if (t->output_tokens[k] > 0) {
                tokens.add(with({{"type", "output"}, {"source", metrics::token_source_label(k)}}),
                           static_cast<double>(t->output_tokens[k]));
            }
        }
        if (t->output_tokens_per_second.count() > 0) {
            token_rate.add(series, t->output_tokens_per_second, metrics::token_rate_buckets,
                           metrics::token_rate_scale);
        }
        // Every outcome once the series has had a stream, so that rate() of a cut kind starts
        // from 0 rather than from its first occurrence.
        const bool had_streams = std::any_of(t->stream_ends.begin(), t->stream_ends.end(),
                                             [](std::uint64_t n) { return n > 0; });
        for (std::size_t k = 0; k < metrics::stream_outcomes; ++k) {
            if (had_streams) {
                stream_ends.add(with({{"outcome", metrics::stream_outcome_label(k)}}),
                                static_cast<double>(t->stream_ends[k]));
            }
        }
        // Every kind of every series, so that rate() of a kind starts from 0 rather than from
        // its first occurrence.
        for (std::size_t k = 0; k < metrics::upstream_failure_kinds; ++k) {
            upstream_errors.add(with({{"kind", metrics::failure_label(k)}}),
                                static_cast<double>(t->upstream_failures[k]));
        }
    }
}

// Predictions read from answers (all-time counters) and what the current stage shows of them
// (gauges over the counts since the stage began).
void write_prediction_series(metrics::text_writer& out, const metrics::store& store,
                             const std::vector<metrics::series_labels>& labels) {
    auto& outcomes = out.counter("stagegate_predictions_total",
                                 "Answers whose prediction was read (parsed), JSON without one "
                                 "(missing), not JSON (invalid), or not read (unread: not 2xx, "
                                 "compressed or over max_body_bytes).");
    auto& dropped = out.counter("stagegate_mirror_dropped_total",
                                "Mirrored requests dropped because the worker's mirror queue was "
                                "full.");
    auto& joined = out.counter("stagegate_feedback_labels_total",
                               "Feedback labels joined to this series' answers.");
    auto& correct = out.counter("stagegate_feedback_correct_total",
                                "Joined labels equal to the predicted label.");
    auto& agreement = out.gauge("stagegate_prediction_agreement_ratio",
                                "Top-1 agreement of mirrored answers with stable's, since the "
                                "stage began.");
    // A summary: quantiles of one observation per mirrored answer, with their count and sum.
    auto& diff = out.summary("stagegate_prediction_diff",
                             "Quantiles of |candidate - stable| (kind=abs) and of that relative "
                             "to stable (kind=rel) over mirrored answers, since the stage began.");
    auto& accuracy = out.gauge("stagegate_accuracy_ratio",
                               "Share of joined labels equal to the predicted label, since the "
                               "stage began.");
    auto& mae = out.gauge("stagegate_mean_absolute_error",
                          "Mean |label - predicted value| of joined numeric labels, since the "
                          "stage began.");
    for (std::uint32_t id = 0; id < labels.size(); ++id) {
        const auto* t = store.total(id);
        const auto* s = store.stage(id);
        if (!t || !s) {
            continue;
        }
        const auto& l = labels[id];
        const label_set series = {{"model", l.model}, {"version", l.version}, {"stage", l.stage}};
        auto with = [&](label_set extra) {
            auto all = series;
            all.insert(all.end(), extra.begin(), extra.end());
            return all;
        };
        const auto& p = t->predictions;
        if (p.parsed + p.missing + p.invalid + p.unread > 0) {
            for (auto [name, value] : {std::pair{"parsed", p.parsed}, {"missing", p.missing},
                                       {"invalid", p.invalid}, {"unread", p.unread}}) {
                outcomes.add(with({{"outcome", name}}), static_cast<double>(value));
            }
        }
        if (p.mirrors_dropped > 0) {
            dropped.add(series, static_cast<double>(p.mirrors_dropped));
        }
        if (p.feedback + p.valued_feedback > 0) {
            joined.add(series, static_cast<double>(p.feedback + p.valued_feedback));
            correct.add(series, static_cast<double>(p.correct));
        }
        const auto& q = s->predictions;
        if (q.compared_labels > 0) {
            agreement.add(series, static_cast<double>(q.agreed_labels) /
                                      static_cast<double>(q.compared_labels));
        }
        if (q.abs_diff.count() > 0) {
            for (auto [kind, h] : {std::pair{"abs", &q.abs_diff}, {"rel", &q.rel_diff}}) {
                metrics::summary_value v{h->count(), h->sum(), {}};
                for (double quantile : {0.5, 0.9, 0.99}) {
                    v.quantiles.emplace_back(quantile, h->quantile(quantile));
                }
                diff.add(with({{"kind", kind}}), std::move(v));
            }
        }
        if (q.feedback > 0) {
            accuracy.add(series,
                         static_cast<double>(q.correct) / static_cast<double>(q.feedback));
        }
        if (q.valued_feedback > 0) {
            mae.add(series, q.abs_error_sum / static_cast<double>(q.valued_feedback));
        }
    }
}

}  // namespace

metrics::collector series_collector(const data_plane& data) {
    return [&data](metrics::text_writer& out) {
        const auto labels = data.series().labels();
        write_traffic_series(out, data.store(), labels);
        write_prediction_series(out, data.store(), labels);
    };
}

metrics::collector traffic_collector(const data_plane& data) {
    return [&data](metrics::text_writer& out) {
        auto& connections = out.gauge("stagegate_upstream_connections",
                                      "Upstream connections by model, version and state.");
        auto& weights = out.gauge("stagegate_traffic_weight_ratio",
                                  "Share of the model's traffic routed to each version (0..1).");
        auto snap = data.routes();
        if (!snap) {
            return;
        }
        // Connection gauges are per endpoint id: attribute them to every version using it.
        std::map<std::uint32_t, std::pair<double, double>> by_endpoint;
        for (const auto& g : data.connection_gauges()) {
            by_endpoint[g.endpoint].first += g.active;
            by_endpoint[g.endpoint].second += g.idle;
        }
        for (const auto& m : snap->models) {
            for (std::size_t v = 0; v < m.versions.size(); ++v) {
                const auto& ver = m.versions[v];
                weights.add({{"model", m.name}, {"version", ver.name}},
                            static_cast<double>(m.weights[v]) / routing::total_weight);
                double active = 0;
                double idle = 0;
                for (const auto& ep : ver.endpoints) {
                    if (auto it = by_endpoint.find(ep.id); it != by_endpoint.end()) {
                        active += it->second.first;
                        idle += it->second.second;
                    }
                }
                connections.add({{"model", m.name}, {"version", ver.name}, {"state", "active"}},
                                active);
                connections.add({{"model", m.name}, {"version", ver.name}, {"state", "idle"}},
                                idle);
            }
        }
    };
}

metrics::collector downstream_collector(const data_plane& data) {
    return [&data](metrics::text_writer& out) {
        auto& unrouted = out.counter("stagegate_unrouted_requests_total",
                                     "Requests answered before reaching a model, by reason.");
        for (std::size_t r = 0; r < metrics::unrouted_reasons; ++r) {
            unrouted.add({{"reason", metrics::unrouted_label(r)}},
                         static_cast<double>(data.store().unrouted()[r]));
        }
        const auto t = data.totals();
        out.single("stagegate_downstream_connections", "Open client connections.",
                   metrics::metric_type::gauge, static_cast<double>(t.connections_active));
        out.single("stagegate_downstream_connections_accepted_total",
                   "Client connections accepted.", metrics::metric_type::counter,
                   static_cast<double>(t.connections_accepted));
        out.single("stagegate_downstream_connections_shed_total",
                   "Client connections refused with 503 at the connection limit.",
                   metrics::metric_type::counter, static_cast<double>(t.connections_shed));
    };
}

}  // namespace stagegate::server
