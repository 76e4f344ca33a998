#include "stagegate/metrics/exposition.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

namespace stagegate::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

ClientMetric with_labels(std::initializer_list<std::pair<const char*, std::string>> labels) {
    ClientMetric m;
    for (const auto& [name, value] : labels) {
        m.label.push_back({name, value});
    }
    return m;
}

MetricFamily family(const char* name, const char* help, MetricType type) {
    MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    return f;
}

// A family with one unlabelled sample.
void add_single(std::vector<MetricFamily>& out, const char* name, const char* help,
                MetricType type, double value) {
    auto fam = family(name, help, type);
    ClientMetric m;
    if (type == MetricType::Counter) {
        m.counter.value = value;
    } else {
        m.gauge.value = value;
    }
    fam.metric.push_back(m);
    out.push_back(std::move(fam));
}

void add_process_metrics(std::vector<MetricFamily>& out) {
    // /proc/self/stat: utime(14) stime(15) starttime(22) vsize(23) rss(24), in ticks and pages.
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');
    if (close == std::string::npos) {
        return;
    }
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f;
    for (std::string x; fields >> x;) {
        f.push_back(x);
    }
    if (f.size() < 22) {
        return;
    }
    // f[0] is field 3 (state): field n is f[n - 3].
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
    double boot_time = 0;
    std::ifstream proc_stat("/proc/stat");
    for (std::string line; std::getline(proc_stat, line);) {
        if (line.rfind("btime ", 0) == 0) {
            boot_time = std::stod(line.substr(6));
        }
    }
    const double start = boot_time + std::stod(f[19]) / ticks;
    auto gauge = [&](const char* name, const char* help, MetricType type, double v) {
        add_single(out, name, help, type, v);
    };
    gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
          MetricType::Counter, cpu);
    gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          MetricType::Gauge, start);
    gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
          std::stod(f[20]));
    gauge("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
          std::stod(f[21]) * page);
    double fds = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d)) {
            ++fds;
        }
        ::closedir(d);
        fds -= 3;  // ".", ".." and the directory's own descriptor
    }
    gauge("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, fds);
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        gauge("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
              static_cast<double>(lim.rlim_cur));
    }
}

// Predictions read from answers (all-time counters) and what the current stage shows of them
// (gauges over the counts since the stage began).
void add_prediction_metrics(std::vector<MetricFamily>& out, const exposition_input& in) {
    auto outcomes = family("stagegate_predictions_total",
                           "Answers whose prediction was read (parsed), JSON without one "
                           "(missing), not JSON (invalid), or not read (unread: not 2xx, "
                           "compressed or over max_body_bytes).",
                           MetricType::Counter);
    auto dropped = family("stagegate_mirror_dropped_total",
                          "Mirrored requests dropped because the worker's mirror queue was full.",
                          MetricType::Counter);
    auto labels = family("stagegate_feedback_labels_total",
                         "Feedback labels joined to this series' answers.", MetricType::Counter);
    auto correct = family("stagegate_feedback_correct_total",
                          "Joined labels equal to the predicted label.", MetricType::Counter);
    auto agreement = family("stagegate_prediction_agreement_ratio",
                            "Top-1 agreement of mirrored answers with stable's, since the "
                            "stage began.",
                            MetricType::Gauge);
    auto diff = family("stagegate_prediction_diff",
                       "Quantiles of |candidate - stable| (kind=abs) and of that relative to "
                       "stable (kind=rel) over mirrored answers, since the stage began.",
                       MetricType::Gauge);
    auto accuracy = family("stagegate_accuracy_ratio",
                           "Share of joined labels equal to the predicted label, since the stage "
                           "began.",
                           MetricType::Gauge);
    auto mae = family("stagegate_mean_absolute_error",
                      "Mean |label - predicted value| of joined numeric labels, since the stage "
                      "began.",
                      MetricType::Gauge);
    for (std::uint32_t id = 0; id < in.labels.size() && in.metrics; ++id) {
        const auto* t = in.metrics->total(id);
        const auto* s = in.metrics->stage(id);
        if (!t || !s) {
            continue;
        }
        const auto& l = in.labels[id];
        auto labelled = [&](std::initializer_list<std::pair<const char*, std::string>> extra) {
            auto m = with_labels({{"model", l.model}, {"version", l.version}, {"stage", l.stage}});
            for (const auto& [name, value] : extra) {
                m.label.push_back({name, value});
            }
            return m;
        };
        const auto& p = t->predictions;
        if (p.parsed + p.missing + p.invalid + p.unread > 0) {
            for (auto [name, value] : {std::pair{"parsed", p.parsed}, {"missing", p.missing},
                                       {"invalid", p.invalid}, {"unread", p.unread}}) {
                auto m = labelled({{"outcome", name}});
                m.counter.value = static_cast<double>(value);
                outcomes.metric.push_back(std::move(m));
            }
        }
        if (p.mirrors_dropped > 0) {
            auto m = labelled({});
            m.counter.value = static_cast<double>(p.mirrors_dropped);
            dropped.metric.push_back(std::move(m));
        }
        if (p.feedback + p.valued_feedback > 0) {
            auto m = labelled({});
            m.counter.value = static_cast<double>(p.feedback + p.valued_feedback);
            labels.metric.push_back(m);
            m.counter.value = static_cast<double>(p.correct);
            correct.metric.push_back(std::move(m));
        }
        const auto& q = s->predictions;
        if (q.compared_labels > 0) {
            auto m = labelled({});
            m.gauge.value =
                static_cast<double>(q.agreed_labels) / static_cast<double>(q.compared_labels);
            agreement.metric.push_back(std::move(m));
        }
        if (q.abs_diff.count() > 0) {
            for (double quantile : {0.5, 0.9, 0.99}) {
                for (auto [kind, h] : {std::pair{"abs", &q.abs_diff}, {"rel", &q.rel_diff}}) {
                    auto m = labelled({{"kind", kind}, {"quantile", std::to_string(quantile)}});
                    m.gauge.value = h->quantile(quantile);
                    diff.metric.push_back(std::move(m));
                }
            }
        }
        if (q.feedback > 0) {
            auto m = labelled({});
            m.gauge.value = static_cast<double>(q.correct) / static_cast<double>(q.feedback);
            accuracy.metric.push_back(std::move(m));
        }
        if (q.valued_feedback > 0) {
            auto m = labelled({});
            m.gauge.value = q.abs_error_sum / static_cast<double>(q.valued_feedback);
            mae.metric.push_back(std::move(m));
        }
    }
    auto psi = family("stagegate_prediction_psi",
                      "Population stability index of the candidate's predictions against "
                      "stable's in the current stage.",
                      MetricType::Gauge);
    auto ks = family("stagegate_prediction_ks",
                     "Kolmogorov-Smirnov distance between the candidate's and stable's "
                     "predicted values in the current stage.",
                     MetricType::Gauge);
    for (const auto& r : in.rollouts) {
        if (r.psi) {
            auto m = with_labels({{"model", r.model}, {"candidate", r.candidate}, {"stage", r.stage}});
            m.gauge.value = *r.psi;
            psi.metric.push_back(std::move(m));
        }
        if (r.ks) {
            auto m = with_labels({{"model", r.model}, {"candidate", r.candidate}, {"stage", r.stage}});
            m.gauge.value = *r.ks;
            ks.metric.push_back(std::move(m));
        }
    }
    auto feedback = family("stagegate_feedback_outcomes_total",
                           "Feedback labels received, by model and outcome (unmatched labels "
                           "name no model).",
                           MetricType::Counter);
    for (const auto& f : in.feedback) {
        auto m = with_labels({{"model", f.model}, {"outcome", f.outcome}});
        m.counter.value = f.value;
        feedback.metric.push_back(std::move(m));
    }
    for (auto* f : {&outcomes, &dropped, &labels, &correct, &agreement, &diff, &accuracy, &mae,
                    &psi, &ks, &feedback}) {
        out.push_back(std::move(*f));
    }
}

}  // namespace

std::string render_prometheus(const exposition_input& in) {
    std::vector<MetricFamily> out;
    auto requests = family("stagegate_requests_total",
                           "Requests answered, by model, version, stage and status code "
                           "(untracked codes by class).",
                           MetricType::Counter);
    auto duration = family("stagegate_request_duration_seconds",
                           "Time from the request being read to the last byte of the answer.",
                           MetricType::Histogram);
    auto upstream_errors = family("stagegate_upstream_errors_total",
                                  "Upstream failures by model, version and kind.",
                                  MetricType::Counter);
    auto cut_short = family("stagegate_responses_cut_short_total",
                            "Answers whose body broke off after their status reached the client "
                            "(the backend closed, reset or stalled mid-stream); each is also in "
                            "stagegate_requests_total under its code, and a failure for the gates.",
                            MetricType::Counter);
    // Upstream failures are per (model, version): sum the stages.
    std::map<std::pair<std::string, std::string>, std::array<std::uint64_t, upstream_failure_kinds>>
        failures;
    for (std::uint32_t id = 0; id < in.labels.size(); ++id) {
        const auto* t = in.metrics ? in.metrics->total(id) : nullptr;
        if (!t) {
            continue;
        }
        const auto& l = in.labels[id];
        for (std::size_t c = 0; c < code_slots; ++c) {
            if (t->codes[c] == 0) {
                continue;
            }
            auto m = with_labels({{"model", l.model}, {"version", l.version}, {"stage", l.stage},
                                  {"code", code_label(c)}});
            m.counter.value = static_cast<double>(t->codes[c]);
            requests.metric.push_back(std::move(m));
        }
        if (t->cut_short > 0) {
            auto m = with_labels({{"model", l.model}, {"version", l.version}, {"stage", l.stage}});
            m.counter.value = static_cast<double>(t->cut_short);
            cut_short.metric.push_back(std::move(m));
        }
        auto h = with_labels({{"model", l.model}, {"version", l.version}, {"stage", l.stage}});
        h.histogram.sample_count = t->latency.count();
        h.histogram.sample_sum = static_cast<double>(t->latency.sum_micros()) / 1e6;
        for (double bound : duration_buckets) {
            h.histogram.bucket.push_back({t->latency.count_below(bound * 1e6), bound});
        }
        h.histogram.bucket.push_back(
            {t->latency.count(), std::numeric_limits<double>::infinity()});
        duration.metric.push_back(std::move(h));
        auto& f = failures[{l.model, l.version}];
        for (std::size_t k = 0; k < upstream_failure_kinds; ++k) {
            f[k] += t->upstream_failures[k];
        }
    }
    for (const auto& [key, kinds] : failures) {
        for (std::size_t k = 0; k < upstream_failure_kinds; ++k) {
            auto m = with_labels(
                {{"model", key.first}, {"version", key.second}, {"kind", failure_label(k)}});
            m.counter.value = static_cast<double>(kinds[k]);
            upstream_errors.metric.push_back(std::move(m));
        }
    }
    out.push_back(std::move(requests));
    out.push_back(std::move(duration));
    out.push_back(std::move(upstream_errors));
    out.push_back(std::move(cut_short));
    add_prediction_metrics(out, in);

    // Per-version gauges; `state_label` names the gauge's `state` field when it has one.
    auto version_gauges = [&](const char* name, const char* help,
                              const std::vector<version_gauge>& gauges,
                              const char* state_label) {
        auto fam = family(name, help, MetricType::Gauge);
        for (const auto& g : gauges) {
            auto m = state_label ? with_labels({{"model", g.model},
                                                {"version", g.version},
                                                {state_label, g.state}})
                                 : with_labels({{"model", g.model}, {"version", g.version}});
            m.gauge.value = g.value;
            fam.metric.push_back(std::move(m));
        }
        out.push_back(std::move(fam));
    };
    version_gauges("stagegate_upstream_connections",
                   "Upstream connections by model, version and state.", in.connections, "state");
    version_gauges("stagegate_traffic_weight_ratio",
                   "Share of the model's traffic routed to each version (0..1).", in.weights,
                   nullptr);
    version_gauges("stagegate_version_role",
                   "1 for each version's role: stable, candidate (of an active rollout) or idle.",
                   in.roles, "role");
    version_gauges("stagegate_model_age_seconds",
                   "Seconds since the version's model was trained (its trained_at).", in.ages,
                   nullptr);
    auto max_age = family("stagegate_model_max_age_seconds",
                          "How old a model's stable version may be (max_version_age_hours).",
                          MetricType::Gauge);
    for (const auto& [model, seconds] : in.max_ages) {
        auto m = with_labels({{"model", model}});
        m.gauge.value = seconds;
        max_age.metric.push_back(std::move(m));
    }
    out.push_back(std::move(max_age));

    auto phase = family("stagegate_rollout_phase",
                        "1 for the rollout's current phase, 0 for the others.", MetricType::Gauge);
    auto stage_index = family("stagegate_rollout_stage_index",
                              "Index of the rollout's current stage (0 = first).",
                              MetricType::Gauge);
    auto stage_seconds = family("stagegate_rollout_stage_seconds",
                                "Seconds the rollout has been in its current stage.",
                                MetricType::Gauge);
    auto stage_max = family("stagegate_rollout_stage_max_duration_seconds",
                            "The current stage's maximum duration, when it has one.",
                            MetricType::Gauge);
    auto decisions = family("stagegate_rollout_decisions_total",
                            "Rollout decisions and operator commands since the gateway started.",
                            MetricType::Counter);
    auto recorded = family("stagegate_rollout_state_recorded",
                           "0 while a rollback is applied but could not be recorded (the state "
                           "store is unwritable or unreachable; retried every interval), else 1.",
                           MetricType::Gauge);
    for (const auto& r : in.rollouts) {
        auto rec = with_labels({{"model", r.model}});
        rec.gauge.value = r.durable ? 1 : 0;
        recorded.metric.push_back(std::move(rec));
        for (auto p : config::rollout_phases) {
            auto m = with_labels(
                {{"model", r.model}, {"candidate", r.candidate}, {"phase", config::to_string(p)}});
            m.gauge.value = r.phase == p ? 1 : 0;
            phase.metric.push_back(std::move(m));
        }
        auto idx = with_labels({{"model", r.model}});
        idx.gauge.value = r.stage_index;
        stage_index.metric.push_back(std::move(idx));
        auto secs = with_labels({{"model", r.model}, {"stage", r.stage}});
        secs.gauge.value = r.seconds_in_stage;
        stage_seconds.metric.push_back(std::move(secs));
        if (r.max_duration_seconds > 0) {
            auto max = with_labels({{"model", r.model}, {"stage", r.stage}});
            max.gauge.value = r.max_duration_seconds;
            stage_max.metric.push_back(std::move(max));
        }
        for (const auto& [decision, count] : r.decisions) {
            auto d = with_labels({{"model", r.model}, {"decision", decision}});
            d.counter.value = static_cast<double>(count);
            decisions.metric.push_back(std::move(d));
        }
    }
    out.push_back(std::move(phase));
    out.push_back(std::move(stage_index));
    out.push_back(std::move(stage_seconds));
    out.push_back(std::move(stage_max));
    out.push_back(std::move(decisions));
    out.push_back(std::move(recorded));
    auto available = family("stagegate_rollout_state_available",
                            "0 while the rollout state cannot be opened or read (the gateway "
                            "serves stable versions only, refuses rollout changes and retries "
                            "every second), else 1.",
                            MetricType::Gauge);
    available.metric.push_back(with_labels({}));
    available.metric.back().gauge.value = in.rollout_state_available ? 1 : 0;
    out.push_back(std::move(available));

    auto deliveries = family("stagegate_webhook_deliveries_total",
                             "Event webhook calls by outcome: delivered, failed_attempt (retried "
                             "or not), dropped (given up, or the queue was full).",
                             MetricType::Counter);
    auto queued = family("stagegate_webhook_queue_events", "Events waiting for a webhook.",
                         MetricType::Gauge);
    for (const auto& w : in.webhooks) {
        for (auto [outcome, value] : {std::pair{"delivered", w.delivered},
                                      std::pair{"failed_attempt", w.failed_attempts},
                                      std::pair{"dropped", w.dropped}}) {
            auto m = with_labels({{"webhook", w.name}, {"outcome", outcome}});
            m.counter.value = value;
            deliveries.metric.push_back(std::move(m));
        }
        auto q = with_labels({{"webhook", w.name}});
        q.gauge.value = w.queued;
        queued.metric.push_back(std::move(q));
    }
    out.push_back(std::move(deliveries));
    out.push_back(std::move(queued));

    if (in.cluster) {
        const auto& c = *in.cluster;
        auto gauge_of = [&](const char* name, const char* help, double value) {
            auto f = family(name, help, MetricType::Gauge);
            auto m = with_labels({{"replica", c.replica}});
            m.gauge.value = value;
            f.metric.push_back(std::move(m));
            out.push_back(std::move(f));
        };
        gauge_of("stagegate_cluster_leader",
                 "1 while this replica is the cluster's leader (it alone decides rollouts).",
                 c.leader ? 1 : 0);
        gauge_of("stagegate_cluster_etcd_up",
                 "1 while etcd answers this replica; 0: it routes with the last known weights "
                 "and no rollout advances.",
                 c.etcd_up ? 1 : 0);
        auto won = family("stagegate_cluster_elections_won_total",
                          "Times this replica became the leader.", MetricType::Counter);
        auto m = with_labels({{"replica", c.replica}});
        m.counter.value = c.elections_won;
        won.metric.push_back(std::move(m));
        out.push_back(std::move(won));
        auto published = family("stagegate_cluster_counts_published_total",
                                "Times this replica wrote its stage counts to etcd for the "
                                "leader to sum (its etcd write rate, with the leader's decisions).",
                                MetricType::Counter);
        auto p = with_labels({{"replica", c.replica}});
        p.counter.value = c.counts_published;
        published.metric.push_back(std::move(p));
        out.push_back(std::move(published));
    }

    auto unrouted = family("stagegate_unrouted_requests_total",
                           "Requests answered before reaching a model, by reason.",
                           MetricType::Counter);
    for (std::size_t r = 0; r < unrouted_reasons; ++r) {
        auto m = with_labels({{"reason", unrouted_label(r)}});
        m.counter.value = in.metrics ? static_cast<double>(in.metrics->unrouted()[r]) : 0;
        unrouted.metric.push_back(std::move(m));
    }
    out.push_back(std::move(unrouted));

    auto plain = [&](const char* name, const char* help, MetricType type, double v) {
        add_single(out, name, help, type, v);
    };
    plain("stagegate_downstream_connections", "Open client connections.", MetricType::Gauge,
          in.downstream_active);
    plain("stagegate_downstream_connections_accepted_total", "Client connections accepted.",
          MetricType::Counter, in.downstream_accepted);
    plain("stagegate_downstream_connections_shed_total",
          "Client connections refused with 503 at the connection limit.", MetricType::Counter,
          in.downstream_shed);

    auto build = family("stagegate_build_info", "Build of the running gateway.",
                        MetricType::Gauge);
    auto b = with_labels({{"version", in.build_version}, {"commit", in.build_commit}});
    b.gauge.value = 1;
    build.metric.push_back(std::move(b));
    out.push_back(std::move(build));

    add_process_metrics(out);
    return prometheus::TextSerializer().Serialize(out);
}

}  // namespace stagegate::metrics
