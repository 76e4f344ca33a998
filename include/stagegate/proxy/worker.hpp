// proxy: the data plane of one worker thread.
// Owns: downstream sessions (HTTP/1.1 keep-alive, optional TLS), the upstream connection
// pools, passive endpoint health, and this thread's view of the route snapshot. Everything
// here is confined to the worker's io_context thread: no locks, no shared atomics, no throws.
// Must not touch: rollout or admin. Cross-thread input arrives only as posted snapshots.
// Beast stays out of this header (compile times); sessions live in src/proxy/.
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/metrics/shard.hpp"
#include "stagegate/predictions/feedback.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace stagegate::proxy {

// Lets a TLS listener's clients choose HTTP/2 by ALPN ("h2", else "http/1.1").
void offer_h2_alpn(boost::asio::ssl::context& tls);

class access_log_writer;
class access_log_buffer;
struct access_entry;

struct settings {
    config::limits limits;
    config::client_timeouts client;
    config::upstream_pool pool;
    bool record_metrics = true;
    // Null: no access log. Outlives the worker; worker i writes into its buffer(i).
    access_log_writer* access_log = nullptr;
    // Called on the worker's thread when a watched version (version_route::trip_after) trips;
    // the callee posts elsewhere.
    std::function<void(std::uint32_t series, std::uint32_t count)> on_broken;
};

// Connection-level counters written only by the owning worker (relaxed load+store, no lock
// prefix) and read from any thread; per-request numbers live in the metrics shard.
struct alignas(64) worker_counters {
    std::atomic<std::uint64_t> connections_accepted{0};
    std::atomic<std::uint64_t> connections_active{0};
    std::atomic<std::uint64_t> connections_shed{0};
    std::atomic<std::uint64_t> upstream_connects{0};
    std::atomic<std::uint64_t> upstream_connect_failures{0};
};

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

class upstream_pool;
class deadline_wheel;
class h2_upstreams;
struct session_slot;
struct mirror_job;

// Sockets carry the concrete io_context executor (no type-erased any_io_executor).
using socket_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp,
                                                     boost::asio::io_context::executor_type>;
using acceptor_type = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp,
                                                         boost::asio::io_context::executor_type>;

class worker {
public:
    worker(boost::asio::io_context& io, settings s, std::uint32_t index);
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    // --- Worker thread only ---------------------------------------------------------------
    void set_routes(std::shared_ptr<const routing::route_snapshot> routes);
    // Starts a session on an accepted socket; `tls` non-null for a TLS listener.
    void start_session(socket_type socket, boost::asio::ssl::context* tls);
    // The drain delay: still accepting and serving, but every answer closes its connection,
    // so clients move to other replicas while this one leaves the load balancer.
    void end_keep_alive() { keep_alive_ended_ = true; }
    // Stops keep-alive: idle connections close now, busy ones after their current response.
    void begin_drain();
    // Closes every client and upstream socket: the drain deadline has passed.
    void abort_all();

    // Upstream connections per endpoint id, for the gauges.
    struct endpoint_connections {
        std::uint32_t endpoint = 0;
        std::uint32_t idle = 0;
        std::uint32_t active = 0;
    };
    // Hands over the metrics recorded since the last call, with the connection gauges, and
    // the answers remembered for feedback (models with predictions.feedback).
    metrics::shard_delta take_metrics(std::vector<endpoint_connections>& connections,
                                      std::vector<predictions::served_record>& served);

    // --- Any thread -----------------------------------------------------------------------
    const worker_counters& counters() const { return counters_; }
    std::uint64_t routes_generation() const {
        return generation_.load(std::memory_order_relaxed);
    }

    // --- Used by sessions (worker thread) -------------------------------------------------
    boost::asio::io_context& io() { return io_; }
    const settings& config() const { return settings_; }
    const std::shared_ptr<const routing::route_snapshot>& routes() const { return routes_; }
    upstream_pool& pool() { return *pool_; }
    h2_upstreams& h2() { return *h2_; }  // HTTP/2 connections to "h2c" versions
    worker_counters& counters() { return counters_; }
    metrics::shard& shard() { return shard_; }
    // A watched version whose answers failed `trip_after` times in a row on this worker gets
    // no more random or sticky traffic here until the next route snapshot (the control side
    // rolls it back meanwhile): bounds what a dead candidate serves per worker.
    void trip(std::uint32_t series) {
        if (series >= tripped_.size()) {
            tripped_.resize(series + 1, false);
        }
        tripped_[series] = true;
    }
    bool tripped(std::uint32_t series) const {
        return series < tripped_.size() && tripped_[series];
    }
    bool draining() const { return draining_; }
    bool keep_alive_ended() const { return keep_alive_ended_; }  // draining or delaying it
    std::uint64_t next_random();
    // Shadow traffic (mirror.cpp): mirrors running, and those waiting for a free slot.
    std::uint32_t& mirrors_in_flight() { return mirrors_in_flight_; }
    std::deque<std::unique_ptr<mirror_job>>& mirrors_waiting() { return mirrors_waiting_; }
    // Answers to join feedback to, until the next take_metrics (bounded: see
    // prediction_reading.cpp).
    std::vector<predictions::served_record>& served() { return served_; }
    void link(session_slot& slot);
    void unlink(session_slot& slot);
    // One access log line for a request that ended (when the access log is on).
    void log_access(const access_entry& e);
    bool access_log_on() const { return access_log_ != nullptr; }

private:
    boost::asio::awaitable<void, boost::asio::io_context::executor_type> enforce_deadlines();

    boost::asio::io_context& io_;
    settings settings_;
    // A worker-private control block aliasing the shared snapshot: copies made per request
    // touch only this thread's cache line, never the one shared by all workers.
    std::shared_ptr<const routing::route_snapshot> routes_;
    std::atomic<std::uint64_t> generation_{0};
    std::unique_ptr<upstream_pool> pool_;
    std::unique_ptr<h2_upstreams> h2_;
    worker_counters counters_;
    metrics::shard shard_;
    std::vector<bool> tripped_;  // by series id; cleared by set_routes
    bool draining_ = false;
    bool keep_alive_ended_ = false;
    std::uint64_t rng_state_[4];
    session_slot* sessions_ = nullptr;  // intrusive list of live sessions (and mirrors)
    std::unique_ptr<deadline_wheel> deadlines_;  // of the sessions in that list
    std::uint32_t mirrors_in_flight_ = 0;
    std::deque<std::unique_ptr<mirror_job>> mirrors_waiting_;
    std::vector<predictions::served_record> served_;
    access_log_buffer* access_log_ = nullptr;
};

}  // namespace stagegate::proxy
