#include "support/test_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <fstream>
#include <sys/time.h>

#include <thread>

namespace stagegate::test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct connection::impl {
    net::io_context io;
    net::ssl::context ctx{net::ssl::context::tls_client};
    tcp::socket socket{io};
    std::unique_ptr<net::ssl::stream<tcp::socket&>> tls;
    beast::flat_buffer buffer;
    bool ok = false;
    std::chrono::milliseconds timeout{10000};

    // Whether something can be read within the timeout. Asio's blocking reads wait in poll()
    // with no limit once SO_RCVTIMEO's EAGAIN comes back, so the socket option alone bounds
    // nothing: a stream that never sends what a test waits for would hang it for good.
    bool readable() {
        if (tls && SSL_pending(tls->native_handle()) > 0) {
            return true;
        }
        pollfd p{socket.native_handle(), POLLIN, 0};
        return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
    }

    template <class F>
    auto with_stream(F&& f) {
        if (tls) {
            return f(*tls);
        }
        return f(socket);
    }
};

connection::connection(std::uint16_t port, bool tls, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>()) {
    boost::system::error_code ec;
    impl_->socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
    if (ec) {
        return;
    }
    impl_->timeout = timeout;
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    ::setsockopt(impl_->socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(impl_->socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (tls) {
        impl_->ctx.set_verify_mode(net::ssl::verify_none);  // the test cert is self-signed
        impl_->tls = std::make_unique<net::ssl::stream<tcp::socket&>>(impl_->socket, impl_->ctx);
        SSL_set_tlsext_host_name(impl_->tls->native_handle(), "localhost");
        impl_->tls->handshake(net::ssl::stream_base::client, ec);
        if (ec) {
            return;
        }
    }
    impl_->ok = true;
}

connection::~connection() = default;

bool connection::connected() const { return impl_->ok; }

reply connection::read_reply() {
    reply r;
    http::response_parser<http::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);
    boost::system::error_code ec;
    impl_->with_stream([&](auto& s) { http::read(s, impl_->buffer, parser, ec); return 0; });
    if (ec) {
        r.error = ec.message();
        return r;
    }
    auto& res = parser.get();
    r.status = res.result_int();
    for (const auto& f : res) {
        std::string name(f.name_string());
        for (auto& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        r.headers[name] = std::string(f.value());
    }
    r.body = res.body();
    r.keep_alive = res.keep_alive();
    return r;
}

reply connection::request(const std::string& method, const std::string& target,
                          const std::string& body, const header_list& headers) {
    if (!impl_->ok) {
        reply r;
        r.error = "not connected";
        return r;
    }
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) {
        req.insert(k, v);
    }
    req.body() = body;
    if (!body.empty() || method == "POST" || method == "PUT") {
        req.prepare_payload();
    }
    boost::system::error_code ec;
    impl_->with_stream([&](auto& s) { http::write(s, req, ec); return 0; });
    if (ec) {
        reply r;
        r.error = ec.message();
        return r;
    }
    return read_reply();
}

bool connection::write_raw(const std::string& bytes) {
    boost::system::error_code ec;
    impl_->with_stream([&](auto& s) { net::write(s, net::buffer(bytes), ec); return 0; });
    return !ec;
}

reply connection::raw(const std::string& bytes) {
    if (!write_raw(bytes)) {
        reply r;
        r.error = "write failed";
        return r;
    }
    return read_reply();
}

std::string connection::read_until(const std::string& needle) {
    std::string got(static_cast<const char*>(impl_->buffer.data().data()), impl_->buffer.size());
    impl_->buffer.consume(impl_->buffer.size());
    char chunk[4096];
    // Each read searches only where the needle could newly end: a megabyte read in 4 KiB
    // pieces is not scanned again from its start every time.
    std::size_t from = 0;
    while (got.find(needle, from) == std::string::npos) {
        from = got.size() >= needle.size() ? got.size() - needle.size() + 1 : 0;
        boost::system::error_code ec;
        std::size_t n = 0;
        if (!impl_->readable()) {
            break;  // timed out
        }
        impl_->with_stream([&](auto& s) { n = s.read_some(net::buffer(chunk), ec); return 0; });
        if (ec) {
            break;
        }
        got.append(chunk, n);
    }
    // Whatever came after the needle stays for the next read.
    if (auto pos = got.find(needle); pos != std::string::npos) {
        const auto end = pos + needle.size();
        auto rest = got.size() - end;
        net::buffer_copy(impl_->buffer.prepare(rest), net::buffer(got.data() + end, rest));
        impl_->buffer.commit(rest);
        got.resize(end);
    }
    return got;
}

bool connection::peer_closed() {
    char c;
    boost::system::error_code ec;
    std::size_t n = 0;
    if (!impl_->readable()) {
        return false;  // still open at the timeout
    }
    impl_->with_stream([&](auto& s) { n = s.read_some(net::buffer(&c, 1), ec); return 0; });
    return n == 0 && (ec == net::error::eof || ec == net::error::connection_reset ||
                      ec == net::ssl::error::stream_truncated);
}

reply request(std::uint16_t port, const std::string& method, const std::string& target,
              const std::string& body, const header_list& headers) {
    connection c(port);
    return c.request(method, target, body, headers);
}

std::uint16_t read_port_file(const std::string& path) {
    std::uint16_t port = 0;
    wait_until([&] {
        std::ifstream in(path);
        return static_cast<bool>(in >> port);
    });
    return port;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return condition();
        }
        std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // polling interval only
    }
    return true;
}

}  // namespace stagegate::test

