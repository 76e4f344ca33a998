// server: process wiring. Owns the worker threads (one io_context and one SO_REUSEPORT
// acceptor per listener each), the control thread, route publishing and graceful drain.
// Must not touch: request handling (proxy) or rollout decisions (rollout, later admin).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/proxy/worker.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace stagegate::server {

struct worker_totals {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_active = 0;
    std::uint64_t connections_shed = 0;
    std::uint64_t requests = 0;
    std::uint64_t upstream_connects = 0;
    std::uint64_t upstream_reused = 0;
    std::uint64_t upstream_connect_failures = 0;
    std::uint64_t error_replies = 0;
};

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
    // Replaces one model's weights (basis points) and stage label, then publishes.
    result<void> set_traffic(std::string_view model,
                             const std::map<std::string, std::uint32_t>& weights,
                             std::string stage);
    // The lowest generation any worker is routing with (all workers have it once equal).
    std::uint64_t applied_generation() const;

    // Graceful stop: close listeners, let in-flight requests finish (up to the drain timeout),
    // then stop every thread. Thread-safe, idempotent, returns at once.
    void stop();
    // Blocks until every thread has exited.
    void wait();

    boost::asio::io_context& control() { return control_io_; }
    worker_totals totals() const;
    std::size_t worker_count() const { return workers_.size(); }

private:
    struct worker_thread;
    void drain_step(std::chrono::steady_clock::time_point deadline);
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
};

}  // namespace stagegate::server
