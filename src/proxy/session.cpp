// Downstream sessions: read a request, route it, forward it upstream, stream the answer back.
// One coroutine per client connection, on the worker's thread; nothing here blocks or throws.
#include "http_util.hpp"
#include "upstream_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <cstdio>
#include <random>

namespace stagegate::proxy {

namespace http = beast::http;

struct session_slot {
    beast::tcp_stream* stream = nullptr;
    beast::tcp_stream* upstream = nullptr;  // while an exchange is in progress
    bool idle = false;  // waiting for the first byte of the next request
    session_slot* prev = nullptr;
    session_slot* next = nullptr;
};

namespace {

constexpr auto nothrow_awaitable = net::as_tuple(net::use_awaitable);
constexpr std::size_t relay_buffer_size = 16 * 1024;
constexpr std::string_view version_header = "X-Stagegate-Version";
constexpr std::string_view stage_header = "X-Stagegate-Stage";
constexpr std::string_view force_header = "X-Stagegate-Force-Version";
constexpr std::string_view request_id_header = "X-Request-Id";

using request_t = http::request<http::string_body>;

template <class Stream>
beast::tcp_stream& lowest_of(Stream& s) {
    return beast::get_lowest_layer(s);
}

// Registers a session with its worker for the session's lifetime (drain finds idle ones).
class slot_guard {
public:
    slot_guard(worker& w, beast::tcp_stream& stream) : w_(w) {
        slot_.stream = &stream;
        w_.link(slot_);
    }
    ~slot_guard() { w_.unlink(slot_); }
    session_slot& slot() { return slot_; }

private:
    worker& w_;
    session_slot slot_;
};

std::string make_request_id(worker& w) {
    std::uint64_t a = w.next_random();
    std::uint64_t b = w.next_random();
    // UUID version 4 layout.
    a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
    b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
    char out[37];
    std::snprintf(out, sizeof out, "%08x-%04x-%04x-%04x-%012llx",
                  static_cast<unsigned>(a >> 32), static_cast<unsigned>((a >> 16) & 0xffff),
                  static_cast<unsigned>(a & 0xffff), static_cast<unsigned>(b >> 48),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    return std::string(out, 36);
}

// Per-request facts shared by the routing and forwarding steps.
struct request_context {
    std::string request_id;
    bool keep_alive = true;
    unsigned client_version = 11;
    bool head = false;
};

// What routing decided, or the error to answer with.
struct route_decision {
    const routing::model_route* model = nullptr;
    std::uint32_t version = routing::no_version;
    http::status error_status = http::status::ok;
    std::string error_code;
    std::string error_message;
};

route_decision route_request(worker& w, const routing::route_snapshot& routes,
                             const request_t& req) {
    route_decision d;
    auto match = routing::match_path(routes, req.target());
    switch (match.outcome) {
        case routing::match_outcome::model:
            d.model = match.model;
            break;
        case routing::match_outcome::unknown_model:
            d.error_status = http::status::not_found;
            d.error_code = "unknown_model";
            d.error_message = "no model named \"" + std::string(match.name) + "\" is served here";
            return d;
        case routing::match_outcome::no_route:
            d.error_status = http::status::not_found;
            d.error_code = "no_route";
            d.error_message = "no model route matches " + std::string(req.target());
            return d;
        case routing::match_outcome::needs_body: {
            auto name = routing::body_model_field(req.body());
            if (!name) {
                d.error_status = http::status::bad_request;
                d.error_code = "missing_model";
                d.error_message = "the JSON body needs a string field \"model\"";
                return d;
            }
            d.model = routing::match_body_model(routes, *name);
            if (!d.model) {
                d.error_status = http::status::not_found;
                d.error_code = "unknown_model";
                d.error_message = "no model named \"" + *name + "\" is served here";
                return d;
            }
            break;
        }
    }
    const auto& m = *d.model;
    if (m.allow_force_version) {
        auto forced = req.find(force_header);
        if (forced != req.end()) {
            d.version = m.find_version(forced->value());
            if (d.version == routing::no_version) {
                d.error_status = http::status::bad_request;
                d.error_code = "unknown_version";
                d.error_message = "model " + m.name + " has no version \"" +
                                  std::string(forced->value()) + "\"";
            }
            return d;
        }
    }
    std::string_view key;
    if (!m.sticky_header.empty()) {
        auto it = req.find(m.sticky_header);
        if (it != req.end()) {
            key = it->value();
        }
    }
    if (key.empty() && !m.sticky_cookie.empty()) {
        for (auto it = req.find(http::field::cookie);
             it != req.end() && it->name() == http::field::cookie && key.empty(); ++it) {
            key = routing::find_cookie(it->value(), m.sticky_cookie);
        }
    }
    std::uint32_t point = key.empty()
                              ? routing::point_from_u64(w.next_random())
                              : routing::point_from_u64(routing::sticky_hash(key, m.hash_salt));
    d.version = routing::pick_version(m, point);
    return d;
}

template <class Stream>
net::awaitable<bool> send_error(Stream& stream, worker& w, const request_context& rc,
                                http::status status, std::string_view code,
                                std::string_view message) {
    bump(w.counters().error_replies);
    auto res = error_response(status, code, message, rc.request_id, rc.keep_alive,
                              rc.client_version);
    if (rc.head) {
        res.body().clear();
    }
    lowest_of(stream).expires_after(w.config().client.request);
    auto [ec, n] = co_await http::async_write(stream, res, nothrow_awaitable);
    co_return !ec && rc.keep_alive;
}

// Adds the proxy's headers to the request going upstream.
void prepare_upstream_request(request_t& req, const request_context& rc,
                              std::string_view client_address, bool client_tls) {
    strip_hop_by_hop(req);
    req.erase(http::field::expect);
    req.erase(force_header);
    append_forwarded_for(req, client_address);
    req.set("X-Forwarded-Proto", client_tls ? "https" : "http");
    auto via = req.find(http::field::via);
    std::string via_value = via == req.end() ? std::string() : std::string(via->value()) + ", ";
    via_value += rc.client_version == 10 ? "1.0 stagegate" : "1.1 stagegate";
    req.set(http::field::via, via_value);
    req.set(request_id_header, rc.request_id);
    req.version(11);
    req.keep_alive(true);
    req.prepare_payload();  // re-frames a chunked request with its now-known length
}

enum class exchange_result {
    done_keep_alive,  // response fully relayed, the client connection may continue
    done_close,       // response relayed (or error sent), close the client connection
    failed_before_response,  // nothing sent to the client yet: `status`/`code` say why
};

struct exchange_outcome {
    exchange_result result = exchange_result::done_close;
    http::status status = http::status::bad_gateway;
    std::string code;
    std::string message;
};

// Writes the request upstream and streams the response back. `conn` is returned to the pool
// only when the exchange ended cleanly on both sides.
template <class Down, class Up>
net::awaitable<exchange_outcome> exchange(Down& down, Up& up,
                                          std::unique_ptr<upstream_connection>& conn,
                                          request_t& req, const request_context& rc, worker& w,
                                          const routing::model_route& model,
                                          const routing::version_route& version,
                                          const routing::upstream_endpoint& endpoint) {
    exchange_outcome out;
    auto& up_lowest = conn->lowest();
    const auto started = clock::now();
    const auto total_deadline = started + model.timeouts.total;
    const auto first_byte_deadline = std::min(started + model.timeouts.first_byte, total_deadline);
    auto fail = [&](const boost::system::error_code& ec, std::string_view what) {
        const bool timeout = ec == beast::error::timeout;
        const bool reset = ec == http::error::end_of_stream || ec == net::error::eof ||
                           ec == net::error::connection_reset || ec == net::error::broken_pipe;
        out.result = exchange_result::failed_before_response;
        out.status = timeout ? http::status::gateway_timeout : http::status::bad_gateway;
        out.code = timeout ? "upstream_timeout" : reset ? "upstream_reset" : "upstream_protocol_error";
        out.message = std::string(what) + " version " + version.name + " at " + endpoint.authority +
                      ": " + (timeout ? std::string("timed out") : ec.message());
        return out;
    };

    up_lowest.expires_at(first_byte_deadline);
    {
        auto [ec, n] = co_await http::async_write(up, req, nothrow_awaitable);
        if (ec) {
            co_return fail(ec, "sending the request to");
        }
    }

    std::optional<http::response_parser<http::buffer_body>> parser;
    for (;;) {
        parser.emplace();
        parser->body_limit(boost::none);
        parser->header_limit(64 * 1024);
        if (rc.head) {
            parser->skip(true);
        }
        auto [ec, n] = co_await http::async_read_header(up, conn->buffer, *parser,
                                                        nothrow_awaitable);
        if (ec) {
            co_return fail(ec, "reading the response header from");
        }
        int status = parser->get().result_int();
        if (status < 100 || status >= 200 || status == 101) {
            break;  // 1xx interim answers are consumed here; we never send Expect upstream
        }
    }
    auto& res = parser->get();
    const bool upstream_keep_alive = res.keep_alive();
    strip_hop_by_hop(res);
    res.version(11);
    res.set(version_header, version.name);
    res.set(stage_header, model.stage);
    res.set(request_id_header, rc.request_id);
    bool keep_alive = rc.keep_alive && !w.draining();
    const bool has_body = !rc.head && res.result_int() != 204 && res.result_int() != 304;
    if (has_body && !res.chunked() && !res.has_content_length()) {
        // Close-delimited upstream body: chunk it for HTTP/1.1 clients, close for 1.0.
        if (rc.client_version >= 11) {
            res.chunked(true);
        } else {
            keep_alive = false;
        }
    }
    if (rc.client_version < 11 && res.chunked()) {
        res.chunked(false);
        keep_alive = false;
    }
    res.keep_alive(keep_alive);
    res.version(rc.client_version);

    // Borrow a relay buffer only for the life of this response: idle connections hold none.
    auto buffer = std::make_unique<std::array<char, relay_buffer_size>>();
    http::response_serializer<http::buffer_body> serializer{res};
    bool wrote_any = false;
    auto& down_lowest = lowest_of(down);
    for (;;) {
        if (!parser->is_done()) {
            up_lowest.expires_at(total_deadline);
            res.body().data = buffer->data();
            res.body().size = buffer->size();
            auto [ec, n] = co_await http::async_read(up, conn->buffer, *parser, nothrow_awaitable);
            if (ec == http::error::need_buffer) {
                ec = {};
            }
            if (ec) {
                if (!wrote_any) {
                    co_return fail(ec, "reading the response body from");
                }
                out.result = exchange_result::done_close;  // the client sees a truncated body
                co_return out;
            }
            res.body().size = buffer->size() - res.body().size;
            res.body().data = buffer->data();
            res.body().more = !parser->is_done();
        } else {
            res.body().data = nullptr;
            res.body().size = 0;
            res.body().more = false;
        }
        down_lowest.expires_after(w.config().client.request);
        auto [ec, n] = co_await http::async_write(down, serializer, nothrow_awaitable);
        if (ec == http::error::need_buffer) {
            ec = {};
        }
        if (ec) {
            out.result = exchange_result::done_close;  // client went away; upstream is dirty
            co_return out;
        }
        wrote_any = true;
        if (serializer.is_done()) {
            break;
        }
    }
    if (parser->is_done() && upstream_keep_alive && !parser->need_eof() &&
        conn->buffer.size() == 0) {
        w.pool().release(std::move(conn));
    }
    out.result = keep_alive ? exchange_result::done_keep_alive : exchange_result::done_close;
    co_return out;
}

// Routes and forwards one fully read request. Returns whether the client connection stays.
template <class Stream>
net::awaitable<bool> handle_request(Stream& stream, worker& w, session_slot& slot,
                                    request_t& req, request_context& rc,
                                    const std::string& client_address, bool client_tls) {
    bump(w.counters().requests);
    auto routes = w.routes();  // keeps this snapshot alive for the whole exchange
    if (!routes) {
        co_return co_await send_error(stream, w, rc, http::status::service_unavailable,
                                      "not_ready", "no routes are loaded yet");
    }
    auto decision = route_request(w, *routes, req);
    if (decision.error_status != http::status::ok) {
        co_return co_await send_error(stream, w, rc, decision.error_status, decision.error_code,
                                      decision.error_message);
    }
    const auto& model = *decision.model;
    const auto& version = model.versions[decision.version];
    auto got = co_await w.pool().acquire(model, version);
    if (got.status != acquire_status::ok) {
        bool no_healthy = got.status == acquire_status::no_healthy_upstream;
        co_return co_await send_error(
            stream, w, rc,
            no_healthy ? http::status::service_unavailable : http::status::bad_gateway,
            no_healthy ? "no_healthy_upstream" : "upstream_connect_failed",
            "model " + model.name + " version " + version.name + ": " + got.detail);
    }
    prepare_upstream_request(req, rc, client_address, client_tls);
    exchange_outcome out;
    slot.upstream = &got.connection->lowest();
    if (got.connection->secure) {
        out = co_await exchange(stream, *got.connection->secure, got.connection, req, rc, w, model,
                                version, *got.endpoint);
    } else {
        out = co_await exchange(stream, *got.connection->plain, got.connection, req, rc, w, model,
                                version, *got.endpoint);
    }
    slot.upstream = nullptr;
    if (out.result == exchange_result::failed_before_response) {
        co_return co_await send_error(stream, w, rc, out.status, out.code,
                                      "model " + model.name + ": " + out.message);
    }
    co_return out.result == exchange_result::done_keep_alive;
}

template <class Stream>
net::awaitable<void> close_gracefully(Stream& stream) {
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
        lowest_of(stream).expires_after(std::chrono::seconds(2));
        auto [ec] = co_await stream.async_shutdown(nothrow_awaitable);
    }
    boost::system::error_code ec;
    lowest_of(stream).socket().shutdown(tcp::socket::shutdown_send, ec);
}

template <class Stream>
net::awaitable<void> run_session(Stream stream, worker& w, std::string client_address) {
    constexpr bool tls = std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>;
    auto& lowest = lowest_of(stream);
    slot_guard guard(w, lowest);
    auto& slot = guard.slot();
    const auto& cfg = w.config();

    if constexpr (tls) {
        lowest.expires_after(cfg.client.request);
        auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server,
                                                    nothrow_awaitable);
        if (ec) {
            co_return;
        }
    }

    beast::flat_buffer buffer;
    std::optional<http::request_parser<http::string_body>> parser;
    for (;;) {
        slot.idle = buffer.size() == 0;
        if (slot.idle && w.draining()) {
            break;
        }
        parser.emplace();
        parser->header_limit(cfg.limits.max_header_bytes);
        parser->body_limit(cfg.limits.max_request_body_bytes);
        lowest.expires_after(slot.idle ? cfg.client.idle : cfg.client.request);
        request_context rc;
        {
            auto [ec, n] = co_await http::async_read_header(stream, buffer, *parser,
                                                            nothrow_awaitable);
            slot.idle = false;
            if (ec) {
                bool got_bytes = buffer.size() > 0 || n > 0;
                if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
                    ec == net::error::connection_reset || (!got_bytes && ec == beast::error::timeout)) {
                    break;
                }
                rc.keep_alive = false;
                rc.request_id = make_request_id(w);
                if (ec == beast::error::timeout) {
                    co_await send_error(stream, w, rc, http::status::request_timeout,
                                        "request_timeout", "the request was not received in time");
                    break;
                }
                auto why = classify_request_error(ec);
                co_await send_error(stream, w, rc, why.status, why.code,
                                    "cannot read the request: " + ec.message());
                break;
            }
        }
        auto& req = parser->get();
        rc.client_version = req.version() == 10 ? 10 : 11;
        rc.head = req.method() == http::verb::head;
        auto rid = req.find(request_id_header);
        rc.request_id = rid != req.end() && acceptable_request_id(rid->value())
                            ? std::string(rid->value())
                            : make_request_id(w);
        rc.keep_alive = req.keep_alive() && !w.draining();
        if (!parser->is_done()) {
            auto expect = req.find(http::field::expect);
            if (expect != req.end() && beast::iequals(expect->value(), "100-continue")) {
                static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
                auto [ec, n] = co_await net::async_write(
                    stream, net::buffer(cont.data(), cont.size()), nothrow_awaitable);
                if (ec) {
                    break;
                }
            }
            lowest.expires_after(cfg.client.request);
            auto [ec, n] = co_await http::async_read(stream, buffer, *parser, nothrow_awaitable);
            if (ec) {
                if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
                    ec == net::error::operation_aborted) {
                    break;
                }
                rc.keep_alive = false;
                if (ec == beast::error::timeout) {
                    co_await send_error(stream, w, rc, http::status::request_timeout,
                                        "request_timeout", "the request body was not received in time");
                    break;
                }
                auto why = classify_request_error(ec);
                co_await send_error(stream, w, rc, why.status, why.code,
                                    "cannot read the request body: " + ec.message());
                break;
            }
        }
        lowest.expires_never();
        bool keep = co_await handle_request(stream, w, slot, req, rc, client_address, tls);
        parser.reset();
        if (!keep || w.draining()) {
            break;
        }
        if (buffer.size() == 0 && buffer.capacity() > 8192) {
            buffer.shrink_to_fit();  // keep idle keep-alive connections small
        }
    }
    co_await close_gracefully(stream);
}

// Answers 503 and closes: the worker is at its connection limit.
net::awaitable<void> shed(beast::tcp_stream stream, worker& w) {
    request_context rc;
    rc.keep_alive = false;
    co_await send_error(stream, w, rc, http::status::service_unavailable, "overloaded",
                        "too many connections; retry later");
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace

// --- worker ---------------------------------------------------------------------------------

worker::worker(net::io_context& io, settings s, std::uint32_t index)
    : io_(io), settings_(std::move(s)), index_(index) {
    pool_ = std::make_unique<upstream_pool>(io_, settings_.pool, counters_);
    std::uint64_t seed = std::random_device{}() ^ (std::uint64_t{index} << 32) ^
                         static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
    for (auto& word : rng_state_) {  // splitmix64 seeding for xoshiro256**
        seed += 0x9e3779b97f4a7c15ULL;
        std::uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        word = z ^ (z >> 31);
    }
    pool_->start();
}

worker::~worker() = default;

std::uint64_t worker::next_random() {
    auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
    auto* s = rng_state_;
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void worker::set_routes(std::shared_ptr<const routing::route_snapshot> routes) {
    auto generation = routes ? routes->generation : 0;
    // Aliasing constructor: a control block private to this worker owns the shared one.
    auto holder = std::make_shared<std::shared_ptr<const routing::route_snapshot>>(
        std::move(routes));
    routes_ = std::shared_ptr<const routing::route_snapshot>(holder, holder->get());
    generation_.store(generation, std::memory_order_relaxed);
}

void worker::link(session_slot& slot) {
    slot.next = sessions_;
    if (sessions_) {
        sessions_->prev = &slot;
    }
    sessions_ = &slot;
    bump(counters_.connections_active);
}

void worker::unlink(session_slot& slot) {
    if (slot.prev) {
        slot.prev->next = slot.next;
    } else {
        sessions_ = slot.next;
    }
    if (slot.next) {
        slot.next->prev = slot.prev;
    }
    counters_.connections_active.store(
        counters_.connections_active.load(std::memory_order_relaxed) - 1,
        std::memory_order_relaxed);
}

void worker::begin_drain() {
    draining_ = true;
    for (auto* s = sessions_; s; s = s->next) {
        if (s->idle) {
            s->stream->cancel();
        }
    }
    pool_->stop();
}

void worker::abort_all() {
    for (auto* s = sessions_; s; s = s->next) {
        boost::system::error_code ec;
        s->stream->socket().close(ec);
        if (s->upstream) {
            s->upstream->socket().close(ec);
        }
    }
}

void worker::start_session(tcp::socket socket, net::ssl::context* tls) {
    bump(counters_.connections_accepted);
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    auto remote = socket.remote_endpoint(ec);
    if (ec) {
        return;  // the client is already gone
    }
    if (counters_.connections_active.load(std::memory_order_relaxed) >=
            settings_.limits.max_connections_per_worker ||
        draining_) {
        bump(counters_.connections_shed);
        net::co_spawn(io_, shed(beast::tcp_stream(std::move(socket)), *this), net::detached);
        return;
    }
    std::string client_address = remote.address().to_string();
    if (tls) {
        net::co_spawn(io_,
                      run_session(beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls),
                                  *this, std::move(client_address)),
                      net::detached);
    } else {
        net::co_spawn(io_,
                      run_session(beast::tcp_stream(std::move(socket)), *this,
                                  std::move(client_address)),
                      net::detached);
    }
}

}  // namespace stagegate::proxy
