// Private to proxy: the exchange core, the one place a request goes upstream and its answer
// comes back. It writes the serialized request, skips 1xx answers, rewrites the answer's head
// for the client, and relays the body as it arrives (one read in flight, each read written
// before the next), capturing the body for prediction reading. The client path relays to the
// client's stream; the mirror path to a discard_sink (nothing is written, the body is still
// captured). An OpenAI answer's bytes also go through a stream_watch (a stream: how it ended,
// its events and tokens) or a token_scan (its usage). Both acquire the connection and lend it
// the same way (acquire_failure, exchange_over).
// Allocates nothing per answer once warm: the relay buffer and what the relay keeps besides
// (relay_state) are lent, and the coroutine frame stays within what Asio recycles (1020 bytes;
// the caller owns the outcome).
// Must not touch: routing, metrics recording, retries, error answers (callers decide those).
// Templated on both streams so tests drive it over in-memory streams; include it only from
// the proxy's .cpp files and tests (Beast).
#pragma once

#include "http_util.hpp"
#include "relay_reader.hpp"
#include "request_context.hpp"
#include "stream_watch.hpp"
#include "token_scan.hpp"
#include "upstream_pool.hpp"
#include "write_all.hpp"

#include "stagegate/metrics/shard.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

namespace stagegate::proxy {

// What an upstream exchange that failed counts as: the deadline passed, the backend closed or
// reset the connection, or it spoke something other than HTTP.
metrics::upstream_failure upstream_failure_of(const boost::system::error_code& ec,
                                              bool timed_out);

enum class exchange_result {
    done_keep_alive,         // response fully relayed, the client connection may continue
    done_close,              // response relayed or cut short: close the client connection
    failed_before_response,  // nothing sent to the client yet: `problem` says what to answer
};

struct exchange_outcome {
    exchange_result result = exchange_result::done_close;
    http::status status = http::status::bad_gateway;  // what was relayed, or problem.status
    answer_problem problem;  // failed_before_response only; the message names version and endpoint
    std::optional<metrics::upstream_failure> failure;
    // The request's first write failed with nothing written: no byte reached the backend,
    // so the request may go out again on another connection.
    bool nothing_sent = false;
    // The answer ended cleanly and the backend keeps the connection: it may serve again.
    bool reusable = false;
    // The backend's answer broke off after its head reached the client (the backend closed or
    // reset the connection, or stalled past the stream idle timeout or the total cap), or an
    // OpenAI stream ended without its end event or with an error event: the client saw the
    // status, yet the answer failed, and counts as the version's failure.
    bool cut_short = false;
    // A watched OpenAI stream that sent data events, or a streaming gRPC call that sent answer
    // messages: when the first and the last were read.
    struct stream_timing {
        clock::time_point first_event;
        clock::time_point last_event;
        std::uint32_t events = 0;
    };
    std::optional<stream_timing> stream;
    // A 2xx answer of an OpenAI endpoint, read as it was relayed: its input tokens (from its
    // usage, 0 without) and output tokens (from its usage; a stream without one: its content
    // deltas, one token each). A non-streamed answer without usage has none.
    struct token_count {
        std::uint64_t input = 0;
        std::uint64_t output = 0;
        metrics::token_source source = metrics::token_source::usage;
    };
    std::optional<token_count> tokens;
    // How a watched OpenAI stream ended, once its head reached the client.
    std::optional<metrics::stream_outcome> stream_end;
    // For the access log: when the backend's answer head was read, and the body bytes relayed.
    clock::time_point head_at{};
    std::uint64_t body_bytes = 0;
    // A gRPC answer's grpc-status (its trailers', or its only HEADERS'), over HTTP/2 backends.
    std::optional<unsigned> grpc_status;
};

// An answer's body kept for reading its prediction once it has been relayed: only 2xx,
// uncompressed bodies up to the model's max_body_bytes.
struct body_capture {
    std::string& bytes;
    std::uint64_t limit = 0;
    bool wanted = false;    // this answer is to be read
    bool overflow = false;  // longer than the limit: counted, not read
    bool complete = false;  // the whole body arrived

    void start(unsigned status, bool encoded) {
        bytes.clear();
        wanted = status >= 200 && status < 300 && !encoded;
    }
    void append(const char* data, std::size_t n) {
        if (!wanted || overflow) {
            return;
        }
        if (bytes.size() + n > limit) {
            overflow = true;
            return;
        }
        bytes.append(data, n);
    }
};

// Everything one exchange needs besides the two streams.
struct exchange_args {
    // On entry the request's head as the backend's protocol takes it (serialize_request_head,
    // or serialize_h2_request_head's entries); then scratch for the client's response head.
    std::string& head;
    std::string_view body;  // the request body
    const request_context& rc;
    worker& w;
    session_slot& slot;
    const routing::model_route& model;
    const routing::version_route& version;
    body_capture* capture;  // null: the body is not read
    // An OpenAI request: a 2xx event stream that ends without the API's end event (or with an
    // error event) is cut short, although its framing ended cleanly.
    openai_stream stream_end = openai_stream::none;
    // A gRPC call's grpc-timeout: the call's total deadline is the earlier of it and the
    // model's total cap (h2_exchange).
    std::optional<std::chrono::milliseconds> grpc_timeout = std::nullopt;
};

// What the client's answer head is stamped with (framing is left to the exchange).
inline response_info response_info_for(const exchange_args& a) {
    response_info info;
    info.version = a.version.name;
    info.stage = a.model.stage;
    info.request_id = a.rc.id;
    info.client_version = a.rc.client_version;
    info.head_request = a.rc.head;
    info.keep_alive = a.rc.keep_alive && !a.w.keep_alive_ended();
    return info;
}

// What relaying one answer keeps besides its buffer: its parser (with a copy of the answer's
// Connection headers), the client's answer head's stamps, and for an OpenAI answer the readers
// of its events or of its usage. Lent for one exchange from the worker's block cache: in the
// exchange's coroutine frame they made it 2 KiB, which Asio does not recycle (frames up to
// 1020 bytes only): a malloc per request.
struct relay_state {
    std::optional<relay_reader> parser;
    response_info info;
    std::optional<stream_watch> watch;    // a watched OpenAI stream
    std::optional<token_scan> usage_scan;  // a non-streamed OpenAI answer: only its usage
    exchange_outcome::stream_timing timing;
};

class lent_relay_state {
public:
    lent_relay_state()
        : state_(new (block_cache::local().allocate(sizeof(relay_state))) relay_state) {}
    ~lent_relay_state() {
        state_->~relay_state();
        block_cache::local().deallocate(state_, sizeof(relay_state));
    }
    lent_relay_state(const lent_relay_state&) = delete;
    lent_relay_state& operator=(const lent_relay_state&) = delete;
    relay_state& operator*() { return *state_; }

private:
    relay_state* state_;
};

// An upstream failure before any byte of the answer reached the client: `out` says what to
// answer (502, or 504 when `timed_out`) and how the failure counts. `what`: what the exchange
// was doing ("sending the request to").
void fail_before_response(exchange_outcome& out, const boost::system::error_code& ec,
                          bool timed_out, std::string_view what,
                          const routing::version_route& version,
                          const routing::upstream_endpoint& endpoint);

// What an OpenAI answer said of its tokens (its watched stream's, or its usage), and how a
// watched stream ended (`ended`), into `out`.
void read_tokens(exchange_outcome& out, relay_state& state,
                 std::optional<metrics::stream_outcome> ended);

// The downstream of a mirrored request: nobody. The exchange writes nothing to it, and an
// upstream failure at any point counts as one before the answer (nothing reached a client).
struct discard_sink {};

// Lends a relay buffer for one response and takes it back on every path.
class borrowed_buffer {
public:
    borrowed_buffer(upstream_pool& pool, bool large)
        : pool_(pool), buffer_(pool.borrow_buffer(large)), large_(large) {}
    ~borrowed_buffer() { pool_.return_buffer(std::move(buffer_), large_); }
    borrowed_buffer(const borrowed_buffer&) = delete;
    borrowed_buffer& operator=(const borrowed_buffer&) = delete;
    char* data() { return buffer_.get(); }
    std::size_t size() const { return large_ ? large_relay_buffer_size : relay_buffer_size; }

private:
    upstream_pool& pool_;
    relay_buffer buffer_;
    bool large_;
};

enum class body_progress { relay, need_bytes };

// Parses what `buffer` holds of the answer's body into the parser's relay buffer: `relay` once
// body bytes were delivered, the body ended or the relay buffer is full; `need_bytes` when
// the buffer holds nothing more to deliver (all of it consumed, or an incomplete chunk line).
// A framing error is left in `ec` (with `relay`).
body_progress parse_buffered_body(relay_reader& parser, beast::flat_buffer& buffer,
                                  boost::system::error_code& ec);

// Beast reads at most the read buffer's free capacity per call (512 bytes at least): a large
// body through the small buffer a head needs took hundreds of recv calls. Makes room for one
// relay buffer's worth (the pool shrinks the buffer again when the connection goes back idle)
// and says whether the body is large enough for a large relay buffer.
bool make_room_for_body(beast::flat_buffer& buffer, const relay_reader& parser);

// The upstream side of one exchange: its stream, its read buffer (kept with the connection,
// it may hold bytes read ahead), the endpoint (for messages), and what happens around the
// exchange: `begin` before the first byte, `end` after the last, told whether the connection
// may serve again. A pooled connection is lent out in between (pooled_upstream); tests use an
// in-memory one.
template <class Stream>
struct pooled_upstream {
    Stream& stream;
    acquired& got;
    worker& w;
    session_slot& slot;

    beast::flat_buffer& buffer() { return got.connection->buffer; }
    const routing::upstream_endpoint& endpoint() const { return *got.endpoint; }
    void begin() {
        w.pool().lend(got.endpoint->id, +1);
        slot.upstream = &got.connection->lowest();  // the ticker closes it past its deadline
    }
    void end(bool reusable) {
        slot.upstream = nullptr;
        w.pool().lend(got.endpoint->id, -1);
        if (reusable) {
            w.pool().release(std::move(got.connection));
        }
    }
};

// Calls `end` on every way out of the exchange.
template <class Upstream>
class upstream_in_use {
public:
    explicit upstream_in_use(Upstream& up) : up_(up) { up_.begin(); }
    ~upstream_in_use() { up_.end(reusable); }
    upstream_in_use(const upstream_in_use&) = delete;
    upstream_in_use& operator=(const upstream_in_use&) = delete;
    bool reusable = false;

private:
    Upstream& up_;
};

// Writes the request upstream and streams the response to `down`; `out` says how it went.
// Upstream::end learns whether the connection ended cleanly on both sides (then it may be
// reused). `a` and `out` are the caller's, who awaits this at once (so that the frame holds
// no copy of either).
template <class Down, class Upstream>
task<void> exchange(Down& down, Upstream up, const exchange_args& a, exchange_outcome& out) {
    constexpr bool to_client = !std::is_same_v<Down, discard_sink>;
    out = exchange_outcome{};
    upstream_in_use<Upstream> in_use(up);
    auto& stream = up.stream;
    auto& up_buffer = up.buffer();
    auto& slot = a.slot;
    const auto started = coarse_now();
    const auto& timeouts = a.model.timeouts;
    const auto total_deadline =
        timeouts.total.count() > 0 ? started + timeouts.total : clock::time_point::max();
    const auto first_byte_deadline = std::min(started + timeouts.first_byte, total_deadline);
    // The deadline the last body read was given: whether a stream cut by a deadline was cut
    // by the idle timeout or by the total cap.
    auto read_deadline = clock::time_point::max();

    slot.upstream_expire_at(first_byte_deadline);
    {
        std::array<net::const_buffer, 2> request_bytes{net::buffer(a.head),
                                                       net::buffer(a.body)};
        const auto w = write_at_once(stream, request_bytes);
        auto [ec, n] =
            w.finished ? w.result() : co_await write_rest(stream, request_bytes, w.written);
        if (ec) {
            fail_before_response(out, ec, slot.upstream_timed_out, "sending the request to",
                                 a.version, up.endpoint());
            out.nothing_sent = n == 0 && !slot.upstream_timed_out;
            co_return;
        }
    }

    lent_relay_state lent;
    auto& state = *lent;
    auto& parser = state.parser;
    for (;;) {
        a.head.clear();  // the request head has gone; the client's response head goes here
        parser.emplace(a.head, a.rc.client_version, a.rc.head, 64 * 1024);
        // Read here rather than by http::async_read_header, to judge a start line as it
        // arrives: one that cannot become a status line is a 502 at once, not after the
        // first-byte timeout (could_be_status_line).
        boost::system::error_code ec;
        bool start_line_taken = false;
        while (!parser->is_header_done()) {
            if (up_buffer.size() > 0) {
                const auto used = parser->put(up_buffer.data(), ec);
                up_buffer.consume(used);
                start_line_taken = start_line_taken || used > 0;
                if (ec && ec != http::error::need_more) {
                    break;
                }
                ec = {};
                if (parser->is_header_done()) {
                    break;
                }
                const auto rest = up_buffer.cdata();
                if (!start_line_taken &&
                    !could_be_status_line(std::string_view(
                        static_cast<const char*>(rest.data()), rest.size()))) {
                    ec = http::error::bad_version;
                    break;
                }
            }
            auto [read_ec, n] = co_await stream.async_read_some(
                up_buffer.prepare(beast::read_size(up_buffer, 65536)), nothrow_awaitable);
            up_buffer.commit(n);
            if (read_ec) {
                ec = head_read_failure(read_ec, *parser);
                break;
            }
        }
        if (ec) {
            fail_before_response(out, ec, slot.upstream_timed_out,
                                 "reading the response header from", a.version, up.endpoint());
            co_return;
        }
        const unsigned status = parser->status();
        if (status == 101) {
            // Upgrade is hop-by-hop and never forwarded, so a 101 was not asked for: relaying
            // it handed the client a "chunked 101" on a connection neither side can use.
            // 502, as HAProxy answers.
            fail_before_response(
                out, boost::system::errc::make_error_code(boost::system::errc::protocol_error),
                slot.upstream_timed_out, "an unrequested 101 Switching Protocols from", a.version,
                up.endpoint());
            co_return;
        }
        if (status < 100 || status >= 200) {
            break;  // 1xx interim answers are consumed here; we never send Expect upstream
        }
    }
    const unsigned status = parser->status();
    out.status = static_cast<http::status>(status);
    if (a.w.access_log_on()) {
        out.head_at = clock::now();  // only the access log reads it: no clock read otherwise
    }
    const bool upstream_keep_alive = parser->keep_alive();
    auto& info = state.info;
    info = response_info_for(a);
    if (a.rc.head || status == 204 || status == 304) {
        info.framing = body_framing::none;
    } else if (auto length = parser->content_length()) {
        info.framing = body_framing::content_length;
        info.content_length = *length;
    } else if (a.rc.client_version >= 11) {
        info.framing = body_framing::chunked;  // upstream chunked or close-delimited
    } else {
        info.framing = body_framing::close_delimited;
        info.keep_alive = false;
    }
    if constexpr (to_client) {
        finish_response_head(a.head, info);
    }
    if (a.capture) {
        a.capture->start(status, parser->encoded());
    }
    auto& watch = state.watch;
    if (a.stream_end != openai_stream::none && status >= 200 && status < 300 &&
        parser->event_stream() && !parser->encoded() && !a.rc.head) {
        watch.emplace(a.stream_end);
    }
    auto& timing = state.timing;
    // A non-streamed OpenAI answer: only its usage is read.
    auto& usage_scan = state.usage_scan;
    if (a.stream_end != openai_stream::none && !watch && status >= 200 && status < 300 &&
        !parser->encoded() && !a.rc.head) {
        usage_scan.emplace(a.stream_end);
    }

    // The relay buffer is lent for each read's bytes, from the parse to the client's write,
    // and given back while the backend is silent: an open stream between two tokens holds
    // none (#19: memory per open stream), and a worker needs as many as it relays at once.
    const bool large_body = make_room_for_body(up_buffer, *parser);
    std::optional<borrowed_buffer> buffer;
    const auto lend_buffer = [&] {
        buffer.emplace(a.w.pool(), large_body);
        parser->set_buffer(buffer->data(), buffer->size());
    };
    // Whether any byte reached the client: from then on a failure can only cut the answer
    // short. Never true for a discard_sink.
    bool head_sent = false;
    static constexpr std::string_view crlf = "\r\n";
    static constexpr std::string_view crlf_last_chunk = "\r\n0\r\n\r\n";
    static constexpr std::string_view last_chunk = "0\r\n\r\n";
    // Every read is relayed as soon as it is parsed: the body is parsed out of what the backend
    // has sent so far and written to the client before the next read, so a streamed answer
    // (SSE tokens, chunked progress) reaches the client as it leaves the backend, and a slow
    // client holds the backend back (one read in flight, written before the next). Beast's
    // read_some would wait for the next chunk's size line after a chunk's data.
    parser->eager(true);
    for (;;) {
        std::size_t got = 0;
        if (!parser->is_done()) {
            if constexpr (to_client) {
                if (!head_sent && up_buffer.size() == 0) {
                    // Nothing of the body came with the head: the client gets the head now,
                    // not when the first body bytes arrive (a stream's first token may be
                    // seconds off).
                    slot.expire_in(a.w.config().client.request);
                    const auto head = net::buffer(a.head);
                    const auto w = write_at_once(down, head);
                    auto [ec, n] =
                        w.finished ? w.result() : co_await write_rest(down, head, w.written);
                    slot.no_deadline();
                    if (ec) {
                        out.result = exchange_result::done_close;  // client went away
                        read_tokens(out, state, metrics::stream_outcome::client_gone);
                        co_return;
                    }
                    head_sent = true;
                }
            }
            lend_buffer();
            boost::system::error_code ec;
            while (parse_buffered_body(*parser, up_buffer, ec) == body_progress::need_bytes) {
                buffer.reset();  // nothing of the body in it yet
                if (slot.upstream_timed_out) {
                    // The total cap passed while the client took the last read, and the ticker
                    // closed the connection: re-arming would clear the flag and the closed
                    // socket's error would pass for a reset.
                    ec = net::error::timed_out;
                    break;
                }
                // Each read of the body gets the stream idle timeout from when it starts (a gap
                // between two reads, not the answer's length), within the total cap if any.
                read_deadline =
                    timeouts.stream_idle.count() > 0
                        ? std::min(coarse_now() + timeouts.stream_idle, total_deadline)
                        : total_deadline;
                slot.upstream_expire_at(read_deadline);
                auto [read_ec, n] = co_await stream.async_read_some(
                    up_buffer.prepare(beast::read_size(up_buffer, 65536)), nothrow_awaitable);
                up_buffer.commit(n);
                lend_buffer();
                if (read_ec == net::error::eof && parser->got_some()) {
                    parser->put_eof(ec);  // the end of a close-delimited body, else too short
                    break;
                }
                if (read_ec) {
                    ec = read_ec;
                    break;
                }
            }
            if (ec) {
                if (!head_sent) {
                    fail_before_response(out, ec, slot.upstream_timed_out,
                                         "reading the response body from", a.version,
                                         up.endpoint());
                    co_return;
                }
                out.result = exchange_result::done_close;  // the client sees a cut-short body
                out.failure = slot.upstream_timed_out ? metrics::upstream_failure::timeout
                                                      : metrics::upstream_failure::reset;
                out.cut_short = true;
                // A stream the gateway cut (its deadline), or one the backend broke off.
                const bool total_passed =
                    timeouts.total.count() > 0 &&
                    (read_deadline == total_deadline || coarse_now() >= total_deadline);
                read_tokens(out, state,
                            !slot.upstream_timed_out
                                ? metrics::stream_outcome::cut_by_upstream
                                : (total_passed ? metrics::stream_outcome::cut_by_total_timeout
                                                : metrics::stream_outcome::cut_by_idle_timeout));
                co_return;
            }
            // While the client takes what was read, the backend is not idle but held back:
            // only the total cap runs.
            slot.upstream_expire_at(total_deadline);
            got = buffer->size() - parser->buffer_left();
            out.body_bytes += got;
            if (a.capture) {
                a.capture->append(buffer->data(), got);
            }
            if (usage_scan) {
                usage_scan->feed(buffer->data(), got);
            }
            if (watch) {
                watch->feed(buffer->data(), got);
                if (watch->data_events() > timing.events) {
                    const auto now = clock::now();
                    if (timing.events == 0) {
                        timing.first_event = now;
                    }
                    timing.last_event = now;
                    timing.events = watch->data_events();
                }
            }
        }
        const bool last = parser->is_done();
        if constexpr (to_client) {
            std::array<net::const_buffer, 4> pieces;
            std::size_t count = 0;
            char size_line[24];
            if (!head_sent) {
                pieces[count++] = net::buffer(a.head);
            }
            if (info.framing == body_framing::chunked) {
                if (got > 0) {
                    pieces[count++] = net::buffer(size_line, format_chunk_size(size_line, got));
                    pieces[count++] = net::buffer(buffer->data(), got);
                    pieces[count++] = net::buffer(last ? crlf_last_chunk : crlf);
                } else if (last) {
                    pieces[count++] = net::buffer(last_chunk);
                }
            } else if (got > 0) {
                pieces[count++] = net::buffer(buffer->data(), got);
            }
            if (count > 0) {
                slot.expire_in(a.w.config().client.request);
                const std::span<const net::const_buffer> out_pieces(pieces.data(), count);
                const auto w = write_at_once(down, out_pieces);
                auto [ec, n] =
                    w.finished ? w.result() : co_await write_rest(down, out_pieces, w.written);
                slot.no_deadline();
                if (ec) {
                    out.result = exchange_result::done_close;  // client went away; upstream dirty
                    read_tokens(out, state, metrics::stream_outcome::client_gone);
                    co_return;
                }
            }
            head_sent = true;
        }
        if (last) {
            if (a.capture) {
                a.capture->complete = true;
            }
            if (watch) {
                watch->finish();
                out.cut_short = !watch->ended_well();
                if (timing.events > 0) {
                    out.stream = timing;
                }
            }
            read_tokens(out, state,
                        !watch ? std::nullopt
                        : watch->error_event()
                            ? std::optional(metrics::stream_outcome::error_event)
                            : (watch->ended_well()
                                   ? std::optional(metrics::stream_outcome::completed)
                                   : std::optional(metrics::stream_outcome::cut_by_upstream)));
            break;
        }
    }
    slot.upstream_expire_at(clock::time_point::max());
    out.reusable = upstream_keep_alive && !parser->need_eof() && up_buffer.size() == 0;
    in_use.reusable = out.reusable;
    out.result = info.keep_alive ? exchange_result::done_keep_alive : exchange_result::done_close;
}

// The exchange over a connection the pool gave (plain or TLS), lent out while it runs and
// handed back to the pool when it ended cleanly. Not a coroutine: no frame of its own.
template <class Down>
task<void> exchange_over(Down& down, acquired& got, const exchange_args& a,
                         exchange_outcome& out) {
    auto& c = *got.connection;
    if (c.secure) {
        return exchange(down, pooled_upstream<tls_stream_type>{*c.secure, got, a.w, a.slot}, a,
                        out);
    }
    return exchange(down, pooled_upstream<stream_type>{*c.plain, got, a.w, a.slot}, a, out);
}

// Both paths get their connection the same way: the pool's try_idle (an idle connection of
// the endpoint whose turn it is, without a coroutine frame), else co_await its acquire (a
// connect); then acquire_failure says whether there is one to exchange over.
// Why a failed acquire gets no exchange: 503 no_healthy_upstream (the version has no
// endpoint), else 502 upstream_connect_failed (upstream_h2_not_negotiated when an "h2"
// backend's TLS handshake did not select HTTP/2), counted as a connect failure or timeout.
struct acquire_problem {
    answer_problem problem;
    std::optional<metrics::upstream_failure> failure;
};
std::optional<acquire_problem> acquire_failure(const acquired& got,
                                               const routing::model_route& model,
                                               const routing::version_route& version);

}  // namespace stagegate::proxy
