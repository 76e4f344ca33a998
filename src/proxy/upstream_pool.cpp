#include "upstream_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace stagegate::proxy {

namespace {

// What a pooled connection holds for us, without taking it: > 0 bytes, 0 a FIN, < 0 with
// EAGAIN nothing (the only state in which it may carry a request).
template <class Socket>
ssize_t peek_one(Socket& socket) {
    char byte;
    return ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
}
bool nothing_to_read(ssize_t peeked) {
    return peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

constexpr std::uint32_t no_endpoint = UINT32_MAX;

// What an HTTP/2-over-TLS backend's handshake settled on by ALPN, when it is not "h2": why the
// connection cannot carry HTTP/2, for the error message. Empty when it is h2.
std::string alpn_refusal(tls_stream_type& secure) {
    const unsigned char* name = nullptr;
    unsigned int size = 0;
    SSL_get0_alpn_selected(secure.native_handle(), &name, &size);
    const std::string_view chosen(reinterpret_cast<const char*>(name), name ? size : 0);
    if (chosen == "h2") {
        return {};
    }
    return "the backend did not select HTTP/2 by ALPN in the TLS handshake (" +
           (chosen.empty() ? std::string("it selected no protocol")
                           : "it selected \"" + std::string(chosen) + "\"") +
           "): \"protocol\": \"h2\" needs a backend serving HTTP/2 over TLS";
}

// How long an endpoint that wrote bytes after an answer gets no pooled connections: a connect
// per request to it instead of answers mixed between clients.
constexpr auto stray_bytes_no_reuse = std::chrono::seconds(30);
}  // namespace

upstream_connection::~upstream_connection() {
    if (watch) {
        watch->connection = nullptr;
    }
    boost::system::error_code ec;
    lowest().close(ec);
}

upstream_pool::upstream_pool(net::io_context& io, const config::upstream_pool& cfg,
                             worker_counters& c)
    : io_(io), cfg_(cfg), counters_(c), sweep_timer_(io.get_executor()) {}

upstream_pool::~upstream_pool() = default;

std::unique_ptr<upstream_connection> upstream_pool::take_idle(endpoint_state& s,
                                                              clock::time_point now) {
    while (!s.idle.empty()) {
        auto c = std::move(s.idle.back());
        s.idle.pop_back();
        // Its watch ends here: from now on what arrives is this request's answer.
        if (c->watched) {
            boost::system::error_code ignored;
            c->lowest().cancel(ignored);
            c->watched = false;
        }
        if (now - c->idle_since >= cfg_.idle_timeout) {
            continue;
        }
        if (!cfg_.check_idle) {
            return c;
        }
        // The peek (check_idle): what came in this same turn of the event loop, which the
        // watch has not reported yet.
        const ssize_t peeked = peek_one(c->lowest());
        if (nothing_to_read(peeked)) {
            return c;
        }
        if (peeked > 0 && !c->secure) {
            stray_bytes_from(s);
            return nullptr;
        }
    }
    return nullptr;
}

bool upstream_pool::in_service_besides(const routing::version_route& version, std::uint32_t except,
                                       clock::time_point now) const {
    for (const auto& ep : version.endpoints) {
        // No state yet: the endpoint has never failed on this worker.
        if (ep.id != except &&
            (ep.id >= endpoints_.size() || endpoints_[ep.id].ejected_until <= now)) {
            return true;
        }
    }
    return false;
}

void upstream_pool::record_failure(std::uint32_t id, const routing::version_route& version,
                                   const config::passive_health& health, clock::time_point now) {
    auto& s = state(id);
    ++s.consecutive_failures;
    bump(counters_.upstream_connect_failures);
    if (health.max_fails == 0 || s.consecutive_failures < health.max_fails) {
        return;
    }
    // Pooled connections to a failing endpoint are not trusted either.
    s.idle.clear();
    // The version's last endpoint in service stays in service (nginx ignores max_fails for a
    // group of one server): ejecting it would answer 503 to everything for fail_timeout, where
    // a fresh connect per request gets 502 while it is down and 200 as soon as it is back.
    if (in_service_besides(version, id, now)) {
        s.ejected_until = now + health.fail_timeout;
    }
}

task<boost::system::error_code> upstream_pool::connect(
    upstream_connection& c, const routing::upstream_endpoint& ep,
    const routing::version_route& version, std::chrono::milliseconds timeout,
    session_slot& slot) {
    if (version.tls) {
        c.tls_context = version.tls;
        c.secure.emplace(io_.get_executor(), *c.tls_context);
    } else {
        c.plain.emplace(io_.get_executor());
    }
    c.endpoint_id = ep.id;
    auto& lowest = c.lowest();
    slot.upstream = &lowest;
    slot.upstream_expire_at(coarse_now() + timeout);
    auto [ec] = co_await lowest.async_connect(ep.address, nothrow_awaitable);
    if (slot.upstream_timed_out) {
        co_return beast::error::timeout;
    }
    if (ec) {
        co_return ec;
    }
    lowest.set_option(tcp::no_delay(true), ec);
    if (c.secure) {
        const std::string& name = version.tls_server_name;
        if (!SSL_set_tlsext_host_name(c.secure->native_handle(), name.c_str())) {
            co_return boost::system::error_code(static_cast<int>(::ERR_get_error()),
                                                net::error::get_ssl_category());
        }
        if (version.tls_verify) {
            c.secure->set_verify_callback(net::ssl::host_name_verification(name));
        }
        auto [hec] = co_await c.secure->async_handshake(net::ssl::stream_base::client,
                                                        nothrow_awaitable);
        if (slot.upstream_timed_out) {
            co_return beast::error::timeout;
        }
        if (hec) {
            co_return hec;
        }
    }
    co_return boost::system::error_code{};
}

task<acquired> upstream_pool::acquire(const routing::model_route& model,
                                      const routing::version_route& version,
                                      session_slot& slot, std::optional<std::size_t> first_index) {
    acquired out;
    const auto& eps = version.endpoints;
    if (eps.empty()) {
        out.status = acquire_status::no_healthy_upstream;
        out.detail = "version " + version.name + " has no endpoints";
        co_return out;
    }
    auto& first = state(eps.front().id);
    const std::uint32_t start =
        first_index ? static_cast<std::uint32_t>(*first_index) : first.round_robin++;
    // Every endpoint ejected (record_failure never ejects a version's last one, but an endpoint
    // shared with another version, or a reload that dropped the healthy ones, can leave none):
    // try them all rather than answer 503.
    const bool panic = !in_service_besides(version, no_endpoint, coarse_now());
    for (std::size_t k = 0; k < eps.size(); ++k) {
        const auto& ep = eps[(start + k) % eps.size()];
        auto& s = state(ep.id);
        auto now = coarse_now();
        if (s.ejected_until > now && !panic) {
            continue;
        }
        if (auto c = take_idle(s, now)) {
            out.status = acquire_status::ok;
            out.connection = std::move(c);
            out.endpoint = &ep;
            out.reused = true;
            co_return out;
        }
        auto c = std::make_unique<upstream_connection>();
        bump(counters_.upstream_connects);
        auto ec = co_await connect(*c, ep, version, model.timeouts.connect, slot);
        slot.upstream = nullptr;
        slot.upstream_expire_at(clock::time_point::max());
        if (!ec && version.http2 && c->secure) {
            if (auto refusal = alpn_refusal(*c->secure); !refusal.empty()) {
                // Unusable for this version: the endpoint's connect failure (passive health),
                // and the next endpoint is tried, which may serve h2.
                record_failure(ep.id, version, model.health, coarse_now());
                out.status = acquire_status::h2_not_negotiated;
                out.detail = "connect to " + ep.authority + " failed: " + refusal;
                continue;
            }
        }
        if (!ec) {
            auto& healthy = state(ep.id);
            healthy.consecutive_failures = 0;
            healthy.ejected_until = {};  // it answered (in panic mode, while ejected)
            out.status = acquire_status::ok;
            out.connection = std::move(c);
            out.endpoint = &ep;
            co_return out;
        }
        // endpoints_ may have grown while we waited: record_failure looks the state up again.
        record_failure(ep.id, version, model.health, coarse_now());
        bool timed_out = ec == beast::error::timeout;
        out.status = timed_out ? acquire_status::connect_timeout : acquire_status::connect_failed;
        out.detail = "connect to " + ep.authority + " failed: " +
                     (timed_out ? std::string("timed out") : ec.message());
    }
    co_return out;
}

std::optional<acquired> upstream_pool::try_idle(const routing::version_route& version) {
    const auto& eps = version.endpoints;
    if (eps.empty()) {
        return std::nullopt;
    }
    const std::uint32_t start = state(eps.front().id).round_robin;
    const auto now = coarse_now();
    for (std::size_t k = 0; k < eps.size(); ++k) {
        const auto& ep = eps[(start + k) % eps.size()];
        auto& s = state(ep.id);
        if (s.ejected_until > now) {
            continue;
        }
        auto c = take_idle(s, now);
        if (!c) {
            return std::nullopt;  // acquire() connects to this endpoint
        }
        ++state(eps.front().id).round_robin;  // (state() may have grown endpoints_)
        acquired out;
        out.status = acquire_status::ok;
        out.connection = std::move(c);
        out.endpoint = &ep;
        out.reused = true;
        return out;
    }
    return std::nullopt;
}

void upstream_pool::forget_idle(std::uint32_t endpoint_id) { state(endpoint_id).idle.clear(); }

void upstream_pool::release(std::unique_ptr<upstream_connection> connection) {
    if (stopped_ || cfg_.max_idle_per_endpoint == 0) {
        return;
    }
    auto& s = state(connection->endpoint_id);
    if (s.no_reuse_until > clock::time_point{}) {
        if (coarse_now() < s.no_reuse_until) {
            return;  // closed: this endpoint wrote bytes after an answer not long ago
        }
        s.no_reuse_until = {};
    }
    if (s.idle.size() >= cfg_.max_idle_per_endpoint) {
        s.idle.erase(s.idle.begin());  // drop the oldest
    }
    if (connection->buffer.capacity() > 4096) {
        connection->buffer.shrink_to_fit();  // a large body grew it; idle connections stay small
    }
    connection->idle_since = coarse_now();
    if (!cfg_.check_idle) {
        watch_idle(*connection);  // no peek at the take: the wait is the only guard
    }
    s.idle.push_back(std::move(connection));
}

void upstream_pool::watch_idle(upstream_connection& c) {
    if (!c.watch) {
        c.watch = new idle_watch;
        c.watch->connection = &c;
    }
    // A wait, not a peeking read: Asio arms it with one epoll_ctl (EPOLL_CTL_MOD), which also
    // reports bytes that came before it was armed (a read would cost a recv, EAGAIN, each time
    // instead).
    c.watched = true;
    c.lowest().async_wait(tcp::socket::wait_read,
                          [this, w = c.watch](const boost::system::error_code& ec) {
                              idle_readable(*w, ec);
                          });
}

void upstream_pool::idle_readable(idle_watch& w, const boost::system::error_code& ec) {
    upstream_connection* c = w.connection;
    if (c == nullptr || ec == net::error::operation_aborted) {
        return;  // closed, or taken for a request (take_idle cancels the wait) before it fired
    }
    c->watched = false;
    auto& s = state(c->endpoint_id);
    const bool idle = std::any_of(s.idle.begin(), s.idle.end(),
                                  [&](const auto& other) { return other.get() == c; });
    if (!idle) {
        // Taken for a request in the same turn of the event loop as this fired. With
        // check_idle its peek saw nothing there; without it, what came lies ahead of the
        // request's answer: closed, the request fails with a 502 rather than relay it.
        if (!cfg_.check_idle) {
            boost::system::error_code ignored;
            c->lowest().close(ignored);
        }
        return;
    }
    const ssize_t peeked = peek_one(c->lowest());
    if (!ec && nothing_to_read(peeked)) {
        watch_idle(*c);  // nothing: an event left from the answer's last read, seen only now
        return;
    }
    // A byte, a FIN or a reset while the connection sat idle. Nothing may follow an answer:
    // such bytes could only be read as the next request's answer.
    if (peeked > 0 && !c->secure) {
        stray_bytes_from(s);  // closes c among the others
        return;
    }
    std::erase_if(s.idle, [&](const auto& other) { return other.get() == c; });
}

void upstream_pool::stray_bytes_from(endpoint_state& s) {
    // This backend's answers do not end where they say: its other idle connections may hold
    // the same, and its next answers' connections are closed, not pooled, for a while. (Over
    // TLS, bytes may be the close_notify a server sends before its FIN: callers skip those.)
    s.no_reuse_until = coarse_now() + stray_bytes_no_reuse;
    s.idle.clear();
}

void upstream_pool::start() {
    net::co_spawn(io_.get_executor(), sweep(), net::detached);
}

void upstream_pool::stop() {
    stopped_ = true;
    sweep_timer_.cancel();
    for (auto& s : endpoints_) {
        s.idle.clear();
    }
}

void upstream_pool::lend(std::uint32_t endpoint_id, int delta) {
    auto& s = state(endpoint_id);
    s.active = static_cast<std::uint32_t>(static_cast<int>(s.active) + delta);
}

void upstream_pool::gauges(std::vector<worker::endpoint_connections>& out) const {
    for (std::uint32_t id = 0; id < endpoints_.size(); ++id) {
        const auto& s = endpoints_[id];
        if (!s.idle.empty() || s.active > 0) {
            out.push_back({id, static_cast<std::uint32_t>(s.idle.size()), s.active});
        }
    }
}

relay_buffer upstream_pool::borrow_buffer(bool large) {
    auto& spare = large ? spare_large_buffers_ : spare_buffers_;
    ++buffers_lent_;
    if (spare.empty()) {  // not zeroed: it is written first
        return relay_buffer(new char[large ? large_relay_buffer_size : relay_buffer_size]);
    }
    auto b = std::move(spare.back());
    spare.pop_back();
    return b;
}

void upstream_pool::return_buffer(relay_buffer b, bool large) {
    auto& spare = large ? spare_large_buffers_ : spare_buffers_;
    --buffers_lent_;
    if (spare.size() < (large ? 16u : 64u)) {
        spare.push_back(std::move(b));
    }
}

task<void> upstream_pool::sweep() {
    while (!stopped_) {
        sweep_timer_.expires_after(std::chrono::seconds(1));
        [[maybe_unused]] auto [ec] = co_await sweep_timer_.async_wait(nothrow_awaitable);
        if (stopped_) {
            break;
        }
        auto now = coarse_now();
        for (auto& s : endpoints_) {
            std::erase_if(s.idle, [&](const auto& c) {
                // (one the backend closed is gone already: its watch saw the FIN)
                return now - c->idle_since >= cfg_.idle_timeout;
            });
            for (auto& c : s.idle) {
                if (!c->watched && now - c->idle_since >= watch_after) {
                    watch_idle(*c);
                }
            }
        }
    }
}

}  // namespace stagegate::proxy
