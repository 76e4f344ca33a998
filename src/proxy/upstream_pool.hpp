// Private to proxy: per-worker pools of keep-alive connections to upstream endpoints, and
// passive endpoint health. Confined to one worker thread.
//
// Bytes after an answer. A backend may write more after an answer has ended (a second answer, a
// late error page): on a reused connection they would be read as the next request's answer, which
// may be another client's. The peek when a connection is taken (check_idle, on by default) sees
// everything that came while it sat idle; an idle connection also gets a wait armed on it (nginx's
// keepalive module does the same) that closes it as soon as a byte, a FIN or a reset arrives, so
// one the backend closed does not linger until its next use; and an endpoint that sent such bytes
// has its answers' connections closed instead of pooled for a while (no_reuse_until), so one
// broken backend cannot keep mixing answers. With the peek on, the wait is armed only once a
// connection has sat idle for a second (the sweeper arms it): arming costs an epoll_ctl, and under
// load a connection is taken again within milliseconds, so arming it at every release cost one
// system call per request that the peek made redundant. With the peek off, the wait is armed at
// once and is the only guard. The windows that remain: bytes that arrive after the connection was taken
// for a request, before its answer, are read as that answer. HTTP/1.1 has no way to tell them
// apart, so no proxy can close it; it lasts from the take to the backend's first answer byte. On a
// TLS connection, a record that arrived with the answer's last read sits in the TLS engine, where
// neither the wait nor the peek sees it.
#pragma once

#include "proxy/deadline_wheel.hpp"
#include "stagegate/core/asio.hpp"
#include "stagegate/proxy/worker.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace stagegate::proxy {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;

// Concrete executor types everywhere on the data plane: any_io_executor's type erasure costs
// a visible share of each request.
using executor_type = net::io_context::executor_type;
// Raw sockets, no beast::basic_stream: its per-operation timers (arm, cancel, one more
// handler) were a visible share of each request. Deadlines live in session_slot instead and
// one coarse per-worker ticker enforces them.
using stream_type = socket_type;
using tls_stream_type = beast::ssl_stream<stream_type>;
template <class T>
using task = net::awaitable<T, executor_type>;
// core/asio.hpp's token for task's executor, under the short name every proxy coroutine uses.
constexpr auto nothrow_awaitable = nothrow_awaitable_on<executor_type>;

// The kernel's tick-granular monotonic clock (same base as steady_clock, ~4 ms resolution, a
// few ns to read): good enough for timeouts and idle ages, not for latency measurement.
inline clock::time_point coarse_now() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return clock::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

// A live client connection as its worker sees it: for drain, and for deadlines. A deadline is
// a plain store per operation; the worker's ticker cancels whatever passed it, looking only at
// the slots its deadline wheel has due (deadline_wheel.hpp: a deadline earlier than the one
// the slot waits for moves it in the wheel; a later one, the usual case, does not).
// What a slot without a socket of its own (one HTTP/2 stream of a connection) does when its
// client deadline passes: the ticker calls it instead of cancelling a socket.
class deadline_listener {
public:
    virtual void deadline_passed() = 0;

protected:
    ~deadline_listener() = default;
};

// What waits on an HTTP/2 backend's stream for a client that may leave (an HTTP/2 client's
// RST_STREAM, a gRPC client's cancel or deadline): told at once, it resets the backend's
// stream, so a model server stops working on an answer nobody will read.
class client_gone_listener {
public:
    virtual void client_gone() = 0;

protected:
    ~client_gone_listener() = default;
};

struct session_slot : wheel_entry {
    stream_type* stream = nullptr;
    deadline_listener* on_deadline = nullptr;  // an HTTP/2 stream's (its stream is null)
    client_gone_listener* on_client_gone = nullptr;  // while an HTTP/2 backend call runs
    bool client_gone = false;                        // the client reset its stream
    stream_type* upstream = nullptr;  // while connecting or exchanging
    clock::time_point deadline = clock::time_point::max();
    clock::time_point upstream_deadline = clock::time_point::max();
    bool timed_out = false;           // the ticker cancelled the client side
    bool upstream_timed_out = false;  // the ticker closed the upstream side
    bool idle = false;                // waiting for the first byte of the next request
    session_slot* prev = nullptr;
    session_slot* next = nullptr;
    deadline_wheel* wheel = nullptr;  // the worker's, while linked

    void expire_in(std::chrono::milliseconds d) {
        deadline = coarse_now() + d;
        timed_out = false;
        if (wheel) {
            wheel->schedule(*this, deadline);
        }
    }
    void no_deadline() { deadline = clock::time_point::max(); }
    void upstream_expire_at(clock::time_point t) {
        upstream_deadline = t;
        upstream_timed_out = false;
        if (wheel) {
            wheel->schedule(*this, t);
        }
    }
};

struct upstream_connection;

// What the wait armed on an idle pooled connection shares with that connection. The wait's
// handler may run after the connection was taken for a request or closed, so it reaches the
// connection only through this, which lives until both are done with it (a plain count: one
// thread).
struct idle_watch : boost::intrusive_ref_counter<idle_watch, boost::thread_unsafe_counter> {
    upstream_connection* connection = nullptr;  // null once the connection is closed
};

struct upstream_connection {
    std::optional<stream_type> plain;
    std::optional<tls_stream_type> secure;
    std::shared_ptr<net::ssl::context> tls_context;  // outlives `secure`
    beast::flat_buffer buffer;
    std::uint32_t endpoint_id = 0;
    clock::time_point idle_since;
    boost::intrusive_ptr<idle_watch> watch;  // made the first time it goes idle
    bool watched = false;                     // its wait is armed

    stream_type& lowest() { return plain ? *plain : secure->next_layer(); }
    ~upstream_connection();
};

// Relay buffers are lent per response, so idle connections hold none. Answers known to be
// larger than the small size get a large one: a quarter of the recv/sendmsg calls, while the
// many small answers in flight at once keep the memory of small buffers.
inline constexpr std::size_t relay_buffer_size = 16 * 1024;
inline constexpr std::size_t large_relay_buffer_size = 64 * 1024;
using relay_buffer = std::unique_ptr<char[]>;

// no_healthy_upstream: the version has no endpoint at all (ejected ones are still tried).
// h2_not_negotiated: an "h2" version's TLS handshake succeeded, but the backend did not select
// HTTP/2 by ALPN (it speaks HTTP/1.1 only, or ignores ALPN): a connect failure of its own.
enum class acquire_status {
    ok,
    no_healthy_upstream,
    connect_failed,
    connect_timeout,
    h2_not_negotiated
};

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
    // Ejected endpoints are skipped, unless every endpoint of the version is ejected: then all
    // of them are tried (panic mode, as Envoy's panic threshold) rather than none.
    // `first`: the index of the endpoint to try first (HTTP/2 backends keep their own turn),
    // else the version's round-robin turn.
    task<acquired> acquire(const routing::model_route& model,
                           const routing::version_route& version, session_slot& slot,
                           std::optional<std::size_t> first = std::nullopt);
    // acquire()'s common case without a coroutine frame: the endpoint whose turn it is has an
    // idle connection. Empty when acquire() has to run (it connects, or reports the failure).
    std::optional<acquired> try_idle(const routing::version_route& version);
    // Returns a connection whose last exchange ended cleanly.
    void release(std::unique_ptr<upstream_connection> connection);
    // Closes the endpoint's idle connections (one of them turned out dead when used).
    void forget_idle(std::uint32_t endpoint_id);

    void start();  // the idle sweeper
    void stop();   // closes every idle connection, stops the sweeper


    // Connections lent out for an exchange, per endpoint (for the gauges).
    void lend(std::uint32_t endpoint_id, int delta);
    void gauges(std::vector<worker::endpoint_connections>& out) const;

    relay_buffer borrow_buffer(bool large);
    void return_buffer(relay_buffer b, bool large);
    // Relay buffers borrowed and not yet returned: those holding bytes on their way to a
    // client right now (an open stream between two events holds none).
    std::size_t relay_buffers_lent() const { return buffers_lent_; }

private:
    struct endpoint_state {
        std::vector<std::unique_ptr<upstream_connection>> idle;  // back = most recent
        std::uint32_t consecutive_failures = 0;
        clock::time_point ejected_until{};
        std::uint32_t round_robin = 0;  // used when this is a version's first endpoint
        std::uint32_t active = 0;       // lent out right now
        // Until then, answers from this endpoint are not pooled: one of its idle connections
        // received bytes after an answer had ended (see stray_bytes_from).
        clock::time_point no_reuse_until{};
    };

    endpoint_state& state(std::uint32_t id) {  // on every request: inline
        if (id >= endpoints_.size()) {
            endpoints_.resize(id + 1);
        }
        return endpoints_[id];
    }
    std::unique_ptr<upstream_connection> take_idle(endpoint_state& s, clock::time_point now);
    task<boost::system::error_code> connect(upstream_connection& c,
                                            const routing::upstream_endpoint& ep,
                                            const routing::version_route& version,
                                            std::chrono::milliseconds timeout,
                                            session_slot& slot);
    // Whether an endpoint of `version` other than `except` is in service (not ejected).
    bool in_service_besides(const routing::version_route& version, std::uint32_t except,
                            clock::time_point now) const;
    void record_failure(std::uint32_t id, const routing::version_route& version,
                        const config::passive_health& health, clock::time_point now);
    task<void> sweep();
    // Arms the wait that watches an idle connection, and judges what woke it.
    void watch_idle(upstream_connection& c);
    // How long a connection sits idle before its wait is armed, where the take's peek covers
    // the time before (see the header comment).
    static constexpr auto watch_after = std::chrono::seconds(1);
    void idle_readable(idle_watch& w, const boost::system::error_code& ec);
    // An idle connection of this endpoint received bytes after an answer had ended.
    void stray_bytes_from(endpoint_state& s);

    net::io_context& io_;
    config::upstream_pool cfg_;
    worker_counters& counters_;
    std::vector<endpoint_state> endpoints_;
    std::vector<relay_buffer> spare_buffers_;        // relay_buffer_size each
    std::vector<relay_buffer> spare_large_buffers_;  // large_relay_buffer_size each
    std::size_t buffers_lent_ = 0;
    net::basic_waitable_timer<clock, net::wait_traits<clock>, executor_type> sweep_timer_;
    bool stopped_ = false;
};

}  // namespace stagegate::proxy
