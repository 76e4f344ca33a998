#include "client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>

namespace stagegate::ctl {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr auto nothrow_awaitable = net::as_tuple(net::use_awaitable);
constexpr auto follow_idle_limit = std::chrono::seconds(60);  // 4 missed heartbeats

error unreachable(const std::string& what, const boost::system::error_code& ec) {
    return error::make("unreachable", what + ": " + ec.message());
}

struct exchange {
    const client_options& options;
    std::string_view method;
    const std::string& target;
    const std::string& body;
    const std::function<bool(const std::string&)>* on_event = nullptr;
    std::optional<result<reply>> outcome;

    http::request<http::string_body> make_request() const {
        http::request<http::string_body> req{http::string_to_verb(method), target, 11};
        req.set(http::field::host, options.url.host);
        req.set(http::field::user_agent, "stagegatectl");
        req.set(http::field::accept, on_event ? "text/event-stream" : "application/json");
        if (!options.token.empty()) {
            req.set(http::field::authorization, "Bearer " + options.token);
        }
        if (!body.empty()) {
            req.set(http::field::content_type, "application/json");
        }
        req.body() = body;
        req.keep_alive(false);
        req.prepare_payload();
        return req;
    }

    // Reads "data:" lines of the event stream until told to stop or the stream ends.
    template <class Stream>
    net::awaitable<void> read_events(Stream& stream, beast::flat_buffer& buffer) {
        std::string pending(static_cast<const char*>(buffer.data().data()), buffer.size());
        std::string data;
        char chunk[4096];
        for (;;) {
            for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
                std::string line = pending.substr(0, nl);
                pending.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r') {
                    line.pop_back();
                }
                if (line.empty()) {
                    if (!data.empty() && !(*on_event)(data)) {
                        co_return;
                    }
                    data.clear();
                } else if (line.rfind("data:", 0) == 0) {
                    auto value = line.substr(5);
                    if (!value.empty() && value.front() == ' ') {
                        value.erase(0, 1);
                    }
                    data += (data.empty() ? "" : "\n") + value;
                }
            }
            beast::get_lowest_layer(stream).expires_after(follow_idle_limit);
            auto [ec, n] = co_await stream.async_read_some(net::buffer(chunk), nothrow_awaitable);
            if (ec) {
                co_return;
            }
            pending.append(chunk, n);
        }
    }

    template <class Stream>
    net::awaitable<void> talk(Stream& stream) {
        auto req = make_request();
        auto& lowest = beast::get_lowest_layer(stream);
        lowest.expires_after(options.timeout);
        auto [wec, wn] = co_await http::async_write(stream, req, nothrow_awaitable);
        if (wec) {
            outcome = unreachable("cannot send the request", wec);
            co_return;
        }
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        lowest.expires_after(options.timeout);
        auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, nothrow_awaitable);
        if (hec) {
            outcome = unreachable("no answer", hec);
            co_return;
        }
        if (on_event && parser.get().result() == http::status::ok) {
            co_await read_events(stream, buffer);
            outcome = reply{200, {}};
            co_return;
        }
        auto [rec, rn] = co_await http::async_read(stream, buffer, parser, nothrow_awaitable);
        if (rec) {
            outcome = unreachable("cannot read the answer", rec);
            co_return;
        }
        outcome = reply{parser.get().result_int(), parser.get().body()};
    }

    net::awaitable<void> run(net::io_context& io) {
        tcp::resolver resolver(io);
        auto [rec, endpoints] = co_await resolver.async_resolve(options.url.host, options.url.port,
                                                                nothrow_awaitable);
        if (rec) {
            outcome = unreachable("cannot resolve " + options.url.host, rec);
            co_return;
        }
        beast::tcp_stream tcp_stream(io);
        tcp_stream.expires_after(options.timeout);
        auto [cec, ep] = co_await tcp_stream.async_connect(endpoints, nothrow_awaitable);
        if (cec) {
            outcome = unreachable("cannot connect to " + options.url.host + ":" + options.url.port,
                                  cec);
            co_return;
        }
        if (!options.url.tls) {
            co_await talk(tcp_stream);
            co_return;
        }
        net::ssl::context ctx(net::ssl::context::tls_client);
        boost::system::error_code ec;
        if (options.insecure) {
            ctx.set_verify_mode(net::ssl::verify_none, ec);
        } else {
            ctx.set_verify_mode(net::ssl::verify_peer, ec);
            if (options.ca_file.empty()) {
                ctx.set_default_verify_paths(ec);
            } else {
                ctx.load_verify_file(options.ca_file, ec);
            }
            if (ec) {
                outcome = error::make("tls_setup_failed", "cannot load CA: " + ec.message());
                co_return;
            }
            ctx.set_verify_callback(net::ssl::host_name_verification(options.url.host), ec);
        }
        beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), ctx);
        SSL_set_tlsext_host_name(stream.native_handle(), options.url.host.c_str());
        beast::get_lowest_layer(stream).expires_after(options.timeout);
        auto [hec] = co_await stream.async_handshake(net::ssl::stream_base::client,
                                                     nothrow_awaitable);
        if (hec) {
            outcome = unreachable("TLS handshake failed", hec);
            co_return;
        }
        co_await talk(stream);
    }
};

result<reply> run_exchange(exchange& x) {
    net::io_context io;
    net::co_spawn(io, x.run(io), net::detached);
    io.run();
    if (!x.outcome) {
        return error::make("unreachable", "the exchange did not finish");
    }
    return *x.outcome;
}

}  // namespace

result<server_url> parse_server_url(std::string_view text) {
    server_url out;
    std::string_view rest = text;
    if (rest.rfind("https://", 0) == 0) {
        out.tls = true;
        rest.remove_prefix(8);
    } else if (rest.rfind("http://", 0) == 0) {
        rest.remove_prefix(7);
    } else if (rest.find("://") != std::string_view::npos) {
        return error::make("usage", "--server: only http:// and https:// are supported, got " +
                                        std::string(text));
    }
    while (!rest.empty() && rest.back() == '/') {
        rest.remove_suffix(1);
    }
    if (rest.find('/') != std::string_view::npos) {
        return error::make("usage", "--server takes scheme://host:port without a path, got " +
                                        std::string(text));
    }
    std::string_view host = rest;
    std::string_view port;
    if (!rest.empty() && rest.front() == '[') {
        auto close = rest.find(']');
        if (close == std::string_view::npos) {
            return error::make("usage", "--server: unterminated [IPv6] address");
        }
        host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') {
                return error::make("usage", "--server: expected :port after ]");
            }
            port = rest.substr(close + 2);
        }
    } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    }
    if (host.empty()) {
        return error::make("usage", "--server: missing host in " + std::string(text));
    }
    if (port.empty()) {
        port = out.tls ? "443" : "80";
    }
    for (char c : port) {
        if (c < '0' || c > '9') {
            return error::make("usage", "--server: bad port in " + std::string(text));
        }
    }
    out.host = std::string(host);
    out.port = std::string(port);
    return out;
}

result<reply> client::call(std::string_view method, const std::string& target,
                           const std::string& body) {
    exchange x{options_, method, target, body, nullptr, std::nullopt};
    return run_exchange(x);
}

result<reply> client::follow(const std::string& target,
                             const std::function<bool(const std::string& data)>& on_event) {
    static const std::string no_body;
    exchange x{options_, "GET", target, no_body, &on_event, std::nullopt};
    return run_exchange(x);
}

}  // namespace stagegate::ctl
