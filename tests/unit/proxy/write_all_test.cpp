// write_at_once and write_rest (write_all.hpp) over a real TCP connection on 127.0.0.1: the
// bytes arrive whole and in order whether the first non-blocking send took all of them or
// only a part (the rest then goes through net::async_write from where the send stopped), and
// a peer that is gone is an error.
#include "proxy/write_all.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>

#include <array>
#include <poll.h>
#include <string>

namespace stagegate::proxy {
namespace {

struct tcp_pair {
    net::io_context io;
    stream_type sender{io};
    stream_type receiver{io};

    // Connected through a listener on port 0; small buffers on both sides when `small`.
    explicit tcp_pair(bool small) {
        net::basic_socket_acceptor<tcp, executor_type> listener(
            io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        if (small) {  // before connecting: the window it offers is set then
            receiver.open(tcp::v4());
            receiver.set_option(net::socket_base::receive_buffer_size(4096));
        }
        receiver.connect(listener.local_endpoint());
        sender = listener.accept();
        if (small) {
            sender.set_option(net::socket_base::send_buffer_size(4096));
        }
    }
};

// The two halves as the request path calls them: (error, bytes written).
template <class Stream, class Buffers>
task<std::tuple<boost::system::error_code, std::size_t>> write_all(Stream& stream,
                                                                   const Buffers& buffers) {
    const auto w = write_at_once(stream, buffers);
    co_return w.finished ? w.result() : co_await write_rest(stream, buffers, w.written);
}

std::string pattern(std::size_t n, int seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        s[i] = static_cast<char>('a' + (i * 7 + static_cast<std::size_t>(seed)) % 26);
    }
    return s;
}

TEST(WriteAll, AWriteTheSocketTakesOnlyInPartArrivesWholeAndInOrder) {
    tcp_pair p(true);
    // Three pieces, 1 MiB in all: far more than a 4 KiB send buffer and receive window take
    // at once, so the first send is partial and the rest goes asynchronously.
    const std::string a = pattern(1000, 1);
    const std::string b = pattern(1 << 20, 2);
    const std::string c = pattern(333, 3);
    const std::array<net::const_buffer, 3> pieces{net::buffer(a), net::buffer(b), net::buffer(c)};
    boost::system::error_code write_ec = net::error::would_block;
    std::size_t written = 0;
    net::co_spawn(p.io, [&]() -> task<void> {
        auto [ec, n] = co_await write_all(p.sender, pieces);
        write_ec = ec;
        written = n;
    }, net::detached);
    std::string got(a.size() + b.size() + c.size(), '\0');
    boost::system::error_code read_ec;
    std::size_t read = 0;
    net::co_spawn(p.io, [&]() -> task<void> {
        auto [ec, n] = co_await net::async_read(p.receiver, net::buffer(got), nothrow_awaitable);
        read_ec = ec;
        read = n;
    }, net::detached);
    p.io.run();
    EXPECT_FALSE(write_ec) << write_ec.message();
    EXPECT_EQ(written, got.size());
    EXPECT_FALSE(read_ec) << read_ec.message();
    ASSERT_EQ(read, got.size());
    EXPECT_TRUE(got == a + b + c);
}

TEST(WriteAll, ASmallWriteIsTakenAtOnce) {
    tcp_pair p(false);
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    boost::system::error_code ec;
    // The non-blocking send alone takes it: no asynchronous operation is needed.
    EXPECT_EQ(send_now(p.sender, net::buffer(head), ec), head.size());
    EXPECT_FALSE(ec);
    std::string got(head.size(), '\0');
    net::read(p.receiver, net::buffer(got));
    EXPECT_EQ(got, head);
}

TEST(WriteAll, APeerThatIsGoneIsAnError) {
    tcp_pair p(false);
    p.receiver.set_option(net::socket_base::linger(true, 0));
    p.receiver.close();  // a reset, not a FIN
    // Until the sender's socket has taken the reset in (a condition, with a deadline).
    bool reset_seen = false;
    for (int i = 0; i < 1000 && !reset_seen; ++i) {
        pollfd fd{p.sender.native_handle(), POLLIN, 0};
        reset_seen = ::poll(&fd, 1, 10) == 1 && (fd.revents & (POLLERR | POLLHUP)) != 0;
    }
    ASSERT_TRUE(reset_seen);
    const std::string bytes = pattern(64 * 1024, 4);
    boost::system::error_code write_ec;
    std::size_t written = 1;
    net::co_spawn(p.io, [&]() -> task<void> {
        auto [ec, n] = co_await write_all(p.sender, net::buffer(bytes));
        write_ec = ec;
        written = n;
    }, net::detached);
    p.io.run();
    EXPECT_EQ(write_ec, boost::system::error_code(ECONNRESET, boost::system::system_category()))
        << write_ec.message();
    EXPECT_EQ(written, 0u);
}

// A stream with a write_now of its own (an HTTP/2 stream's answer queue): what it takes at
// once completes the write with no asynchronous write started; what it declines (0: its queue
// is full) goes through async_write_some, from where it stopped.
struct queue_stream {
    using executor_type = proxy::executor_type;
    executor_type ex;
    std::string queued;
    std::size_t room = 0;  // bytes write_now takes (all or nothing, as the HTTP/2 writer)
    int async_writes = 0;
    executor_type get_executor() { return ex; }

    template <class Buffers>
    std::size_t write_now(const Buffers& buffers, boost::system::error_code&) {
        const auto n = net::buffer_size(buffers);
        if (n > room) {
            return 0;
        }
        for (auto it = net::buffer_sequence_begin(buffers);
             it != net::buffer_sequence_end(buffers); ++it) {
            const net::const_buffer b(*it);
            queued.append(static_cast<const char*>(b.data()), b.size());
        }
        return n;
    }
    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        ++async_writes;
        return net::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const Buffers& bufs) {
                std::size_t n = 0;
                for (auto it = net::buffer_sequence_begin(bufs);
                     it != net::buffer_sequence_end(bufs); ++it) {
                    const net::const_buffer b(*it);
                    queued.append(static_cast<const char*>(b.data()), b.size());
                    n += b.size();
                }
                net::post(ex, [h = std::move(handler), n]() mutable {
                    std::move(h)(boost::system::error_code{}, n);
                });
            },
            token, buffers);
    }
};

TEST(WriteAll, AStreamsOwnWriteNowTakesTheBytesWithoutAnAsynchronousWrite) {
    net::io_context io;
    queue_stream q{io.get_executor(), {}, 0, 0};
    const std::string a = "head";
    const std::string b = pattern(100, 4);
    const std::array<net::const_buffer, 2> pieces{net::buffer(a), net::buffer(b)};
    std::size_t first = 0;
    std::size_t second = 0;
    net::co_spawn(io, [&]() -> task<void> {
        q.room = 1000;
        first = std::get<1>(co_await write_all(q, pieces));
        q.room = 0;  // full: the same write goes the asynchronous way
        second = std::get<1>(co_await write_all(q, pieces));
    }, net::detached);
    io.run();
    EXPECT_EQ(first, 104u);
    EXPECT_EQ(second, 104u);
    EXPECT_EQ(q.async_writes, 1);
    EXPECT_EQ(q.queued, a + b + a + b);
}

}  // namespace
}  // namespace stagegate::proxy
