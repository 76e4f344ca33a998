#include "admin_server.hpp"

#include "stagegate/server/gateway.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <list>

namespace stagegate::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

namespace {

constexpr auto nothrow_awaitable = net::as_tuple(net::use_awaitable);
using response_t = http::response<http::string_body>;

response_t json_response(http::status status, const json& body, unsigned version) {
    response_t res{status, version};
    res.set(http::field::server, "stagegate-admin");
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.body() = body.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    return res;
}

response_t error_json(http::status status, std::string_view code, std::string message,
                      unsigned version) {
    return json_response(status, {{"error", {{"code", code}, {"message", std::move(message)}}}},
                         version);
}

// Asks the gateway to merge every worker's metrics, resuming the coroutine when it has.
template <class Token>
auto async_collect(gateway& gw, Token&& token) {
    return net::async_initiate<Token, void()>(
        [&gw](auto handler) {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            gw.collect([h] { (*h)(); });
        },
        token);
}

json latency_json(const metrics::latency_histogram& h) {
    auto q = [&](double p) { return h.quantile_micros(p) / 1e6; };
    return {{"p50", q(0.50)}, {"p90", q(0.90)}, {"p99", q(0.99)}};
}

json counts_json(const metrics::series_counts& c) {
    auto requests = c.requests();
    auto errors = c.server_errors();
    json failures = json::object();
    for (std::size_t k = 0; k < metrics::upstream_failure_kinds; ++k) {
        failures[metrics::failure_label(k)] = c.upstream_failures[k];
    }
    json codes = json::object();
    for (std::size_t i = 0; i < metrics::code_slots; ++i) {
        if (c.codes[i]) {
            codes[metrics::code_label(i)] = c.codes[i];
        }
    }
    return {{"requests", requests},
            {"errors", errors},
            {"error_rate", requests ? static_cast<double>(errors) / static_cast<double>(requests)
                                    : 0.0},
            {"codes", codes},
            {"upstream_failures", failures},
            {"latency_seconds", latency_json(c.latency)}};
}

}  // namespace

struct admin_server::impl {
    net::io_context& io;
    gateway& gw;
    tcp::acceptor acceptor{io};
    std::list<beast::tcp_stream*> sessions;  // to close them on stop
    bool stopped = false;

    impl(net::io_context& i, gateway& g) : io(i), gw(g) {}

    json model_json(const routing::model_route& m) const {
        json versions = json::array();
        for (std::size_t v = 0; v < m.versions.size(); ++v) {
            json endpoints = json::array();
            for (const auto& ep : m.versions[v].endpoints) {
                endpoints.push_back(ep.authority);
            }
            versions.push_back({{"name", m.versions[v].name},
                                {"weight_bp", m.weights[v]},
                                {"stable", v == m.stable},
                                {"tls", static_cast<bool>(m.versions[v].tls)},
                                {"endpoints", endpoints}});
        }
        return {{"name", m.name}, {"stage", m.stage}, {"versions", versions}};
    }

    net::awaitable<response_t> handle(const http::request<http::string_body>& req) {
        const unsigned v = req.version();
        std::string_view target = req.target();
        std::string_view path = target.substr(0, target.find('?'));
        const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
        if (!get) {
            co_return error_json(http::status::method_not_allowed, "method_not_allowed",
                                 "only GET is served here for now", v);
        }
        if (path == "/healthz") {
            co_return json_response(http::status::ok, {{"status", "ok"}}, v);
        }
        if (path == "/readyz") {
            if (gw.draining()) {
                co_return error_json(http::status::service_unavailable, "draining",
                                     "the gateway is shutting down", v);
            }
            co_return json_response(http::status::ok, {{"status", "ready"}}, v);
        }
        if (path == "/metrics") {
            co_await async_collect(gw, net::use_awaitable);
            response_t res{http::status::ok, v};
            res.set(http::field::server, "stagegate-admin");
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = gw.render_prometheus();
            co_return res;
        }
        constexpr std::string_view models_prefix = "/api/v1/models";
        if (path == models_prefix) {
            json models = json::array();
            if (auto snap = gw.routes()) {
                for (const auto& m : snap->models) {
                    models.push_back(model_json(m));
                }
            }
            co_return json_response(http::status::ok, {{"models", models}}, v);
        }
        if (path.rfind("/api/v1/models/", 0) == 0) {
            std::string_view rest = path.substr(models_prefix.size() + 1);
            std::string_view name = rest.substr(0, rest.find('/'));
            std::string_view tail = rest.substr(name.size());
            auto snap = gw.routes();
            const auto* m = snap ? snap->find_model(name) : nullptr;
            if (!m) {
                co_return error_json(http::status::not_found, "unknown_model",
                                     "no model named \"" + std::string(name) + "\"", v);
            }
            if (tail.empty() || tail == "/") {
                co_return json_response(http::status::ok, model_json(*m), v);
            }
            if (tail == "/metrics") {
                co_await async_collect(gw, net::use_awaitable);
                json versions = json::array();
                for (const auto& vm : gw.version_metrics_now()) {
                    if (vm.model != m->name) {
                        continue;
                    }
                    auto window = counts_json(vm.window.counts);
                    window["seconds"] = vm.window.seconds;
                    window["rps"] = static_cast<double>(vm.window.counts.requests()) /
                                    vm.window.seconds;
                    auto stage = counts_json(vm.since_stage_start);
                    stage["seconds"] = std::chrono::duration<double>(
                                           std::chrono::steady_clock::now() - vm.stage_started)
                                           .count();
                    auto idx = m->find_version(vm.version);
                    versions.push_back({{"version", vm.version},
                                        {"stage", vm.stage},
                                        {"weight_bp", m->weights[idx]},
                                        {"since_stage_start", stage},
                                        {"window", window}});
                }
                co_return json_response(http::status::ok,
                                        {{"model", m->name}, {"stage", m->stage},
                                         {"versions", versions}},
                                        v);
            }
        }
        if (path == "/api/v1/rollouts" || path.rfind("/api/v1/rollouts/", 0) == 0) {
            auto* ctl = gw.rollouts();
            const auto now = rollout::clock::now();
            if (path == "/api/v1/rollouts") {
                co_return json_response(
                    http::status::ok,
                    {{"rollouts", ctl ? ctl->status_all(now) : json::array()}}, v);
            }
            std::string name(path.substr(std::string_view("/api/v1/rollouts/").size()));
            if (!ctl || !ctl->has(name)) {
                co_return error_json(http::status::not_found, "unknown_rollout",
                                     "model \"" + name + "\" has no rollout", v);
            }
            co_return json_response(http::status::ok, ctl->status(name, now), v);
        }
        co_return error_json(http::status::not_found, "not_found",
                             "no admin endpoint at " + std::string(path), v);
    }

    net::awaitable<void> session(beast::tcp_stream stream) {
        auto it = sessions.insert(sessions.end(), &stream);
        beast::flat_buffer buffer;
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(16 * 1024);
            parser.body_limit(1024 * 1024);
            stream.expires_after(std::chrono::seconds(60));
            auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow_awaitable);
            if (ec) {
                if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
                    ec != net::error::operation_aborted && ec != net::error::connection_reset) {
                    auto res = error_json(http::status::bad_request, "bad_request",
                                          "cannot read the request: " + ec.message(), 11);
                    res.keep_alive(false);
                    res.prepare_payload();
                    stream.expires_after(std::chrono::seconds(10));
                    co_await http::async_write(stream, res, nothrow_awaitable);
                }
                break;
            }
            auto req = parser.release();
            auto res = co_await handle(req);
            const bool keep = req.keep_alive() && !stopped;
            res.keep_alive(keep);
            res.prepare_payload();
            if (req.method() == http::verb::head) {
                res.body().clear();
            }
            stream.expires_after(std::chrono::seconds(30));
            auto [wec, wn] = co_await http::async_write(stream, res, nothrow_awaitable);
            if (wec || !keep) {
                break;
            }
        }
        sessions.erase(it);
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    net::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(nothrow_awaitable);
            if (!acceptor.is_open() || stopped) {
                co_return;
            }
            if (ec) {
                continue;
            }
            net::co_spawn(io, session(beast::tcp_stream(std::move(socket))), net::detached);
        }
    }
};

admin_server::admin_server(net::io_context& io, gateway& gw)
    : impl_(std::make_unique<impl>(io, gw)) {}

admin_server::~admin_server() = default;

result<std::uint16_t> admin_server::listen(const std::string& address, std::uint16_t port) {
    boost::system::error_code ec;
    auto addr = net::ip::make_address(address, ec);
    if (ec) {
        return error::make("bad_admin_listener", "invalid admin address " + address);
    }
    tcp::endpoint ep(addr, port);
    auto& a = impl_->acceptor;
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
        return error::make("bind_failed", "cannot listen on admin " + address + ":" +
                                              std::to_string(port) + ": " + ec.message());
    }
    net::co_spawn(impl_->io, impl_->accept_loop(), net::detached);
    return a.local_endpoint().port();
}

void admin_server::stop() {
    impl_->stopped = true;
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    for (auto* s : impl_->sessions) {
        s->cancel();
    }
}

}  // namespace stagegate::server
