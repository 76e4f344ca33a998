// server: the data plane host. Owns the worker threads (one io_context and one SO_REUSEPORT
// acceptor per listener each), the listeners' TLS contexts, the route snapshot every worker
// reads (published to each worker's thread), the collection of the workers' metric shards into
// one store, and graceful drain.
// Offers a narrow interface: publish a snapshot, collect shards, read totals.
// Must not touch: rollouts, feedback, clusters, the admin API (control/ and admin/ own them).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/metrics/series.hpp"
#include "stagegate/metrics/store.hpp"
#include "stagegate/proxy/worker.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace stagegate::server {

struct worker_totals {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_active = 0;
    std::uint64_t connections_shed = 0;
    std::uint64_t upstream_connects = 0;
    std::uint64_t upstream_connect_failures = 0;
};

// One version's numbers, as read by tests and the admin API.
struct version_metrics {
    std::string model;
    std::string version;
    std::string stage;
    metrics::series_counts since_stage_start;
    std::chrono::steady_clock::time_point stage_started;
    metrics::window_view window;
};

// What the data plane reports to whoever runs the control thread (called there).
struct data_plane_hooks {
    // A watched version tripped (routing::version_route::trip_after failures in a row).
    std::function<void(std::uint32_t series, std::uint32_t count)> version_broken;
    // Answers the workers remembered for feedback since the last collection.
    std::function<void(std::vector<predictions::served_record>)> served;
};

class data_plane {
public:
    // `control`: the control thread's context, where collections and the drain finish.
    explicit data_plane(boost::asio::io_context& control);
    ~data_plane();
    data_plane(const data_plane&) = delete;
    data_plane& operator=(const data_plane&) = delete;

    // --- Start (before any thread runs) -----------------------------------------------------
    void set_hooks(data_plane_hooks hooks) { hooks_ = std::move(hooks); }
    // The first snapshot, from the config (rollouts then apply their traffic over it).
    result<void> build_routes(const config::gateway& cfg);
    // Loads the listeners' certificates and binds every listener on every worker; on failure
    // nothing is left listening.
    result<void> bind(const config::gateway& cfg);
    void run();  // starts the worker threads
    // The bound port of each configured listener (useful with port 0).
    const std::vector<std::uint16_t>& ports() const { return ports_; }
    std::size_t worker_count() const { return workers_.size(); }

    // --- Routes (any thread) ----------------------------------------------------------------
    // Hands a new snapshot to every worker (Envoy's runOnAllThreads); returns at once. Each
    // worker swaps its own pointer on its own thread, so the request path never takes a lock.
    // Snapshots with an older generation than the current one are ignored.
    void publish(std::shared_ptr<const routing::route_snapshot> routes);
    std::shared_ptr<const routing::route_snapshot> routes() const;
    // Replaces one model's weights (basis points) and stage label (and, when given, its
    // stable version and the rollout candidate to watch), then publishes.
    result<void> set_traffic(std::string_view model,
                             const std::map<std::string, std::uint32_t>& weights,
                             std::string stage, std::string_view stable = {},
                             std::string_view watched = {}, std::uint32_t trip_after = 0,
                             routing::mirror_plan mirror = {});
    // A snapshot of `next` (a reloaded config) with the given generation; not published.
    result<std::shared_ptr<const routing::route_snapshot>> build_snapshot(
        const config::gateway& next, std::uint64_t generation);
    // Overlays one model's traffic on `base` (what set_traffic does, without publishing).
    result<std::shared_ptr<const routing::route_snapshot>> with_traffic(
        const routing::route_snapshot& base, std::string_view model,
        const std::map<std::string, std::uint32_t>& weights, std::string stage,
        std::string_view stable, std::string_view watched, std::uint32_t trip_after,
        routing::mirror_plan mirror);
    // The lowest generation any worker is routing with (all workers have it once equal).
    std::uint64_t applied_generation() const;

    // --- Metrics (control thread) -----------------------------------------------------------
    // Asks every worker for its shard's delta (posted to its thread), merges them into the
    // store, then calls `done` on the control thread.
    void collect(std::function<void()> done);
    metrics::store& store() { return *store_; }
    const metrics::store& store() const { return *store_; }
    metrics::series_registry& series() { return series_; }
    const metrics::series_registry& series() const { return series_; }
    // Per version of each model, current stage; after a collect().
    std::vector<version_metrics> version_metrics_now() const;
    // Upstream connections (active, idle) by endpoint id, as of the last collect().
    const std::vector<proxy::worker::endpoint_connections>& connection_gauges() const {
        return connection_gauges_;
    }
    worker_totals totals() const;  // any thread

    // --- Stop --------------------------------------------------------------------------------
    // Draining at once (draining() is true, answers close their connections) while the
    // listeners keep accepting for `delay`; then closes the listeners, lets in-flight requests
    // finish for up to `grace`, closes what is left, stops the workers, then calls `done` on
    // the control thread. Once; any thread.
    void drain(std::chrono::milliseconds delay, std::chrono::milliseconds grace,
               std::function<void()> done);
    bool draining() const { return draining_.load(); }
    void join();  // blocks until every worker thread has exited

private:
    struct worker_thread;
    routing::series_namer namer();
    result<void> bind_workers(const config::gateway& cfg);
    void close_listeners(std::chrono::milliseconds grace, std::function<void()> done);
    void drain_step(std::chrono::steady_clock::time_point deadline, std::function<void()> done);
    void finish_step(std::chrono::steady_clock::time_point deadline, std::function<void()> done);

    boost::asio::io_context& control_;
    data_plane_hooks hooks_;
    routing::endpoint_registry registry_;
    mutable std::mutex routes_mutex_;  // control side only
    std::shared_ptr<const routing::route_snapshot> routes_;
    // Before workers_: destroyed after them, so its last flush sees every line they wrote.
    std::unique_ptr<proxy::access_log_writer> access_log_;
    std::vector<std::unique_ptr<worker_thread>> workers_;
    std::vector<std::uint16_t> ports_;
    std::vector<std::shared_ptr<boost::asio::ssl::context>> tls_contexts_;
    std::atomic<bool> draining_{false};
    metrics::series_registry series_;
    std::unique_ptr<metrics::store> store_;  // control thread only
    std::vector<proxy::worker::endpoint_connections> connection_gauges_;  // control thread
};

}  // namespace stagegate::server
