#include "support/receiver.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <thread>

namespace stagegate::test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct receiver::impl {
    net::io_context io;
    tcp::acceptor acceptor{io};
    std::function<answer(const received&, std::size_t)> policy;
    mutable std::mutex mutex;
    std::vector<received> log;
    std::vector<std::shared_ptr<beast::tcp_stream>> streams;  // io thread only
    std::thread thread;

    net::awaitable<void> serve(std::shared_ptr<beast::tcp_stream> stream) {
        constexpr auto nothrow = net::as_tuple(net::use_awaitable);
        beast::flat_buffer buffer;
        for (;;) {
            http::request<http::string_body> req;
            auto [ec, n] = co_await http::async_read(*stream, buffer, req, nothrow);
            if (ec) {
                co_return;
            }
            received r;
            r.method = std::string(req.method_string());
            r.target = std::string(req.target());
            for (const auto& f : req) {
                std::string name(f.name_string());
                for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                r.headers[name] = std::string(f.value());
            }
            r.body = req.body();
            r.at = std::chrono::steady_clock::now();
            std::size_t index;
            {
                std::lock_guard lock(mutex);
                index = log.size();
                log.push_back(r);
            }
            auto a = policy(r, index);
            if (a.hang) {
                net::steady_timer forever(io, std::chrono::hours(1));
                co_await forever.async_wait(nothrow);
                co_return;
            }
            http::response<http::string_body> res{static_cast<http::status>(a.status), 11};
            res.body() = a.body;
            res.keep_alive(req.keep_alive());
            res.prepare_payload();
            auto [wec, wn] = co_await http::async_write(*stream, res, nothrow);
            if (wec || !req.keep_alive()) {
                co_return;
            }
        }
    }

    net::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(net::as_tuple(net::use_awaitable));
            if (ec) {
                co_return;
            }
            auto s = std::make_shared<beast::tcp_stream>(std::move(socket));
            streams.push_back(s);
            net::co_spawn(io, serve(s), net::detached);
        }
    }
};

receiver::receiver(std::function<answer(const received&, std::size_t)> policy)
    : impl_(std::make_unique<impl>()) {
    impl_->policy = std::move(policy);
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    port_ = impl_->acceptor.local_endpoint().port();
    net::co_spawn(impl_->io, impl_->accept_loop(), net::detached);
    impl_->thread = std::thread([this] { impl_->io.run(); });
}

receiver::~receiver() {
    net::post(impl_->io, [this] {
        boost::system::error_code ignored;
        impl_->acceptor.close(ignored);
        for (auto& s : impl_->streams) {
            s->socket().close(ignored);
        }
    });
    impl_->io.stop();
    impl_->thread.join();
}

std::string receiver::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<received> receiver::requests() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->log;
}

std::size_t receiver::count() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->log.size();
}

}  // namespace stagegate::test
