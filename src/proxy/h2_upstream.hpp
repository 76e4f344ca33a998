// Private to proxy: HTTP/2 to backends (a version with "protocol": "h2c", or "h2" over TLS):
// per worker, a few long-lived HTTP/2 connections per endpoint (one normally; a second only
// when two requests raced to open the first), each carrying many concurrent streams, and the
// exchange that sends one request as a stream and relays its answer. libnghttp2 does the
// framing, HPACK and flow control; the answer's flow-control window opens only as the client
// takes the bytes, so a slow client holds its backend stream back, not the connection.
// Over TLS the connection is the pool's (upstream_pool.cpp: handshake, verification, ALPN
// "h2" checked); only the stream the reader and writer use differs from h2c.
// The answer goes to an HTTP/1.1 client as the HTTP/1.1 exchange writes it (status line,
// fields, chunked body and, here, the trailer section); to an HTTP/2 client in parts
// (takes_answer_parts: its fields, body bytes and trailers as they are, for h2_session's
// HEADERS, DATA and trailing HEADERS).
// A gRPC answer's grpc-status (in its trailers, or its only HEADERS) is its outcome.
// Must not touch: routing, metrics recording, error answers (request_handling.hpp decides).
// Templated on the client stream as exchange.hpp; include it only from the proxy's .cpp files.
#pragma once

#include "answer_fields.hpp"
#include "body_feed.hpp"
#include "exchange.hpp"
#include "grpc_status.hpp"
#include "write_all.hpp"

#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stagegate::proxy {

class h2_client;

using wake_timer = net::basic_waitable_timer<clock, net::wait_traits<clock>, executor_type>;

// One stream's request and answer as nghttp2 delivers them; the exchange takes the answer
// piece by piece. Shared by the exchange and its connection (which lets go when the stream
// closes).
struct h2_call final : client_gone_listener, body_feed::reader {
    explicit h2_call(executor_type ex) : wake(ex) {}
    void client_gone() override { changed(); }  // the exchange sees slot.client_gone
    void body_arrived() override;               // resumes the request's DATA

    // --- the request, read by nghttp2 as the window allows
    std::string_view body;
    std::size_t body_sent = 0;
    // A streaming call's rest of the body, after `body` (null for a whole request).
    body_feed* feed = nullptr;
    bool body_deferred = false;  // nghttp2 waits for body_arrived
    bool detached = false;  // the exchange ended: nothing more is read from `body` or `feed`
    // --- the answer
    unsigned status = 0;
    // From the worker's block cache (h2_memory.hpp says why), as is `data`.
    answer_fields fields;  // the answer's end-to-end fields, and its trailers
    bool grpc_answer = false;  // its Content-Type is gRPC's (application/grpc...)
    std::optional<std::uint64_t> content_length;
    std::optional<unsigned> grpc_status;
    bool encoded = false;  // a Content-Encoding other than identity: its body is not read
    bool head_done = false;
    cached_string data;  // body bytes received, not yet taken
    bool ended = false;            // the backend ended the stream
    bool closed = false;           // the stream is over (ended, reset, or connection gone)
    std::uint32_t error_code = 0;  // RST_STREAM's or GOAWAY's code when closed without an end
    bool headers_sent = false;     // our HEADERS frame went out
    // Closed before the backend processed it: REFUSED_STREAM, past a GOAWAY's last stream id,
    // or the connection failed before our HEADERS left: it may go out again elsewhere.
    bool unprocessed = false;
    std::string closed_why;  // for messages
    wake_timer wake;         // cancelled on every change: the exchange waits on it
    std::int32_t stream_id = -1;
    std::weak_ptr<h2_client> client;

    void changed() { wake.cancel(); }
};

// The HTTP/2 client connections of one worker, by endpoint.
class h2_upstreams {
public:
    explicit h2_upstreams(worker& w);
    ~h2_upstreams();
    h2_upstreams(const h2_upstreams&) = delete;
    h2_upstreams& operator=(const h2_upstreams&) = delete;

    struct opened {
        std::shared_ptr<h2_call> call;
        std::optional<acquire_problem> refused;  // set: no connection could be had
        std::string_view authority;  // the endpoint's (in the route snapshot), for the log
    };
    // Sends the request (`head`: its fields as serialize_h2_request_head wrote them; `body`
    // must outlive the call) as a new stream on a connection to one of the version's
    // endpoints, in round-robin order, connecting when the endpoint whose turn it is has none.
    // `feed`: a streaming call's body still arriving after `body` (null otherwise).
    task<opened> open(const routing::model_route& model, const routing::version_route& version,
                      session_slot& slot, std::string_view head, std::string_view body,
                      body_feed* feed);
    // The call is over for the exchange: a stream still open is reset (CANCEL), and what it
    // received and nobody took is given back to the connection's window.
    void finish(h2_call& call);
    // Gives `n` bytes the client took back to the stream's flow-control window.
    void consumed(h2_call& call, std::size_t n);

    // Connections per endpoint for the gauges: active while a stream is open on them.
    void gauges(std::vector<worker::endpoint_connections>& out) const;

    // Idle connections close now, busy ones once their last stream ends (drain).
    void stop();
    // Every connection closes now (the drain deadline passed).
    void abort_all();

private:
    struct endpoint_clients {
        std::vector<std::shared_ptr<h2_client>> clients;
        std::uint32_t connecting = 0;
    };
    endpoint_clients& at(std::uint32_t id) {
        if (id >= endpoints_.size()) {
            endpoints_.resize(id + 1);
        }
        return endpoints_[id];
    }
    std::shared_ptr<h2_client> accepting(std::uint32_t endpoint_id);

    worker& w_;
    std::vector<endpoint_clients> endpoints_;
    std::unordered_map<std::uint32_t, std::uint32_t> round_robin_;  // by first endpoint id
    wake_timer connected_;  // cancelled when a connect ends: waiters look again
    bool stopped_ = false;
};

// The status an answer is recorded as: its own, except for a gRPC call, whose grpc-status is
// its outcome (grpc_status.hpp); a gRPC answer that ended without one broke the protocol
// (clients see INTERNAL) and counts as 500.
inline unsigned recorded_status(const request_context& rc, const exchange_outcome& out) {
    const auto status = static_cast<unsigned>(out.status);
    if (!rc.grpc || out.result == exchange_result::failed_before_response || status != 200) {
        return status;
    }
    return out.grpc_status ? http_status_of_grpc(*out.grpc_status) : 500;
}

// The gRPC status a call's client got: the gateway's own answer's code; Canceled when the
// client reset it; Internal when it broke off after its head (the client sees a reset) or a
// 200 ended without a grpc-status; the backend's grpc-status; for a non-200 answer without
// one, gRPC's mapping of its HTTP status.
inline unsigned grpc_code_got(const exchange_outcome& out) {
    const auto status = static_cast<unsigned>(out.status);
    if (out.result == exchange_result::failed_before_response) {
        return grpc_code_of_problem(out.problem.status, out.problem.code);
    }
    if (status == 499) {
        return grpc_code::cancelled;
    }
    if (out.cut_short) {
        return grpc_code::internal;
    }
    if (out.grpc_status) {
        return *out.grpc_status;
    }
    return status == 200 ? grpc_code::internal : grpc_code_of_http(status);
}

// Waits until the call changes or `deadline` passes; false once the deadline has passed.
task<bool> wait_for_change(h2_call& call, clock::time_point deadline);

// How the call's answer is framed for the client: `info.framing` (and its length) chosen.
void frame_h2_answer(const h2_call& call, response_info& info);
// The HTTP/1.1 status line and fields of the call's answer for the client, with framing
// (frame_h2_answer) and stamps (finish_response_head).
void write_h2_answer_head(std::string& out, const h2_call& call, response_info& info);
// The call's trailers as HTTP/1.1 field lines (a chunked answer's trailer section).
void write_h2_trailers(std::string& out, const h2_call& call);

// A client side that takes an answer in parts (an HTTP/2 client's stream, h2_session.cpp):
// the backend's status and fields as they are, with the framing and stamps `info` says; then
// the body's bytes, unframed, through its writes; then the end, with the trailers. Each part
// is false when the client's stream is gone (reset, or its connection ended). An answer from
// an HTTP/2 backend to an HTTP/2 client is then never written as HTTP/1.1 and read back
// (which cost about 5k instructions a gRPC call: the head's lines, the body's chunk framing,
// the trailers' lines).
template <class Down>
concept takes_answer_parts = requires(Down& d, const h2_call& call, const response_info& info) {
    { d.answer_head(call, info) } -> std::same_as<bool>;
    { d.answer_end(call) } -> std::same_as<bool>;
};

// Sends one request over HTTP/2 and relays the answer to `down`, as exchange() does over
// HTTP/1.1: `a.head` holds the request's fields (serialize_h2_request_head) on entry and an
// HTTP/1.1 client's answer head after (a client taking answers in parts gets them as parts).
// A stream the backend refused unprocessed (or a connection that failed before our request
// left) is tried once more, on another connection.
template <class Down>
task<exchange_outcome> h2_exchange(Down& down, h2_upstreams& ups, const exchange_args& a,
                                   std::string_view& authority) {
    constexpr bool to_client = !std::is_same_v<Down, discard_sink>;
    exchange_outcome out;
    const auto started = coarse_now();
    const auto& timeouts = a.model.timeouts;
    auto total_deadline =
        timeouts.total.count() > 0 ? started + timeouts.total : clock::time_point::max();
    // A gRPC client's deadline bounds the call too (the backend sees grpc-timeout as well).
    if (a.grpc_timeout) {
        total_deadline = std::min(total_deadline, started + *a.grpc_timeout);
    }
    const auto first_byte_deadline = std::min(started + timeouts.first_byte, total_deadline);
    auto fail = [&](std::string_view code, http::status status, std::string message,
                    metrics::upstream_failure kind) {
        out.result = exchange_result::failed_before_response;
        out.status = status;
        out.problem.status = status;
        out.problem.code = code;
        out.problem.message = std::move(message);
        out.failure = kind;
        return out;
    };

    // The client reset its stream: nginx's 499, nobody's failure (a version whose clients give
    // up more often shows it in its latency and its 4xx share).
    auto client_left = [&] {
        out.result = exchange_result::done_close;
        out.status = static_cast<http::status>(499);
        return out;
    };
    std::shared_ptr<h2_call> call;
    for (int attempt = 0;; ++attempt) {
        auto got = co_await ups.open(a.model, a.version, a.slot, a.head, a.body, a.rc.feed);
        authority = got.authority;
        if (got.refused) {
            out.result = exchange_result::failed_before_response;
            out.status = got.refused->problem.status;
            out.problem = std::move(got.refused->problem);
            out.failure = got.refused->failure;
            // The caller names the model, as for the exchange's own failures.
            const std::string named = "model " + a.model.name + " ";
            if (out.problem.message.starts_with(named)) {
                out.problem.message.erase(0, named.size());
            }
            co_return out;
        }
        call = std::move(got.call);
        a.slot.on_client_gone = call.get();
        auto head_deadline = first_byte_deadline;
        auto fed = a.rc.feed ? a.rc.feed->arrivals + a.rc.feed->ended : 0;
        while (!call->head_done && !call->closed && !a.slot.client_gone) {
            if (!co_await wait_for_change(*call, head_deadline)) {
                // A streaming call's first-byte timeout restarts with each message its client
                // sends and at its end: a backend may answer only once the request is whole,
                // as Envoy's route timeout starts when the request has been received.
                if (a.rc.feed && a.rc.feed->arrivals + a.rc.feed->ended != fed &&
                    head_deadline < total_deadline) {
                    fed = a.rc.feed->arrivals + a.rc.feed->ended;
                    head_deadline = std::min(coarse_now() + timeouts.first_byte, total_deadline);
                    continue;
                }
                a.slot.on_client_gone = nullptr;
                ups.finish(*call);
                co_return fail("upstream_timeout", http::status::gateway_timeout,
                               "reading the response header from version " + a.version.name +
                                   " at " + std::string(authority) + ": timed out",
                               metrics::upstream_failure::timeout);
            }
        }
        a.slot.on_client_gone = nullptr;
        if (a.slot.client_gone) {
            ups.finish(*call);  // resets the backend's stream
            co_return client_left();
        }
        if (call->head_done) {
            break;
        }
        ups.finish(*call);
        // Nothing reached the backend: once more, on another connection; not a streaming call
        // whose later bytes were taken (they are gone with the stream).
        if (call->unprocessed && attempt == 0 && (!a.rc.feed || a.rc.feed->taken_total == 0)) {
            continue;
        }
        co_return fail("upstream_reset", http::status::bad_gateway,
                       "reading the response header from version " + a.version.name + " at " +
                           std::string(authority) + ": " + call->closed_why,
                       metrics::upstream_failure::reset);
    }
    struct finish_on_exit {
        h2_upstreams& ups;
        h2_call& call;
        session_slot& slot;
        ~finish_on_exit() {
            slot.on_client_gone = nullptr;
            ups.finish(call);
        }
    } finished{ups, *call, a.slot};
    a.slot.on_client_gone = call.get();

    out.status = static_cast<http::status>(call->status);
    if (a.w.access_log_on()) {
        out.head_at = clock::now();
    }
    response_info info = response_info_for(a);
    constexpr bool in_parts = takes_answer_parts<Down>;
    a.head.clear();
    if constexpr (to_client && !in_parts) {
        write_h2_answer_head(a.head, *call, info);
    } else {
        frame_h2_answer(*call, info);
    }
    if (a.capture) {
        a.capture->start(call->status, call->encoded);
    }
    bool head_sent = false;
    // The client write in two halves (write_all.hpp): at once when the stream takes it, the
    // usual case, with no coroutine frame; the rest, if any, asynchronously.
    auto to_down_now = [&](std::span<const net::const_buffer> pieces) -> write_start {
        if constexpr (to_client) {
            a.slot.expire_in(a.w.config().client.request);
            auto w = write_at_once(down, pieces);
            if (w.finished) {
                a.slot.no_deadline();
            }
            return w;
        } else {
            return write_start{{}, 0, true};
        }
    };
    auto to_down_rest = [&](std::span<const net::const_buffer> pieces,
                            std::size_t written) -> task<bool> {
        if constexpr (to_client) {
            auto [ec, n] = co_await write_rest(down, pieces, written);
            a.slot.no_deadline();
            co_return !ec;
        } else {
            co_return true;
        }
    };
    static constexpr std::string_view crlf = "\r\n";
    static constexpr std::string_view last_chunk = "0\r\n";
    grpc_message_counter messages;  // a streaming call's answer messages
    for (;;) {
        // Whatever arrived is relayed before the next wait: a streamed answer reaches the
        // client as it leaves the backend.
        cached_string taken;
        taken.swap(call->data);
        const bool last = call->ended;
        if (call->closed && !call->ended) {
            // Reset or lost after the head: the client sees a cut-short answer.
            ups.consumed(*call, taken.size());
            if (!head_sent && !to_client) {
                co_return fail("upstream_reset", http::status::bad_gateway,
                               "version " + a.version.name + " at " + std::string(authority) +
                                   ": " + call->closed_why,
                               metrics::upstream_failure::reset);
            }
            if (!head_sent) {
                if constexpr (in_parts) {
                    static_cast<void>(down.answer_head(*call, info));  // cut short either way
                } else {
                    std::array<net::const_buffer, 1> pieces{net::buffer(a.head)};
                    if (const auto w = to_down_now(pieces); !w.finished) {
                        co_await to_down_rest(pieces, w.written);
                    }
                }
            }
            out.result = exchange_result::done_close;
            out.failure = metrics::upstream_failure::reset;
            out.cut_short = true;
            co_return out;
        }
        std::array<net::const_buffer, 7> pieces;
        std::size_t count = 0;
        if (!head_sent) {
            if constexpr (in_parts) {
                if (!down.answer_head(*call, info)) {
                    ups.consumed(*call, taken.size());  // dropped, but the window must reopen
                    co_return client_left();
                }
                head_sent = true;
            } else {
                pieces[count++] = net::buffer(a.head);
            }
        }
        char size_line[24];
        const bool chunked = !in_parts && info.framing == body_framing::chunked;
        if (!taken.empty() && info.framing != body_framing::none) {
            if (chunked) {
                pieces[count++] = net::buffer(size_line, format_chunk_size(size_line, taken.size()));
                pieces[count++] = net::buffer(taken);
                pieces[count++] = net::buffer(crlf);
            } else {
                pieces[count++] = net::buffer(taken);
            }
        }
        std::string trailers;
        if (last && chunked) {
            write_h2_trailers(trailers, *call);
            pieces[count++] = net::buffer(last_chunk);
            pieces[count++] = net::buffer(trailers);
            pieces[count++] = net::buffer(crlf);
        }
        out.body_bytes += taken.size();
        if (a.rc.feed && !taken.empty()) {
            // A streaming call's answer messages are its events (its first one its "first
            // token"), as an OpenAI stream's are.
            if (const auto whole = messages.count(taken); whole > 0) {
                const auto now = clock::now();
                if (!out.stream) {
                    out.stream = exchange_outcome::stream_timing{now, now, 0};
                }
                out.stream->last_event = now;
                out.stream->events += whole;
            }
        }
        if (a.capture) {
            a.capture->append(taken.data(), taken.size());
        }
        if (count > 0) {
            const std::span<const net::const_buffer> out_pieces(pieces.data(), count);
            const auto w = to_down_now(out_pieces);
            if (!(w.finished ? !w.ec : co_await to_down_rest(out_pieces, w.written))) {
                ups.consumed(*call, taken.size());  // dropped, but the window must reopen
                co_return client_left();            // the client went away
            }
            head_sent = true;
        }
        if (!taken.empty()) {
            ups.consumed(*call, taken.size());
        }
        if (last) {
            if constexpr (in_parts) {
                // The client may have reset its stream as the backend ended its own, with no
                // byte left to write that would have found out.
                if (!down.answer_end(*call)) {
                    co_return client_left();
                }
            }
            break;
        }
        auto idle_deadline = timeouts.stream_idle.count() > 0
                                 ? std::min(coarse_now() + timeouts.stream_idle, total_deadline)
                                 : total_deadline;
        auto arrivals = a.rc.feed ? a.rc.feed->arrivals : 0;
        while (call->data.empty() && !call->ended && !call->closed) {
            if (a.slot.client_gone) {
                co_return client_left();  // finished resets the backend's stream
            }
            if (!co_await wait_for_change(*call, idle_deadline)) {
                // A streaming call's own messages are activity too (Envoy's stream idle
                // timeout counts both directions).
                if (a.rc.feed && a.rc.feed->arrivals != arrivals &&
                    idle_deadline < total_deadline) {
                    arrivals = a.rc.feed->arrivals;
                    idle_deadline = std::min(coarse_now() + timeouts.stream_idle, total_deadline);
                    continue;
                }
                out.result = exchange_result::done_close;
                out.failure = metrics::upstream_failure::timeout;
                out.cut_short = true;
                co_return out;
            }
        }
    }
    if (a.capture) {
        a.capture->complete = true;
    }
    out.grpc_status = call->grpc_status;
    out.result = info.keep_alive ? exchange_result::done_keep_alive : exchange_result::done_close;
    co_return out;
}

}  // namespace stagegate::proxy
