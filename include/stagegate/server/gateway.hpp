// server: process wiring. Owns the worker threads (one io_context and one SO_REUSEPORT
// acceptor per listener each), the control thread, route publishing and graceful drain.
// Also owns the admin listener (admin_server.hpp) and config reload.
// Must not touch: request handling (proxy) or rollout decisions (rollout).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/metrics/series.hpp"
#include "stagegate/metrics/store.hpp"
#include "stagegate/notify/notify.hpp"
#include "stagegate/proxy/worker.hpp"
#include "stagegate/rollout/controller.hpp"
#include "stagegate/rollout/state_store.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace stagegate::server {

struct worker_totals {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_active = 0;
    std::uint64_t connections_shed = 0;
    std::uint64_t upstream_connects = 0;
    std::uint64_t upstream_connect_failures = 0;
};

// One version's numbers, as read by tests, the admin API and (later) the rollout controller.
struct version_metrics {
    std::string model;
    std::string version;
    std::string stage;
    metrics::series_counts since_stage_start;
    std::chrono::steady_clock::time_point stage_started;
    metrics::window_view window;
};

class admin_server;
}  // namespace stagegate::server
namespace stagegate::cluster {
class member;
}  // namespace stagegate::cluster
namespace stagegate::server {

class gateway {
public:
    explicit gateway(config::gateway cfg);
    ~gateway();
    gateway(const gateway&) = delete;
    gateway& operator=(const gateway&) = delete;

    // Builds routes, binds every listener and starts the threads.
    result<void> start();
    // The bound port of each configured listener (useful with port 0).
    const std::vector<std::uint16_t>& ports() const { return ports_; }

    // Hands a new snapshot to every worker (Envoy's runOnAllThreads). Thread-safe; returns at
    // once. Each worker swaps its own pointer on its own thread, so the request path never
    // takes a lock. Snapshots with an older generation than the current one are ignored.
    void publish(std::shared_ptr<const routing::route_snapshot> routes);
    std::shared_ptr<const routing::route_snapshot> routes() const;
    // Replaces one model's weights (basis points) and stage label (and, when given, its
    // stable version and the rollout candidate to watch), then publishes.
    result<void> set_traffic(std::string_view model,
                             const std::map<std::string, std::uint32_t>& weights,
                             std::string stage, std::string_view stable = {},
                             std::string_view watched = {}, std::uint32_t trip_after = 0,
                             routing::mirror_plan mirror = {});
    // The lowest generation any worker is routing with (all workers have it once equal).
    std::uint64_t applied_generation() const;

    // Graceful stop: close listeners, let in-flight requests finish (up to the drain timeout),
    // then stop every thread. Thread-safe, idempotent, returns at once.
    void stop();
    // Blocks until every thread has exited.
    void wait();

    boost::asio::io_context& control() { return control_io_; }
    worker_totals totals() const;
    // The bound admin port (0 when the admin listener is disabled).
    std::uint16_t admin_port() const { return admin_port_; }
    bool draining() const { return draining_.load(); }

    // --- Metrics (control thread) ----------------------------------------------------------
    // Asks every worker for its shard's delta (posted to its thread), merges them into the
    // store, then calls `done` on the control thread.
    void collect(std::function<void()> done);
    const metrics::store& metrics_store() const { return *store_; }
    std::string render_prometheus() const;
    // Per version of each model, current stage; after a collect().
    std::vector<version_metrics> version_metrics_now() const;

    // --- Metrics (any thread; blocks until a collection has run) ---------------------------
    std::vector<version_metrics> read_metrics();

    // --- Rollouts ----------------------------------------------------------------------------
    // Control thread only; null when no model has a rollout.
    rollout::controller* rollouts() { return controller_.get(); }
    // Any thread but the control thread (blocks until the controller has answered).
    result<nlohmann::json> rollout_command(const std::string& model, const std::string& name,
                                           const nlohmann::json& args, const std::string& actor,
                                           const std::string& reason);
    nlohmann::json rollout_status(const std::string& model);
    // This replica's part in its cluster ("store": "etcd"): name, leader or not, whether etcd
    // answers, and who leads (control thread; {"store": "file"} without a cluster).
    nlohmann::json cluster_status() const;
    // Cluster mode: asks etcd who leads now, then calls `done` (control thread; at once
    // without a cluster).
    void refresh_leader(std::function<void()> done);
    // Starts a rollout at run time for a model of the current routes.
    result<nlohmann::json> rollout_start(const std::string& model, config::rollout spec,
                                         const std::string& actor, const std::string& reason);
    // The same, on the control thread (the admin API).
    result<nlohmann::json> start_rollout_now(const std::string& model, config::rollout spec,
                                             const std::string& actor,
                                             const std::string& reason);

    // --- Events and reload -------------------------------------------------------------------
    // Control thread only; null until a rollout needed the state directory.
    rollout::state_store* state() { return state_ ? &*state_ : nullptr; }
    // Adds a listener called on the control thread with every event once it is durable (the
    // admin live feed, webhooks).
    void on_event(std::function<void(const nlohmann::json&)> listener);
    // The same for the admin API's live feed: in a cluster every replica's feed shows every
    // event (read back from etcd), while on_event's listeners (webhooks) run on the leader only.
    void on_feed_event(std::function<void(const nlohmann::json&)> listener);
    // Where events are read back (the state directory, or etcd); null before any rollout.
    rollout::persistence* event_log();
    // Event webhooks' state (control thread); null when none are configured.
    const notify::webhooks* webhooks() const { return webhooks_.get(); }
    const config::gateway& current_config() const { return cfg_; }  // control thread
    // The file `reload()` reads (main sets it).
    void set_config_path(std::string path) { config_path_ = std::move(path); }
    const std::string& config_path() const { return config_path_; }
    // Applies a new config atomically on the control thread: models, versions, endpoints,
    // matching and rollouts change; everything else needs a restart and is refused. Active
    // rollouts keep their traffic. On any problem nothing changes and every problem is listed.
    // In-flight requests finish on the routes they started with.
    result<nlohmann::json> reload_now(config::gateway next, const std::string& actor);
    // Loads config_path() and applies it (any thread but the control thread; SIGHUP).
    result<nlohmann::json> reload(const std::string& actor);
    std::size_t worker_count() const { return workers_.size(); }

    // --- Feedback (control thread) -----------------------------------------------------------
    // Delayed labels joined to the answers they judge (models with predictions.feedback).
    struct feedback_label {
        std::string request_id;
        nlohmann::json label;  // a class (string, integer, bool) or a number (regression)
    };
    struct feedback_outcome {
        std::uint64_t matched = 0;    // joined to an answer and counted
        std::uint64_t late = 0;       // of those, for a stage the model has since left
        std::uint64_t unmatched = 0;  // no remembered answer (unknown, expired or evicted)
        std::uint64_t duplicate = 0;  // the answer was labelled already: ignored
        std::uint64_t unusable = 0;   // matched, but the label cannot judge the prediction
    };
    feedback_outcome apply_feedback(const std::vector<feedback_label>& labels);
    // Totals since start, by model ("" for unmatched labels, which name no model).
    const std::map<std::string, feedback_outcome>& feedback_totals() const {
        return feedback_totals_;
    }

private:
    struct worker_thread;
    result<void> start_listeners();
    void drain_step(std::chrono::steady_clock::time_point deadline);
    void schedule_collection();
    void schedule_rollout_tick();
    result<void> start_rollouts();
    void start_cluster();  // "store": "etcd": join, campaign, follow the leader's decisions
    void lead();
    void publish_counts();
    void take_replica_counts(const std::map<std::string, nlohmann::json>& published);
    template <class F>
    auto on_control(F&& f);
    routing::series_namer namer();
    result<void> ensure_state();
    const config::model* model_config(const std::string& name) const;
    void remember_served(std::vector<predictions::served_record> served);
    void finish_step(std::chrono::steady_clock::time_point deadline);

    config::gateway cfg_;
    routing::endpoint_registry registry_;
    mutable std::mutex routes_mutex_;  // control side only
    std::shared_ptr<const routing::route_snapshot> routes_;
    std::vector<std::unique_ptr<worker_thread>> workers_;
    std::vector<std::uint16_t> ports_;
    std::vector<std::shared_ptr<boost::asio::ssl::context>> tls_contexts_;
    boost::asio::io_context control_io_{1};
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
        control_guard_;
    std::thread control_thread_;
    std::once_flag stop_once_;
    bool started_ = false;
    std::atomic<bool> draining_{false};

    metrics::series_registry series_;
    std::unique_ptr<metrics::store> store_;  // control thread only
    std::vector<proxy::worker::endpoint_connections> connection_gauges_;  // control thread
    std::unique_ptr<boost::asio::steady_timer> collect_timer_;
    std::unique_ptr<admin_server> admin_;
    class rollout_environment;
    std::unique_ptr<rollout_environment> rollout_env_;
    std::optional<rollout::state_store> state_;
    std::unique_ptr<rollout::controller> controller_;  // control thread only
    std::unique_ptr<cluster::member> member_;          // with "store": "etcd"; control thread
    // The other replicas' counts for the stages in progress, by (model, version, stage).
    std::map<std::tuple<std::string, std::string, std::string>, metrics::series_counts>
        replica_counts_;
    std::unique_ptr<boost::asio::steady_timer> rollout_timer_;
    std::uint16_t admin_port_ = 0;
    std::string config_path_;
    std::vector<std::function<void(const nlohmann::json&)>> event_listeners_;
    std::vector<std::function<void(const nlohmann::json&)>> feed_listeners_;
    std::unique_ptr<notify::webhooks> webhooks_;  // control thread
    std::unique_ptr<notify::checks> checks_;      // control thread
    std::map<std::string, predictions::feedback_book> feedback_;  // by model; control thread
    std::map<std::string, feedback_outcome> feedback_totals_;
};

}  // namespace stagegate::server
