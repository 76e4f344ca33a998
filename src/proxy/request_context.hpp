// Private to proxy: the per-request facts every step of handling shares (request id, client
// HTTP version, keep-alive, HEAD, what the access log will say), and the session registration with the worker.
// Must not touch: sockets or routes; this is plain data.
#pragma once

#include "upstream_pool.hpp"

#include "stagegate/proxy/access_log.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>

namespace stagegate::proxy {

struct body_feed;

// A request id held inline: ids are short (acceptable_request_id caps them at 128 bytes), and
// one heap allocation per request for them is not worth it.
class request_id {
public:
    void assign(std::string_view id) {
        size_ = static_cast<std::uint8_t>(std::min(id.size(), data_.size()));
        std::copy_n(id.data(), size_, data_.data());
    }
    // A fresh UUID version 4: xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx
    void generate(worker& w) {
        static constexpr char hex[] = "0123456789abcdef";
        std::uint64_t a = w.next_random();
        std::uint64_t b = w.next_random();
        a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
        b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
        std::size_t pos = 0;
        auto put = [&](std::uint64_t v) {
            for (int i = 15; i >= 0; --i) {
                if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
                    data_[pos++] = '-';
                }
                data_[pos++] = hex[(v >> (i * 4)) & 0xf];
            }
        };
        put(a);
        put(b);
        size_ = 36;
    }
    operator std::string_view() const { return {data_.data(), size_}; }

private:
    std::array<char, 128> data_;
    std::uint8_t size_ = 0;
};

// Per-request facts shared by the routing and forwarding steps.
struct request_context {
    request_id id;
    bool keep_alive = true;
    unsigned client_version = 11;
    bool head = false;
    // An HTTP/2 stream: its answer is still written as HTTP/1.1 (client_version 11) and
    // translated (h2_session.cpp); the access log says HTTP/2.0.
    bool http2 = false;
    // A gRPC call (Content-Type application/grpc): the gateway's own errors are trailers-only
    // gRPC answers, and the answer's grpc-status is its outcome.
    bool grpc = false;
    // A streaming gRPC call's body still arriving (body_feed.hpp): the request's body holds
    // its first message(s) only. Such a call is neither retried past its first bytes nor
    // mirrored, and its answer is not read for predictions.
    body_feed* feed = nullptr;
    // What the access log says of this request: each step fills in what it learns (routing,
    // the exchange, the gateway's own answers). Views point at the request, the route
    // snapshot or literals, and are read before handle_request lets go of them.
    access_entry log;
};

// Registers a session with its worker for the session's lifetime (drain finds idle ones,
// the ticker enforces deadlines). A mirror has no client stream (null).
class slot_guard {
public:
    slot_guard(worker& w, stream_type* stream) : w_(w) {
        slot_.stream = stream;
        w_.link(slot_);
    }
    ~slot_guard() { w_.unlink(slot_); }
    slot_guard(const slot_guard&) = delete;
    slot_guard& operator=(const slot_guard&) = delete;
    session_slot& slot() { return slot_; }

private:
    worker& w_;
    session_slot slot_;
};

}  // namespace stagegate::proxy
