// Private to proxy: writing a whole buffer sequence to a client or backend stream, first with
// one non-blocking send on the spot. On a plain TCP socket whose send buffer has room (nearly
// always, for a request or an answer's read), that send is the whole write: no Asio operation
// is started, so none is allocated, posted to the scheduler and resumed from there, which was
// a visible share of each request's instructions (loadtest/instructions). What the socket
// does not take at once, and every write to a TLS or test stream, goes through
// net::async_write as before. The same system calls either way: Asio's async write also
// starts with one speculative send.
#pragma once

#include "upstream_pool.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>

#include <array>
#include <cerrno>
#include <cstddef>
#include <sys/socket.h>
#include <sys/uio.h>
#include <tuple>
#include <type_traits>

namespace stagegate::proxy {

// One sendmsg(MSG_DONTWAIT) of `buffers` (at most 8 pieces; more go asynchronously) on a plain
// socket: the bytes it took. A full send buffer is not an error (0 bytes, ec clear); a reset or
// closed peer is. A stream with a write_now of its own (an HTTP/2 stream's answer, queued in
// memory) takes the bytes the same way. Other streams: 0, for the asynchronous path.
template <class Stream, class Buffers>
std::size_t send_now([[maybe_unused]] Stream& stream, [[maybe_unused]] const Buffers& buffers,
                     [[maybe_unused]] boost::system::error_code& ec) {
    if constexpr (std::is_same_v<Stream, stream_type>) {
        std::array<iovec, 8> pieces{};
        std::size_t count = 0;
        for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
             ++it) {
            const net::const_buffer b = *it;
            if (b.size() == 0) {
                continue;
            }
            if (count == pieces.size()) {
                return 0;  // unusual: the asynchronous path takes them all
            }
            pieces[count++] = {const_cast<void*>(b.data()), b.size()};
        }
        if (count == 0) {
            return 0;
        }
        msghdr message{};
        message.msg_iov = pieces.data();
        message.msg_iovlen = count;
        const ssize_t sent =
            ::sendmsg(stream.native_handle(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent >= 0) {
            return static_cast<std::size_t>(sent);
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            ec.assign(errno, boost::system::system_category());
        }
        return 0;
    } else if constexpr (requires { stream.write_now(buffers, ec); }) {
        return stream.write_now(buffers, ec);  // an HTTP/2 stream's answer (h2_session.cpp)
    } else {
        return 0;
    }
}

// How the first, synchronous try of a write went: finished (all written, or failed), or
// `written` bytes taken and the rest for write_rest.
struct write_start {
    boost::system::error_code ec;
    std::size_t written = 0;
    bool finished = false;
    std::tuple<boost::system::error_code, std::size_t> result() const { return {ec, written}; }
};

// send_now, as the first half of a write. The request path calls the halves itself,
//   auto w = write_at_once(stream, buffers);
//   auto [ec, n] = w.finished ? w.result() : co_await write_rest(stream, buffers, w.written);
// so that a write finished at once costs no coroutine frame either (a coroutine doing both
// halves was one more frame allocated, started and freed per write: two per proxied HTTP/1.1
// request).
template <class Stream, class Buffers>
write_start write_at_once(Stream& stream, const Buffers& buffers) {
    write_start w;
    w.written = send_now(stream, buffers, w.ec);
    w.finished = w.ec || w.written == net::buffer_size(buffers);
    return w;
}

// The rest of a write after write_at_once took `written` bytes, through net::async_write:
// (error, bytes written in all).
template <class Stream, class Buffers>
task<std::tuple<boost::system::error_code, std::size_t>> write_rest(Stream& stream,
                                                                    const Buffers& buffers,
                                                                    std::size_t written) {
    boost::beast::buffers_suffix<Buffers> rest(buffers);
    rest.consume(written);
    auto [async_ec, n] = co_await net::async_write(stream, rest, nothrow_awaitable);
    co_return std::tuple{async_ec, written + n};
}

}  // namespace stagegate::proxy
