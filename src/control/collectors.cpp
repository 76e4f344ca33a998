#include "stagegate/control/collectors.hpp"

#include <chrono>

namespace stagegate::control {

void write_version_roles(metrics::text_writer& out, const routing::route_snapshot* routes,
                         const std::map<std::string, std::string>& candidates) {
    auto& roles = out.gauge("stagegate_version_role",
                            "1 for each version's role: stable, candidate (of an active "
                            "rollout) or idle.");
    if (!routes) {
        return;
    }
    for (const auto& m : routes->models) {
        const auto c = candidates.find(m.name);
        for (std::size_t v = 0; v < m.versions.size(); ++v) {
            const auto& name = m.versions[v].name;
            const char* role = v == m.stable                                   ? "stable"
                               : c != candidates.end() && c->second == name ? "candidate"
                                                                            : "idle";
            roles.add({{"model", m.name}, {"version", name}, {"role", role}}, 1);
        }
    }
}

void write_model_ages(metrics::text_writer& out, const std::vector<config::model>& models,
                      std::int64_t wall_now) {
    auto& ages = out.gauge("stagegate_model_age_seconds",
                           "Seconds since the version's model was trained (its trained_at).");
    auto& max_ages = out.gauge("stagegate_model_max_age_seconds",
                               "How old a model's stable version may be (max_version_age_hours).");
    std::map<std::string, double> by_model;  // written in model name order
    for (const auto& m : models) {
        if (m.max_version_age) {
            by_model[m.name] =
                static_cast<double>(std::chrono::seconds(*m.max_version_age).count());
        }
        for (const auto& v : m.versions) {
            if (v.trained_at) {
                ages.add({{"model", m.name}, {"version", v.name}},
                         static_cast<double>(wall_now - *v.trained_at));
            }
        }
    }
    for (const auto& [model, seconds] : by_model) {
        max_ages.add({{"model", model}}, seconds);
    }
}

void write_state_available(metrics::text_writer& out, bool available) {
    out.single("stagegate_rollout_state_available",
               "0 while the rollout state cannot be opened or read (the gateway serves stable "
               "versions only, refuses rollout changes and retries every second), else 1.",
               metrics::metric_type::gauge, available ? 1 : 0);
}

void write_webhook_metrics(metrics::text_writer& out,
                           const std::vector<notify::webhook_counts>& webhooks) {
    auto& deliveries = out.counter("stagegate_webhook_deliveries_total",
                                   "Event webhook calls by outcome: delivered, failed_attempt "
                                   "(retried or not), dropped (given up, or the queue was full).");
    auto& queued = out.gauge("stagegate_webhook_queue_events", "Events waiting for a webhook.");
    for (const auto& w : webhooks) {
        for (auto [outcome, value] : {std::pair{"delivered", w.delivered},
                                      std::pair{"failed_attempt", w.failed_attempts},
                                      std::pair{"dropped", w.dropped}}) {
            deliveries.add({{"webhook", w.name}, {"outcome", outcome}},
                           static_cast<double>(value));
        }
        queued.add({{"webhook", w.name}}, static_cast<double>(w.queued));
    }
}

void write_cluster_metrics(metrics::text_writer& out, const cluster_gauges& c) {
    const metrics::label_set replica = {{"replica", c.replica}};
    out.gauge("stagegate_cluster_leader",
              "1 while this replica is the cluster's leader (it alone decides rollouts).")
        .add(replica, c.leader ? 1 : 0);
    out.gauge("stagegate_cluster_etcd_up",
              "1 while etcd answers this replica; 0: it routes with the last known weights and "
              "no rollout advances.")
        .add(replica, c.etcd_up ? 1 : 0);
    out.gauge("stagegate_cluster_rollout_state_synced",
              "1 while this replica has read every rollout state from etcd and watches them; 0: "
              "not read since it started (/readyz fails) or etcd, its lease or its watch was "
              "lost (it routes by the last states read).")
        .add(replica, c.synced ? 1 : 0);
    out.gauge("stagegate_cluster_rollout_state_revision",
              "The etcd revision of the newest rollout state this replica routes by (replicas "
              "that differ for long route differently).")
        .add(replica, c.revision);
    out.counter("stagegate_cluster_elections_won_total", "Times this replica became the leader.")
        .add(replica, c.elections_won);
    out.counter("stagegate_cluster_counts_published_total",
                "Times this replica wrote its stage counts to etcd for the leader to sum (its "
                "etcd write rate, with the leader's decisions; unchanged counts are not "
                "written again).")
        .add(replica, c.counts_published);
    out.counter("stagegate_cluster_etcd_compactions_total",
                "Times this replica, as leader, compacted etcd's history (to the revision it "
                "noted one history_ms before).")
        .add(replica, c.compactions);
    out.counter("stagegate_cluster_etcd_requests_total",
                "Calls this replica made to etcd (watches included).")
        .add(replica, c.etcd_calls);
    out.counter("stagegate_cluster_etcd_connections_opened_total",
                "TCP connections this replica opened to etcd: calls reuse a few kept-alive ones "
                "per endpoint, each watch has its own.")
        .add(replica, c.etcd_connections_opened);
    auto& up = out.gauge("stagegate_cluster_etcd_endpoint_up",
                         "1 while this etcd endpoint answers this replica's calls; 0: its last "
                         "call got no answer or a 5xx (a member stopped, hung or cut off from "
                         "its peers), so this replica calls and watches the next one, and "
                         "probes this one once per lease TTL.");
    for (const auto& [endpoint, answering] : c.endpoints_up) {
        up.add({{"replica", c.replica}, {"endpoint", endpoint}}, answering ? 1 : 0);
    }
    out.counter("stagegate_cluster_etcd_failovers_total",
                "Times this replica moved on to the next etcd endpoint because one stopped "
                "answering (its watches there end and the states are read again).")
        .add(replica, c.failovers);
}

void write_build_info(metrics::text_writer& out, const std::string& version,
                      const std::string& commit) {
    out.gauge("stagegate_build_info", "Build of the running gateway.")
        .add({{"version", version}, {"commit", commit}}, 1);
}

}  // namespace stagegate::control
