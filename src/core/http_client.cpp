#include "stagegate/core/http_client.hpp"
#include "stagegate/core/asio.hpp"

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

#include <charconv>

#include <optional>

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

struct exchange : http_exchange {
    http_call call;
    std::function<void(result<http_reply>)> done;
    beast::tcp_stream* active = nullptr;  // the connection while there is one
    bool cancelled = false;

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
        req.keep_alive(false);
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
            co_return unreachable("cannot send the request", or_aborted(wec));
        }
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(call.max_body);
        lowest.expires_after(call.timeout);
        auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, nothrow_awaitable);
        if (hec || cancelled) {
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
        co_return http_reply{parser.get().result_int(), parser.get().body()};
    }

    net::awaitable<result<http_reply>> run(net::io_context& io) {
        tcp::resolver resolver(io);
        auto [rec, endpoints] =
            co_await resolver.async_resolve(call.url.host, call.url.port, nothrow_awaitable);
        if (rec || cancelled) {
            co_return unreachable("cannot resolve " + call.url.host, rec);
        }
        beast::tcp_stream tcp_stream(io);
        active = &tcp_stream;
        tcp_stream.expires_after(call.timeout);
        auto [cec, ep] = co_await tcp_stream.async_connect(endpoints, nothrow_awaitable);
        if (cec || cancelled) {
            co_return unreachable("cannot connect to " + call.url.host + ":" + call.url.port,
                                  or_aborted(cec));
        }
        if (!call.url.tls) {
            co_return co_await talk(tcp_stream);
        }
        net::ssl::context ctx(net::ssl::context::tls_client);
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
            ctx.use_certificate_chain_file(call.cert_file, ec);
            if (!ec) {
                ctx.use_private_key_file(call.key_file, net::ssl::context::pem, ec);
            }
            if (ec) {
                co_return error::make("tls_setup_failed",
                                      "cannot load the client certificate: " + ec.message());
            }
        }
        beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), ctx);
        active = &beast::get_lowest_layer(stream);
        SSL_set_tlsext_host_name(stream.native_handle(), call.url.host.c_str());
        beast::get_lowest_layer(stream).expires_after(call.timeout);
        auto [hec] = co_await stream.async_handshake(net::ssl::stream_base::client,
                                                     nothrow_awaitable);
        if (hec || cancelled) {
            co_return unreachable("TLS handshake failed", or_aborted(hec));
        }
        co_return co_await talk(stream);
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
    std::optional<result<http_reply>> outcome;
    async_http(io, std::move(call), [&](result<http_reply> r) { outcome = std::move(r); });
    io.run();
    if (!outcome) {
        return error::make("unreachable", "the exchange did not finish");
    }
    return std::move(*outcome);
}

}  // namespace stagegate
