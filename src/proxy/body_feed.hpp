// Private to proxy: a request body that keeps arriving while its call runs (a client-streaming
// or bidirectional gRPC call: Triton's ModelStreamInfer, or a call of a service the gateway
// does not parse whose request had not ended when it could be routed). The client's HTTP/2 stream
// (h2_session.cpp) appends what arrives; the backend's stream (h2_upstream.cpp) takes it as
// its flow-control window allows; the client's window reopens only by what the backend took.
// So a slow backend holds its client back through HTTP/2 flow control, and the gateway holds
// at most one window of a stream's bytes, never the whole stream. Both sides run on the
// worker's thread. Must not touch: framing (either session's), routing, metrics.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace stagegate::proxy {

struct body_feed {
    // The backend's stream: told when bytes arrive or the body ends, so it sends them.
    struct reader {
        virtual void body_arrived() = 0;

    protected:
        ~reader() = default;
    };
    // The client's stream: told how many bytes the backend took, to reopen its window.
    struct writer {
        virtual void body_taken(std::size_t n) = 0;

    protected:
        ~writer() = default;
    };

    std::string bytes;  // arrived; [at, size) not taken yet
    std::size_t at = 0;
    bool ended = false;              // the client ended its stream
    std::uint64_t taken_total = 0;   // bytes that went to a backend stream
    std::uint64_t arrivals = 0;      // appends so far: activity for the stream idle timeout
    reader* to = nullptr;            // set while an exchange sends the body
    writer* from = nullptr;          // set while the client's stream is open

    std::size_t available() const { return bytes.size() - at; }

    void append(const char* data, std::size_t n) {
        if (at > 0 && at == bytes.size()) {
            bytes.clear();
            at = 0;
        }
        bytes.append(data, n);
        ++arrivals;
        if (to) {
            to->body_arrived();
        }
    }
    void end() {
        ended = true;
        if (to) {
            to->body_arrived();
        }
    }
    // Copies up to `n` bytes to `out`, and lets the client send as many more.
    std::size_t take(std::uint8_t* out, std::size_t n) {
        n = std::min(n, available());
        std::memcpy(out, bytes.data() + at, n);
        at += n;
        taken_total += n;
        if (at == bytes.size()) {
            bytes.clear();
            at = 0;
        } else if (at >= 64 * 1024 && at * 2 >= bytes.size()) {
            bytes.erase(0, at);  // a stream that never drains fully does not grow without end
            at = 0;
        }
        if (from && n > 0) {
            from->body_taken(n);
        }
        return n;
    }
};

}  // namespace stagegate::proxy
