#include "stagegate/core/http_client.hpp"
#include "stagegate/core/asio.hpp"
#include "stagegate/core/tls_files.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <map>
#include <optional>
#include <vector>

namespace stagegate {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// How long a streamed body may stay silent: 4 missed heartbeats of the admin API's event feed
// (15 s apart); an etcd watch that stays quiet that long ends and its caller watches again.
constexpr auto stream_idle_limit = std::chrono::seconds(60);

error unreachable(const std::string& what, const boost::system::error_code& ec) {
    return error::make("unreachable", what + ": " + ec.message());
}

// How long a kept-alive connection may wait idle: servers and the boxes between them close
// quiet connections sooner or later, and a closed one is only noticed when reused.
constexpr auto keepalive_idle_limit = std::chrono::seconds(30);

// Whether `ec` says the peer closed or reset the connection (not a timeout or our cancel).
bool closed_by_peer(const boost::system::error_code& ec) {
    return ec == http::error::end_of_stream || ec == net::error::eof ||
           ec == net::error::connection_reset || ec == net::error::broken_pipe ||
           ec == net::error::connection_aborted || ec == net::ssl::error::stream_truncated;
}

}  // namespace

struct http_keepalive::idle_set {
    // One connection, plain or TLS (its context lives as long as it).
    struct connection {
        std::unique_ptr<beast::tcp_stream> plain;
        std::shared_ptr<net::ssl::context> ctx;
        std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
        std::chrono::steady_clock::time_point idle_since;

        beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
    };

    std::size_t max_per_host;
    std::map<std::string, std::vector<std::unique_ptr<connection>>> by_server;

    // The most recently used idle connection to `server` that is still open: nothing waits to
    // be read on it (a waiting EOF or reset is the server's close; stray bytes make it unfit).
    std::unique_ptr<connection> take(const std::string& server) {
        auto it = by_server.find(server);
        if (it == by_server.end()) {
            return nullptr;
        }
        auto& idle = it->second;
        const auto now = std::chrono::steady_clock::now();
        while (!idle.empty()) {
            auto c = std::move(idle.back());
            idle.pop_back();
            if (now - c->idle_since > keepalive_idle_limit) {
                continue;
            }
            char byte;
            const auto n = ::recv(c->lowest().socket().native_handle(), &byte, 1,
                                  MSG_PEEK | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return c;
            }
        }
        return nullptr;
    }

    void give_back(const std::string& server, std::unique_ptr<connection> c) {
        auto& idle = by_server[server];
        if (idle.size() >= max_per_host) {
            return;  // closed
        }
        c->lowest().expires_never();
        c->idle_since = std::chrono::steady_clock::now();
        idle.push_back(std::move(c));
    }
};

http_keepalive::http_keepalive(std::size_t max_idle_per_host)
    : idle_(std::make_unique<idle_set>(idle_set{max_idle_per_host, {}})) {}

http_keepalive::~http_keepalive() = default;

namespace {

using pooled_connection = http_keepalive::idle_set::connection;

std::string server_of(const http_url& url) {
    return (url.tls ? "https://" : "http://") + url.host + ":" + url.port;
}

struct exchange : http_exchange {
    http_call call;
    std::function<void(result<http_reply>)> done;
    beast::tcp_stream* active = nullptr;  // the connection while there is one
    bool cancelled = false;
    bool reusable = false;  // the answer was read whole and the server keeps the connection
    // The connection ended (closed or reset) before any byte of the answer: on a reused one,
    // the server closed it while idle, and the request went nowhere.
    bool closed_unanswered = false;

    exchange(http_call c, std::function<void(result<http_reply>)> d)
        : call(std::move(c)), done(std::move(d)) {}

    // Cancels the operation under way; the flag stops the next one from starting, for a
    // cancel that lands while a completion is already queued (a watch would otherwise read on
    // for its whole idle limit and hold the control thread's io_context at shutdown).
    void cancel() override {
        cancelled = true;
        if (active) {
            active->cancel();
        }
    }
    // Whether this call's connection may be kept for the next one.
    bool kept() const { return !call.on_body && !call.keep_alive.expired(); }

    boost::system::error_code or_aborted(const boost::system::error_code& ec) const {
        return ec ? ec : make_error_code(net::error::operation_aborted);
    }

    http::request<http::string_body> make_request() const {
        http::request<http::string_body> req{http::string_to_verb(call.method), call.url.target,
                                             11};
        req.set(http::field::host, call.url.host);
        req.set(http::field::user_agent, "stagegate");
        for (const auto& [name, value] : call.headers) {
            req.set(name, value);
        }
        req.body() = call.body;
        req.keep_alive(kept());
        if (!call.body.empty() || call.method == "POST" || call.method == "PUT") {
            req.prepare_payload();
        }
        return req;
    }

    // Hands each piece of a streamed body (chunked or not) to on_body until told to stop, the
    // stream ends, or it stays silent past the idle limit.
    template <class Stream>
    net::awaitable<void> read_pieces(Stream& stream, beast::flat_buffer& buffer,
                                     http::response_parser<http::string_body>& header_parser) {
        // The header parser's state carries over, its body limit (max_body) included.
        http::response_parser<http::buffer_body> parser(std::move(header_parser));
        char chunk[4096];
        while (!parser.is_done()) {
            parser.get().body().data = chunk;
            parser.get().body().size = sizeof chunk;
            beast::get_lowest_layer(stream).expires_after(stream_idle_limit);
            auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, nothrow_awaitable);
            if ((ec && ec != http::error::need_buffer) || cancelled) {
                co_return;
            }
            const std::size_t got = sizeof chunk - parser.get().body().size;
            if (got > 0 && !call.on_body(std::string_view(chunk, got))) {
                co_return;
            }
        }
        call.on_body({});  // the end its framing announced
    }

    template <class Stream>
    net::awaitable<result<http_reply>> talk(Stream& stream) {
        auto req = make_request();
        auto& lowest = beast::get_lowest_layer(stream);
        lowest.expires_after(call.timeout);
        auto [wec, wn] = co_await http::async_write(stream, req, nothrow_awaitable);
        if (wec || cancelled) {
            closed_unanswered = !cancelled && closed_by_peer(wec);
            co_return unreachable("cannot send the request", or_aborted(wec));
        }
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(call.max_body);
        lowest.expires_after(call.timeout);
        auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, nothrow_awaitable);
        if (hec || cancelled) {
            closed_unanswered = !cancelled && hn == 0 && buffer.size() == 0 &&
                                !parser.got_some() && closed_by_peer(hec);
            co_return unreachable("no answer", or_aborted(hec));
        }
        if (call.on_body && parser.get().result() == http::status::ok) {
            co_await read_pieces(stream, buffer, parser);
            co_return http_reply{200, {}};
        }
        auto [rec, rn] = co_await http::async_read(stream, buffer, parser, nothrow_awaitable);
        if (rec) {
            co_return unreachable("cannot read the answer", rec);
        }
        reusable = parser.is_done() && parser.get().keep_alive() && buffer.size() == 0;
        co_return http_reply{parser.get().result_int(), parser.get().body()};
    }

    // A new connection to the call's server, TLS handshake done.
    net::awaitable<result<std::unique_ptr<pooled_connection>>> connect(net::io_context& io) {
        tcp::resolver resolver(io);
        auto [rec, endpoints] =
            co_await resolver.async_resolve(call.url.host, call.url.port, nothrow_awaitable);
        if (rec || cancelled) {
            co_return unreachable("cannot resolve " + call.url.host, rec);
        }
        auto conn = std::make_unique<pooled_connection>();
        conn->plain = std::make_unique<beast::tcp_stream>(io);
        active = conn->plain.get();
        conn->plain->expires_after(call.timeout);
        auto [cec, ep] = co_await conn->plain->async_connect(endpoints, nothrow_awaitable);
        if (cec || cancelled) {
            co_return unreachable("cannot connect to " + call.url.host + ":" + call.url.port,
                                  or_aborted(cec));
        }
        if (auto pool = call.keep_alive.lock()) {
            pool->count_opened();
        }
        if (!call.url.tls) {
            co_return std::move(conn);
        }
        conn->ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
        auto& ctx = *conn->ctx;
        boost::system::error_code ec;
        if (call.insecure) {
            ctx.set_verify_mode(net::ssl::verify_none, ec);
        } else {
            ctx.set_verify_mode(net::ssl::verify_peer, ec);
            if (call.ca_file.empty()) {
                ctx.set_default_verify_paths(ec);
            } else {
                ctx.load_verify_file(call.ca_file, ec);
            }
            if (ec) {
                co_return error::make("tls_setup_failed", "cannot load CA: " + ec.message());
            }
            ctx.set_verify_callback(net::ssl::host_name_verification(call.url.host), ec);
        }
        if (!call.cert_file.empty()) {
            if (auto failed = load_certificate_and_key(ctx, call.cert_file, call.key_file)) {
                co_return error::make("tls_setup_failed", std::move(failed->message));
            }
        }
        conn->tls =
            std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*conn->plain), ctx);
        conn->plain.reset();
        active = &conn->lowest();
        SSL_set_tlsext_host_name(conn->tls->native_handle(), call.url.host.c_str());
        conn->lowest().expires_after(call.timeout);
        auto [hec] = co_await conn->tls->async_handshake(net::ssl::stream_base::client,
                                                         nothrow_awaitable);
        if (hec || cancelled) {
            co_return unreachable("TLS handshake failed", or_aborted(hec));
        }
        co_return std::move(conn);
    }

    net::awaitable<result<http_reply>> run(net::io_context& io) {
        const std::string server = server_of(call.url);
        std::unique_ptr<pooled_connection> conn;
        if (auto pool = call.keep_alive.lock()) {
            pool->count_call();
            if (kept()) {
                conn = pool->idle().take(server);
            }
        }
        // A kept-alive connection the server closed as the request went out (after take()'s
        // check, or a close still in flight) ends before any answer byte: the request went
        // nowhere, so it goes once more on a new connection (Go's transport does the same),
        // where it used to pass for the server being down.
        bool reused = conn != nullptr;
        result<http_reply> r = error::make("unreachable", "not sent");
        for (;;) {
            if (!conn) {
                auto made = co_await connect(io);
                if (!made) {
                    active = nullptr;  // it went with the connection
                    co_return made.error();
                }
                conn = std::move(*made);
            }
            active = &conn->lowest();
            closed_unanswered = false;
            if (conn->tls) {
                r = co_await talk(*conn->tls);
            } else {
                r = co_await talk(*conn->plain);
            }
            active = nullptr;
            if (r || !reused || !closed_unanswered || cancelled) {
                break;
            }
            if (auto pool = call.keep_alive.lock()) {
                pool->count_stale();
            }
            conn.reset();
            reused = false;
        }
        if (r && reusable && kept() && !cancelled) {
            if (auto pool = call.keep_alive.lock()) {
                pool->idle().give_back(server, std::move(conn));
            }
        }
        co_return r;
    }
};

net::awaitable<void> run_exchange(net::io_context& io, std::shared_ptr<exchange> x) {
    auto r = co_await x->run(io);
    x->active = nullptr;
    x->done(std::move(r));
}

}  // namespace

result<http_url> parse_http_url(std::string_view text, bool allow_path) {
    namespace urls = boost::urls;
    const std::string quoted(text);
    // "host:port" is short for http://host:port (etcd endpoints, gate checks).
    const std::string whole =
        text.find("://") == std::string_view::npos ? "http://" + quoted : quoted;
    auto parsed = urls::parse_uri(whole);
    if (!parsed) {
        return error::make("bad_url",
                           "not a URL: " + quoted + " (" + parsed.error().message() + ")");
    }
    const urls::url_view& u = *parsed;
    http_url out;
    if (u.scheme_id() == urls::scheme::https) {
        out.tls = true;
    } else if (u.scheme_id() != urls::scheme::http) {
        return error::make("bad_url", "only http:// and https:// URLs are supported, got " +
                                          quoted);
    }
    if (u.has_userinfo()) {
        return error::make("bad_url", "a user or password in the URL is not supported: " +
                                          quoted);
    }
    out.host = u.host_address();  // an IPv6 address without its brackets
    if (out.host.empty()) {
        return error::make("bad_url", "missing host in " + quoted);
    }
    if (!allow_path && (u.encoded_path().find_first_not_of('/') != std::string_view::npos ||
                        u.has_query())) {
        return error::make("bad_url", "expected scheme://host:port without a path, got " +
                                          quoted);
    }
    // Path and query as written (still percent-encoded, as a request line wants them); a
    // fragment is never sent.
    const std::string_view target = u.encoded_target();
    out.target = target.starts_with('/') ? std::string(target) : "/" + std::string(target);
    if (!u.has_port()) {
        out.port = out.tls ? "443" : "80";
        return out;
    }
    const std::string_view port = u.port();
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty()) {
        return error::make("bad_url", "empty port in " + quoted);
    }
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
        return error::make("bad_url", "bad port in " + quoted);
    }
    out.port = std::string(port);
    return out;
}

std::shared_ptr<http_exchange> async_http(net::io_context& io, http_call call,
                                          std::function<void(result<http_reply>)> done) {
    auto x = std::make_shared<exchange>(std::move(call), std::move(done));
    net::co_spawn(io, run_exchange(io, x), net::detached);
    return x;
}

result<http_reply> http_blocking(http_call call) {
    net::io_context io;
    return http_blocking(io, std::move(call));
}

result<http_reply> http_blocking(net::io_context& io, http_call call) {
    std::optional<result<http_reply>> outcome;
    async_http(io, std::move(call), [&](result<http_reply> r) { outcome = std::move(r); });
    io.restart();
    io.run();
    if (!outcome) {
        return error::make("unreachable", "the exchange did not finish");
    }
    return std::move(*outcome);
}

}  // namespace stagegate
