// control: the control plane, on the control thread. Owns the rollout controller and its
// environment (metrics from the data plane's store, traffic through its snapshots), the
// rollout store (the state directory, or etcd through the cluster member), event listeners,
// webhooks and gate checks, feedback books, the other replicas' counts, the periodic
// collection and rollout ticks, the /metrics collectors of what it hosts, and config reload
// (applying the plan control/reload_plan decides: which rollouts carry over, start or update).
// Everything here runs on the control thread and never blocks it: slow work (etcd, webhooks,
// checks) is asynchronous and answers through callbacks posted back to it.
// Must not touch: sockets of the request path (the data plane's), admin HTTP (admin/).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/control/feedback.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/metrics/exposition.hpp"
#include "stagegate/notify/notify.hpp"
#include "stagegate/rollout/controller.hpp"
#include "stagegate/rollout/state_store.hpp"
#include "stagegate/server/data_plane.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace stagegate::cluster {
class member;
}

namespace stagegate::control {

class plane {
public:
    // Sets the data plane's hooks (tripped versions, served answers) to lead here.
    plane(boost::asio::io_context& io, config::gateway cfg, server::data_plane& data);
    ~plane();
    plane(const plane&) = delete;
    plane& operator=(const plane&) = delete;

    // Before the data plane binds: webhooks, checks, the controller and the rollouts the
    // config declares (with a state directory; with etcd they start once elected). A state
    // directory that cannot be opened or read never stops the gateway from serving: see
    // state_problem().
    result<void> prepare();
    // Why the rollout state cannot be read or written right now, if so. Meanwhile every model
    // routes by its config (a model with a rollout: stable only), rollout changes are refused,
    // and the state is tried again every second; once it opens, the rollouts resume.
    const std::optional<error>& state_problem() const { return state_problem_; }
    // The error a rollout change gets while the state is unavailable.
    std::optional<error> refused_while_state_unavailable() const;
    // Once every thread runs: the periodic collection, the cluster, the rollout ticks.
    // `admin_url` is where other replicas reach this one's admin API ("" when disabled).
    void start(std::string admin_url);
    // Stops timers, webhooks, checks and the cluster membership (leadership is given up now).
    void stop();

    // --- Rollouts -------------------------------------------------------------------------
    rollout::controller* rollouts() { return controller_.get(); }
    nlohmann::json rollout_status(const std::string& model);
    result<nlohmann::json> rollout_command(const std::string& model, const std::string& name,
                                           const nlohmann::json& args, const std::string& actor,
                                           const std::string& reason);
    // Starts a rollout for a model of the current routes.
    result<nlohmann::json> start_rollout(const std::string& model, config::rollout spec,
                                         const std::string& actor, const std::string& reason);

    // --- Cluster ("store": "etcd") --------------------------------------------------------
    // This replica's part: name, leader or not, whether etcd answers, who leads, whether it
    // has synced the rollout states (once since it started, and now) and the store revision
    // it routes by ({"store": "file"} without a cluster).
    nlohmann::json cluster_status() const;
    // Asks etcd who leads now, then calls `done` (at once without a cluster).
    void refresh_leader(std::function<void()> done);

    // --- Events ---------------------------------------------------------------------------
    // Null until a rollout needed the state directory.
    rollout::state_store* state() { return state_ ? &*state_ : nullptr; }
    // Called with every event once it is durable (webhooks): on the leader only in a cluster.
    void on_event(std::function<void(const nlohmann::json&)> listener);
    // The admin API's live feed: in a cluster every replica's feed shows every event.
    void on_feed_event(std::function<void(const nlohmann::json&)> listener);
    // Where events are read back (the state directory, or etcd); null before any rollout.
    rollout::persistence* event_log();
    // Event webhooks' state; null when none are configured.
    const notify::webhooks* webhooks() const { return webhooks_.get(); }

    // --- Config ---------------------------------------------------------------------------
    const config::gateway& current_config() const { return cfg_; }
    void set_config_path(std::string path) { config_path_ = std::move(path); }
    const std::string& config_path() const { return config_path_; }
    // Applies a new config atomically: models, versions, endpoints, matching and rollouts
    // change; everything else needs a restart and is refused. Active rollouts keep their
    // traffic. On any problem nothing changes and every problem is listed. In-flight requests
    // finish on the routes they started with.
    result<nlohmann::json> reload(config::gateway next, const std::string& actor);

    // --- Feedback -------------------------------------------------------------------------
    feedback_outcome apply_feedback(const std::vector<feedback_label>& labels);
    const std::map<std::string, feedback_outcome>& feedback_totals() const {
        return feedback_.totals();
    }

    // --- The data plane, as the admin API sees it -----------------------------------------
    std::shared_ptr<const routing::route_snapshot> routes() const { return data_.routes(); }
    void collect(std::function<void()> done) { data_.collect(std::move(done)); }
    std::vector<server::version_metrics> version_metrics_now() const {
        return data_.version_metrics_now();
    }
    bool draining() const { return data_.draining(); }
    // /metrics: every collector the plane registered for what it hosts, in order.
    std::string render_prometheus() const { return metrics_.render(); }

private:
    class environment;
    void schedule_collection();
    void schedule_rollout_tick();
    void hand_over_unrecorded();
    void record_handovers(const std::map<std::string, nlohmann::json>& handed);
    void start_cluster(std::string admin_url);
    void lead();
    void publish_counts();
    void take_replica_counts(const std::map<std::string, nlohmann::json>& published);
    result<void> ensure_state();
    // Opens the state and resumes the rollouts; on failure keeps serving without them.
    void open_state_or_wait();
    void retry_state_soon();
    void hold_after_unavailable_start(const std::vector<std::string>& recorded);
    const config::model* model_config(const std::string& name) const;
    void version_broken(std::uint32_t series, std::uint32_t count);
    void remember_served(std::vector<predictions::served_record> served);
    void notify_event(const nlohmann::json& event);
    // Each component's collector, in the exposition's order (see plane.cpp).
    void register_collectors();
    std::vector<rollout::rollout_gauge> rollout_gauges() const;
    // The candidates of live rollouts, by model.
    std::map<std::string, std::string> live_candidates() const;

    boost::asio::io_context& io_;
    config::gateway cfg_;
    server::data_plane& data_;
    std::string config_path_;
    bool stopped_ = false;
    bool started_ = false;
    std::unique_ptr<environment> env_;
    std::optional<rollout::state_store> state_;
    std::unique_ptr<rollout::controller> controller_;
    std::unique_ptr<cluster::member> member_;  // with "store": "etcd"
    std::set<std::string> handed_over_;  // "model@sequence" of rollbacks handed to the leader
    // The other replicas' counts for the stages in progress, by (model, version, stage).
    std::map<std::tuple<std::string, std::string, std::string>, metrics::series_counts>
        replica_counts_;
    std::unique_ptr<boost::asio::steady_timer> collect_timer_;
    std::unique_ptr<boost::asio::steady_timer> rollout_timer_;
    std::unique_ptr<boost::asio::steady_timer> state_retry_timer_;
    std::optional<error> state_problem_;
    std::vector<std::function<void(const nlohmann::json&)>> event_listeners_;
    std::vector<std::function<void(const nlohmann::json&)>> feed_listeners_;
    std::unique_ptr<notify::webhooks> webhooks_;
    std::unique_ptr<notify::checks> checks_;
    feedback_books feedback_;
    metrics::registry metrics_;
};

}  // namespace stagegate::control
