// metrics/exposition: Prometheus text format for the merged metrics.
// Owns: metric names, help texts, label sets and bucket boundaries as Prometheus sees them,
// rendered with prometheus-cpp's TextSerializer (its Counter/Histogram types are never used
// on the request path), plus the standard process_* metrics read from /proc.
#pragma once

#include "stagegate/config/vocabulary.hpp"
#include "stagegate/metrics/store.hpp"

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stagegate::metrics {

// Upper bounds (seconds) of stagegate_request_duration_seconds: inference-shaped, 1 ms..30 s.
inline constexpr std::array<double, 14> duration_buckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

struct version_gauge {
    std::string model;
    std::string version;
    std::string state;  // for connections: "active" | "idle"; empty for weights
    double value = 0;
};

// One rollout as Prometheus sees it (the server fills it in from the controller).
struct rollout_gauge {
    std::string model;
    std::string candidate;
    config::rollout_phase phase = config::rollout_phase::progressing;
    std::string stage;
    double stage_index = 0;
    double seconds_in_stage = 0;
    double max_duration_seconds = 0;  // 0: the stage has no maximum
    std::map<std::string, std::uint64_t> decisions;  // by decision: promoted, rolled_back, ...
    bool durable = true;  // false: a decision is applied but not recorded yet
    // Drift of the candidate's predictions from stable's in this stage (models with
    // predictions, live rollouts only).
    std::optional<double> psi;
    std::optional<double> ks;
};

// Feedback labels since start by model ("" for unmatched) and outcome.
struct feedback_count {
    std::string model;
    std::string outcome;  // matched | late | unmatched | duplicate | unusable
    double value = 0;
};


struct exposition_input {
    const store* metrics = nullptr;
    std::vector<series_labels> labels;             // by series id
    std::vector<version_gauge> weights;            // stagegate_traffic_weight_ratio
    std::vector<version_gauge> connections;        // stagegate_upstream_connections (state)
    std::vector<version_gauge> roles;              // stagegate_version_role (state = role)
    std::vector<version_gauge> ages;               // stagegate_model_age_seconds
    std::map<std::string, double> max_ages;        // stagegate_model_max_age_seconds by model
    std::vector<rollout_gauge> rollouts;
    // stagegate_rollout_state_available: false while the state cannot be read or written at
    // all (the gateway serves stable versions only and retries).
    bool rollout_state_available = true;
    std::vector<feedback_count> feedback;
    struct webhook_gauge {
        std::string name;
        double delivered = 0;
        double failed_attempts = 0;
        double dropped = 0;
        double queued = 0;
    };
    std::vector<webhook_gauge> webhooks;
    struct cluster_gauge {  // "store": "etcd" only
        std::string replica;
        bool leader = false;
        bool etcd_up = false;
        double elections_won = 0;
        double counts_published = 0;
    };
    std::optional<cluster_gauge> cluster;
    double downstream_active = 0;
    double downstream_accepted = 0;
    double downstream_shed = 0;
    std::string build_version;
    std::string build_commit;
};

std::string render_prometheus(const exposition_input& in);

}  // namespace stagegate::metrics
