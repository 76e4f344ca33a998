// control/collectors: the /metrics families of what the control plane hosts but which may not
// write metrics themselves (webhooks and the cluster member sit beside metrics in the module
// graph), and the gateway-wide ones: version roles, model ages, whether the rollout state is
// available, the build.
// Owns: those families' names, help texts and labels, written from plain values.
// Must not touch: the components themselves (control::plane reads them and registers these).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/metrics/exposition.hpp"
#include "stagegate/notify/notify.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace stagegate::control {

// One replica's part in a cluster ("store": "etcd").
struct cluster_gauges {
    std::string replica;
    bool leader = false;
    bool etcd_up = false;
    double elections_won = 0;
    double counts_published = 0;
    bool synced = false;    // routes by the rollout states etcd holds now
    double revision = 0;    // the store revision of the newest state it routes by
    double compactions = 0;  // of etcd's history, made as leader
    double etcd_calls = 0;
    double etcd_connections_opened = 0;  // by those calls (kept alive and reused)
    std::vector<std::pair<std::string, bool>> endpoints_up;  // each etcd endpoint, answering?
    double failovers = 0;  // moves to the next endpoint, one having stopped answering
};

// 1 for each version's role: stable, candidate (in `candidates`, by model: the candidates of
// live rollouts) or idle.
void write_version_roles(metrics::text_writer& out, const routing::route_snapshot* routes,
                         const std::map<std::string, std::string>& candidates);
// Versions' ages since their trained_at (`wall_now`: seconds since the epoch), and how old a
// model's stable version may be.
void write_model_ages(metrics::text_writer& out, const std::vector<config::model>& models,
                      std::int64_t wall_now);
void write_state_available(metrics::text_writer& out, bool available);
void write_webhook_metrics(metrics::text_writer& out,
                           const std::vector<notify::webhook_counts>& webhooks);
void write_cluster_metrics(metrics::text_writer& out, const cluster_gauges& c);
void write_build_info(metrics::text_writer& out, const std::string& version,
                      const std::string& commit);

}  // namespace stagegate::control
