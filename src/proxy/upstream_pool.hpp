// Private to proxy: per-worker pools of keep-alive connections to upstream endpoints, and
// passive endpoint health. Confined to one worker thread.
#pragma once

#include "stagegate/proxy/worker.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace stagegate::proxy {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;

struct upstream_connection {
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    std::shared_ptr<net::ssl::context> tls_context;  // outlives `secure`
    beast::flat_buffer buffer;
    std::uint32_t endpoint_id = 0;
    clock::time_point idle_since;

    beast::tcp_stream& lowest() { return plain ? *plain : secure->next_layer(); }
    ~upstream_connection();
};

enum class acquire_status { ok, no_healthy_upstream, connect_failed, connect_timeout };

struct acquired {
    acquire_status status = acquire_status::connect_failed;
    std::unique_ptr<upstream_connection> connection;
    const routing::upstream_endpoint* endpoint = nullptr;
    bool reused = false;
    std::string detail;  // the last failure, for the error message
};

class upstream_pool {
public:
    upstream_pool(net::io_context& io, const config::upstream_pool& cfg, worker_counters& c);
    ~upstream_pool();

    // An idle connection to one of the version's endpoints, or a new one. Endpoints are tried
    // in round-robin order; a failed connect moves on to the next endpoint (nothing was sent).
    net::awaitable<acquired> acquire(const routing::model_route& model,
                                     const routing::version_route& version);
    // Returns a connection whose last exchange ended cleanly.
    void release(std::unique_ptr<upstream_connection> connection);

    void start();  // the idle sweeper
    void stop();   // closes every idle connection, stops the sweeper

    std::size_t idle_count() const;

private:
    struct endpoint_state {
        std::vector<std::unique_ptr<upstream_connection>> idle;  // back = most recent
        std::uint32_t consecutive_failures = 0;
        clock::time_point ejected_until{};
        std::uint32_t round_robin = 0;  // used when this is a version's first endpoint
    };

    endpoint_state& state(std::uint32_t id);
    std::unique_ptr<upstream_connection> take_idle(endpoint_state& s, clock::time_point now);
    net::awaitable<boost::system::error_code> connect(upstream_connection& c,
                                                      const routing::upstream_endpoint& ep,
                                                      const routing::version_route& version,
                                                      std::chrono::milliseconds timeout);
    void record_failure(endpoint_state& s, const config::passive_health& health,
                        clock::time_point now);
    net::awaitable<void> sweep();

    net::io_context& io_;
    config::upstream_pool cfg_;
    worker_counters& counters_;
    std::vector<endpoint_state> endpoints_;
    net::steady_timer sweep_timer_;
    bool stopped_ = false;
};

}  // namespace stagegate::proxy
