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
    http_url out;
    std::string_view rest = text;
    if (rest.rfind("https://", 0) == 0) {
        out.tls = true;
        rest.remove_prefix(8);
    } else if (rest.rfind("http://", 0) == 0) {
        rest.remove_prefix(7);
    } else if (rest.find("://") != std::string_view::npos) {
        return error::make("bad_url", "only http:// and https:// URLs are supported, got " +
                                          std::string(text));
    }
    auto slash = rest.find('/');
    if (slash != std::string_view::npos) {
        std::string_view path = rest.substr(slash);
        rest = rest.substr(0, slash);
        if (!allow_path && path.find_first_not_of('/') != std::string_view::npos) {
            return error::make("bad_url", "expected scheme://host:port without a path, got " +
                                              std::string(text));
        }
        out.target = std::string(path);
    }
    if (out.target.find_first_of(" \t\r\n") != std::string::npos) {
        return error::make("bad_url", "spaces in the URL " + std::string(text));
    }
    std::string_view host = rest;
    std::string_view port;
    if (!rest.empty() && rest.front() == '[') {
        auto close = rest.find(']');
        if (close == std::string_view::npos) {
            return error::make("bad_url", "unterminated [IPv6] address in " + std::string(text));
        }
        host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') {
                return error::make("bad_url", "expected :port after ] in " + std::string(text));
            }
            port = rest.substr(close + 2);
        }
    } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
        if (port.empty()) {
            return error::make("bad_url", "empty port in " + std::string(text));
        }
    }
    if (host.empty()) {
        return error::make("bad_url", "missing host in " + std::string(text));
    }
    if (port.empty()) {
        port = out.tls ? "443" : "80";
    }
    unsigned value = 0;
    for (char c : port) {
        if (c < '0' || c > '9' || (value = value * 10 + static_cast<unsigned>(c - '0')) > 65535) {
            return error::make("bad_url", "bad port in " + std::string(text));
        }
    }
    if (value == 0) {
        return error::make("bad_url", "bad port in " + std::string(text));
    }
    out.host = std::string(host);
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
