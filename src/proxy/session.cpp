// Downstream sessions: read a request, route it, forward it upstream, stream the answer back.
// One coroutine per client connection, on the worker's thread; nothing here blocks or throws.
#include "session.hpp"

#include "http_util.hpp"
#include "mirror.hpp"
#include "upstream_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <span>
#include <random>

namespace stagegate::proxy {

namespace http = beast::http;

namespace {

constexpr std::string_view force_header = "X-Stagegate-Force-Version";
constexpr std::string_view request_id_header = "X-Request-Id";

using request_t = request_type;

template <class Stream>
stream_type& lowest_of(Stream& s) {
    if constexpr (std::is_same_v<Stream, stream_type>) {
        return s;
    } else {
        return s.next_layer();
    }
}

// Registers a session with its worker for the session's lifetime (drain finds idle ones).
// A mirror has no client stream (null).
class slot_guard {
public:
    slot_guard(worker& w, stream_type* stream) : w_(w) {
        slot_.stream = stream;
        w_.link(slot_);
    }
    ~slot_guard() { w_.unlink(slot_); }
    session_slot& slot() { return slot_; }

private:
    worker& w_;
    session_slot slot_;
};

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
};

// What routing decided, or the error to answer with.
struct route_decision {
    const routing::model_route* model = nullptr;
    std::uint32_t version = routing::no_version;
    std::uint32_t unit = 0;  // the request's unit bucket for the metrics (a user's hash)
    http::status error_status = http::status::ok;
    std::string_view error_code;
    metrics::unrouted_reason unrouted = metrics::unrouted_reason::bad_request;
    std::string error_message;
};

// What the parser lets through but a proxy must not forward (RFC 9112 6.1): a
// Transfer-Encoding other than exactly "chunked" (a backend may frame the body differently:
// request smuggling). Obs-folds need nothing: the parser replaces them with spaces, which
// RFC 9112 5.2 allows.
struct head_problem {
    http::status status;
    std::string_view code;
    std::string_view message;
};

template <class Fields>
std::optional<head_problem> check_head(const Fields& fields) {
    auto te = fields.find(http::field::transfer_encoding);
    if (te != fields.end() && !beast::iequals(te->value(), "chunked")) {
        return head_problem{http::status::not_implemented, "unsupported_transfer_encoding",
                            "only Transfer-Encoding: chunked is accepted"};
    }
    return std::nullopt;
}

route_decision route_request(worker& w, const routing::route_snapshot& routes,
                             const request_t& req) {
    route_decision d;
    if (!routing::safe_request_path(req.target())) {
        d.error_status = http::status::bad_request;
        d.error_code = "bad_path";
        d.error_message = "the path has dot-segments or encoded separators: send it normalized";
        return d;
    }
    auto match = routing::match_path(routes, req.target());
    switch (match.outcome) {
        case routing::match_outcome::model:
            d.model = match.model;
            break;
        case routing::match_outcome::unknown_model:
            d.error_status = http::status::not_found;
            d.error_code = "unknown_model";
            d.unrouted = metrics::unrouted_reason::unknown_model;
            d.error_message = "no model named \"" + std::string(match.name) + "\" is served here";
            return d;
        case routing::match_outcome::no_route:
            d.error_status = http::status::not_found;
            d.error_code = "no_route";
            d.unrouted = metrics::unrouted_reason::no_route;
            d.error_message = "no model route matches " + std::string(req.target());
            return d;
        case routing::match_outcome::needs_body: {
            auto name = routing::body_model_field(req.body());
            if (!name) {
                d.error_status = http::status::bad_request;
                d.error_code = "missing_model";
                d.error_message = "the JSON body needs a string field \"model\"";
                return d;
            }
            d.model = routing::match_body_model(routes, *name);
            if (!d.model) {
                d.error_status = http::status::not_found;
                d.error_code = "unknown_model";
                d.unrouted = metrics::unrouted_reason::unknown_model;
                d.error_message = "no model named \"" + *name + "\" is served here";
                return d;
            }
            break;
        }
    }
    const auto& m = *d.model;
    if (m.allow_force_version) {
        auto forced = req.find(force_header);
        if (forced != req.end()) {
            d.version = m.find_version(forced->value());
            if (d.version == routing::no_version) {
                d.error_status = http::status::bad_request;
                d.error_code = "unknown_version";
                d.error_message = "model " + m.name + " has no version \"" +
                                  std::string(forced->value()) + "\"";
            }
            return d;
        }
    }
    std::string_view key;
    if (!m.sticky_header.empty()) {
        auto it = req.find(m.sticky_header);
        if (it != req.end()) {
            key = it->value();
        }
    }
    if (key.empty() && !m.sticky_cookie.empty()) {
        for (auto it = req.find(http::field::cookie);
             it != req.end() && it->name() == http::field::cookie && key.empty(); ++it) {
            key = routing::find_cookie(it->value(), m.sticky_cookie);
        }
    }
    const std::uint64_t hash =
        key.empty() ? w.next_random() : routing::sticky_hash(key, m.hash_salt);
    // The point takes the hash's top bits, the unit bucket its low ones.
    d.unit = static_cast<std::uint32_t>(hash);
    d.version = routing::pick_version(m, routing::point_from_u64(hash));
    if (d.version != m.stable && w.tripped(m.versions[d.version].series)) {
        d.version = m.stable;
    }
    return d;
}

// `routed`: the version and stage the request was routed to (empty before routing decided).
template <class Stream>
task<bool> send_error(Stream& stream, worker& w, session_slot& slot, const request_context& rc,
                      http::status status, std::string_view code, std::string_view message,
                      routed_to routed = {}) {
    auto res =
        error_response(status, code, message, rc.id, rc.keep_alive, rc.client_version, routed);
    if (rc.head) {
        res.body().clear();
    }
    slot.expire_in(w.config().client.request);
    auto [ec, n] = co_await http::async_write(stream, res, nothrow_awaitable);
    slot.no_deadline();
    co_return !ec && rc.keep_alive;
}

// What an upstream exchange that failed counts as: the deadline passed, the backend closed or
// reset the connection, or it spoke something other than HTTP.
metrics::upstream_failure upstream_failure_of(const boost::system::error_code& ec,
                                              bool timed_out) {
    if (timed_out) {
        return metrics::upstream_failure::timeout;
    }
    const bool reset = ec == http::error::end_of_stream || ec == http::error::partial_message ||
                       ec == net::error::eof || ec == net::error::connection_reset ||
                       ec == net::error::broken_pipe;
    return reset ? metrics::upstream_failure::reset : metrics::upstream_failure::protocol;
}

enum class exchange_result {
    done_keep_alive,         // response fully relayed, the client connection may continue
    done_close,              // response relayed or cut short: close the client connection
    failed_before_response,  // nothing sent to the client yet: `status`/`code` say why
};

struct exchange_outcome {
    exchange_result result = exchange_result::done_close;
    http::status status = http::status::bad_gateway;  // the error to send, or what was relayed
    std::string_view code;
    std::string message;
    std::optional<metrics::upstream_failure> failure;
    // The request's first write failed with nothing written: no byte reached the backend,
    // so the request may go out again on another connection.
    bool nothing_sent = false;
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
    request_t& req;
    const request_context& rc;
    worker& w;
    session_slot& slot;
    const routing::model_route& model;
    const routing::version_route& version;
    const routing::upstream_endpoint& endpoint;
    std::string& head;  // session-owned scratch for serialized heads
    std::string_view client_address;
    bool client_tls;
    body_capture* capture;  // null: the body is not read
};

// Lends a relay buffer for one response and takes it back on every path.
class borrowed_buffer {
public:
    borrowed_buffer(upstream_pool& pool, bool large)
        : pool_(pool), buffer_(pool.borrow_buffer(large)), large_(large) {}
    ~borrowed_buffer() { pool_.return_buffer(std::move(buffer_), large_); }
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
body_progress parse_buffered_body(relay_response_parser& parser, beast::flat_buffer& buffer,
                                  boost::system::error_code& ec) {
    const std::size_t room = parser.buffer_left();
    while (buffer.size() > 0 && !parser.is_done()) {
        const auto used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_buffer) {
            ec = {};
            return body_progress::relay;
        }
        if (ec && ec != http::error::need_more) {
            return body_progress::relay;
        }
        const bool need_more = ec == http::error::need_more;
        ec = {};
        if (parser.buffer_left() < room) {
            return body_progress::relay;
        }
        if (need_more || used == 0) {
            break;
        }
    }
    return parser.is_done() ? body_progress::relay : body_progress::need_bytes;
}

// Beast reads at most the read buffer's free capacity per call (512 bytes at least): a large
// body through the small buffer a head needs took hundreds of recv calls. Makes room for one
// relay buffer's worth (the pool shrinks the buffer again when the connection goes back idle)
// and says whether the body is large enough for a large relay buffer.
bool make_room_for_body(beast::flat_buffer& buffer, const relay_response_parser& parser) {
    if (parser.is_done()) {
        return false;
    }
    auto length = parser.content_length();
    const bool large = length && *length > relay_buffer_size;
    if (!length || *length > buffer.capacity() - buffer.size()) {
        buffer.reserve(large ? large_relay_buffer_size : relay_buffer_size);
    }
    return large;
}

// Writes the request upstream and streams the response back. `conn` is returned to the pool
// only when the exchange ended cleanly on both sides.
template <class Down, class Up>
task<exchange_outcome> exchange(Down& down, Up& up, std::unique_ptr<upstream_connection>& conn,
                                exchange_args a) {
    exchange_outcome out;
    auto& slot = a.slot;
    const auto started = coarse_now();
    const auto total_deadline = started + a.model.timeouts.total;
    const auto first_byte_deadline =
        std::min(started + a.model.timeouts.first_byte, total_deadline);
    auto fail = [&](const boost::system::error_code& ec, std::string_view what) {
        const bool timeout = slot.upstream_timed_out;
        const auto kind = upstream_failure_of(ec, timeout);
        out.result = exchange_result::failed_before_response;
        out.status = timeout ? http::status::gateway_timeout : http::status::bad_gateway;
        out.code = timeout ? "upstream_timeout"
                           : (kind == metrics::upstream_failure::reset ? "upstream_reset"
                                                                       : "upstream_protocol_error");
        out.failure = kind;
        out.message = std::string(what) + " version " + a.version.name + " at " +
                      a.endpoint.authority + ": " +
                      (timeout ? std::string("timed out") : ec.message());
        return out;
    };

    a.head.clear();
    serialize_request_head(a.head, a.req,
                           forward_info{a.client_address, a.client_tls, a.rc.id,
                                        a.rc.client_version},
                           a.req.body().size());
    slot.upstream_expire_at(first_byte_deadline);
    {
        std::array<net::const_buffer, 2> request_bytes{net::buffer(a.head),
                                                       net::buffer(a.req.body())};
        auto [ec, n] = co_await net::async_write(up, request_bytes, nothrow_awaitable);
        if (ec) {
            auto failed = fail(ec, "sending the request to");
            failed.nothing_sent = n == 0 && !slot.upstream_timed_out;
            co_return failed;
        }
    }

    std::optional<relay_response_parser> parser;
    for (;;) {
        a.head.clear();  // the request head has gone; the client's response head goes here
        parser.emplace(a.head, a.rc.client_version, a.rc.head);
        parser->body_limit(boost::none);
        parser->header_limit(64 * 1024);
        if (a.rc.head) {
            parser->skip(true);
        }
        auto [ec, n] = co_await http::async_read_header(up, conn->buffer, *parser,
                                                        nothrow_awaitable);
        if (ec) {
            co_return fail(ec, "reading the response header from");
        }
        const unsigned status = parser->status();
        if (status < 100 || status >= 200 || status == 101) {
            break;  // 1xx interim answers are consumed here; we never send Expect upstream
        }
    }
    const unsigned status = parser->status();
    out.status = static_cast<http::status>(status);
    const bool upstream_keep_alive = parser->keep_alive();
    response_info info;
    info.version = a.version.name;
    info.stage = a.model.stage;
    info.request_id = a.rc.id;
    info.client_version = a.rc.client_version;
    info.head_request = a.rc.head;
    info.keep_alive = a.rc.keep_alive && !a.w.draining();
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
    finish_response_head(a.head, info);
    if (a.capture) {
        a.capture->start(status, parser->encoded());
    }

    borrowed_buffer buffer(a.w.pool(), make_room_for_body(conn->buffer, *parser));
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
            if (!head_sent && conn->buffer.size() == 0) {
                // Nothing of the body came with the head: the client gets the head now, not
                // when the first body bytes arrive (a stream's first token may be seconds off).
                slot.expire_in(a.w.config().client.request);
                auto [ec, n] = co_await net::async_write(down, net::buffer(a.head),
                                                         nothrow_awaitable);
                slot.no_deadline();
                if (ec) {
                    out.result = exchange_result::done_close;  // client went away
                    co_return out;
                }
                head_sent = true;
            }
            slot.upstream_expire_at(total_deadline);
            parser->set_buffer(buffer.data(), buffer.size());
            boost::system::error_code ec;
            while (parse_buffered_body(*parser, conn->buffer, ec) == body_progress::need_bytes) {
                auto [read_ec, n] = co_await up.async_read_some(
                    conn->buffer.prepare(beast::read_size(conn->buffer, 65536)),
                    nothrow_awaitable);
                conn->buffer.commit(n);
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
                    co_return fail(ec, "reading the response body from");
                }
                out.result = exchange_result::done_close;  // the client sees a cut-short body
                out.failure = slot.upstream_timed_out ? metrics::upstream_failure::timeout
                                                      : metrics::upstream_failure::reset;
                co_return out;
            }
            got = buffer.size() - parser->buffer_left();
            if (a.capture) {
                a.capture->append(buffer.data(), got);
            }
        }
        const bool last = parser->is_done();
        std::array<net::const_buffer, 4> pieces;
        std::size_t count = 0;
        char size_line[24];
        if (!head_sent) {
            pieces[count++] = net::buffer(a.head);
        }
        if (info.framing == body_framing::chunked) {
            if (got > 0) {
                pieces[count++] = net::buffer(size_line, format_chunk_size(size_line, got));
                pieces[count++] = net::buffer(buffer.data(), got);
                pieces[count++] = net::buffer(last ? crlf_last_chunk : crlf);
            } else if (last) {
                pieces[count++] = net::buffer(last_chunk);
            }
        } else if (got > 0) {
            pieces[count++] = net::buffer(buffer.data(), got);
        }
        if (count > 0) {
            slot.expire_in(a.w.config().client.request);
            auto [ec, n] = co_await net::async_write(
                down, std::span<const net::const_buffer>(pieces.data(), count), nothrow_awaitable);
            slot.no_deadline();
            if (ec) {
                out.result = exchange_result::done_close;  // client went away; upstream dirty
                co_return out;
            }
        }
        head_sent = true;
        if (last) {
            if (a.capture) {
                a.capture->complete = true;
            }
            break;
        }
    }
    slot.upstream_expire_at(clock::time_point::max());
    if (upstream_keep_alive && !parser->need_eof() && conn->buffer.size() == 0) {
        a.w.pool().release(std::move(conn));
    }
    out.result = info.keep_alive ? exchange_result::done_keep_alive : exchange_result::done_close;
    co_return out;
}

void record_response(worker& w, const routing::version_route& version, unsigned status,
                     clock::time_point started, std::uint32_t unit) {
    const auto& cfg = w.config();
    const auto series = version.series;
    if (version.trip_after > 0) {
        auto streak = w.shard().record_streak(series, status >= 500);
        if (streak == version.trip_after) {
            w.trip(series);
            if (cfg.on_broken) {
                cfg.on_broken(series, streak);
            }
        }
    }
    if (cfg.record_metrics) {
        auto micros = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started);
        w.shard().record(series, status, static_cast<std::uint64_t>(micros.count()), unit);
    }
}

// --- Predictions and shadow traffic ---------------------------------------------------------

// Counts what an answer's body held; the prediction when one was read.
std::optional<predictions::prediction> read_prediction(worker& w, const routing::model_route& model,
                                                       std::uint32_t series,
                                                       const body_capture& capture) {
    auto& counts = w.shard().predictions(series);
    if (!capture.wanted || capture.overflow || !capture.complete) {
        ++counts.unread;
        return std::nullopt;
    }
    predictions::prediction p;
    switch (predictions::extract(capture.bytes, *model.prediction, p)) {
        case predictions::outcome::invalid:
            ++counts.invalid;
            return std::nullopt;
        case predictions::outcome::missing:
            ++counts.missing;
            return std::nullopt;
        case predictions::outcome::parsed:
            break;
    }
    ++counts.parsed;
    if (p.has_label) {
        ++counts.labels;
        ++counts.label_bins[p.label_bin];
    }
    if (p.has_value) {
        ++counts.values;
        ++counts.value_bins[p.value_bin];
        counts.value_sum += p.value;
    }
    return p;
}

// Counts how the candidate's answer to a mirrored request compares with stable's.
void compare(worker& w, std::uint32_t series, const predictions::prediction& s,
             const predictions::prediction& c) {
    auto& counts = w.shard().predictions(series);
    if (s.has_label && c.has_label) {
        ++counts.compared_labels;
        counts.agreed_labels += s.label_hash == c.label_hash ? 1 : 0;
    }
    if (s.has_value && c.has_value) {
        const double diff = c.value - s.value;
        counts.abs_diff.record(diff);
        counts.rel_diff.record(diff / std::max(std::fabs(s.value), 1e-12));
    }
}

// Answers remembered for feedback between two collections, per worker: at 1 collection a
// second this bounds memory at any request rate; what does not fit cannot be labelled.
constexpr std::size_t max_served_per_collection = 100000;

void remember_answer(worker& w, std::string_view request_id, std::uint32_t series,
                     const predictions::prediction& p) {
    if (w.served().size() < max_served_per_collection) {
        w.served().push_back({std::string(request_id), series, p});
    }
}

}  // namespace

namespace {

template <class Up>
task<unsigned> mirror_exchange(Up& up, upstream_connection& conn, mirror_job& job, worker& w,
                               session_slot& slot, body_capture& capture, bool& reusable,
                               std::optional<metrics::upstream_failure>& failure) {
    const auto& model = *job.model;
    const auto started = coarse_now();
    const auto total_deadline = started + model.timeouts.total;
    auto failed = [&](const boost::system::error_code& ec) -> unsigned {
        failure = upstream_failure_of(ec, slot.upstream_timed_out);
        return slot.upstream_timed_out ? 504 : 502;
    };
    slot.upstream_expire_at(std::min(started + model.timeouts.first_byte, total_deadline));
    {
        std::array<net::const_buffer, 2> bytes{net::buffer(job.head), net::buffer(job.body)};
        auto [ec, n] = co_await net::async_write(up, bytes, nothrow_awaitable);
        if (ec) {
            co_return failed(ec);
        }
    }
    std::optional<relay_response_parser> parser;
    for (;;) {
        job.head.clear();  // sent; the parser writes the (unused) client head here
        parser.emplace(job.head, 11, false);
        parser->body_limit(boost::none);
        parser->header_limit(64 * 1024);
        auto [ec, n] = co_await http::async_read_header(up, conn.buffer, *parser, nothrow_awaitable);
        if (ec) {
            co_return failed(ec);
        }
        const unsigned status = parser->status();
        if (status < 100 || status >= 200 || status == 101) {
            break;  // 1xx interim answers are skipped
        }
    }
    capture.start(parser->status(), parser->encoded());
    slot.upstream_expire_at(total_deadline);
    borrowed_buffer buffer(w.pool(), make_room_for_body(conn.buffer, *parser));
    while (!parser->is_done()) {
        parser->set_buffer(buffer.data(), buffer.size());
        auto [ec, n] = co_await http::async_read(up, conn.buffer, *parser, nothrow_awaitable);
        if (ec == http::error::need_buffer) {
            ec = {};
        }
        if (ec) {
            co_return failed(ec);
        }
        capture.append(buffer.data(), buffer.size() - parser->buffer_left());
    }
    capture.complete = true;
    slot.upstream_expire_at(clock::time_point::max());
    reusable = parser->keep_alive() && !parser->need_eof() && conn.buffer.size() == 0;
    co_return parser->status();
}

task<void> mirror_once(worker& w, mirror_job& job, session_slot& slot, std::string& scratch) {
    const auto& model = *job.model;
    const auto& version = model.versions[job.version];
    const auto started = clock::now();
    body_capture capture{scratch, model.prediction ? model.prediction->max_body_bytes : 0};
    std::optional<metrics::upstream_failure> failure;
    unsigned status = 0;
    acquired got;
    if (auto idle = w.pool().try_idle(version)) {
        got = std::move(*idle);
    } else {
        got = co_await w.pool().acquire(model, version, slot);
    }
    if (got.status != acquire_status::ok) {
        status = got.status == acquire_status::no_healthy_upstream ? 503 : 502;
        if (got.status != acquire_status::no_healthy_upstream) {
            failure = got.status == acquire_status::connect_timeout
                          ? metrics::upstream_failure::timeout
                          : metrics::upstream_failure::connect;
        }
    } else {
        bool reusable = false;
        const auto endpoint_id = got.endpoint->id;
        w.pool().lend(endpoint_id, +1);
        slot.upstream = &got.connection->lowest();
        if (got.connection->secure) {
            status = co_await mirror_exchange(*got.connection->secure, *got.connection, job, w,
                                              slot, capture, reusable, failure);
        } else {
            status = co_await mirror_exchange(*got.connection->plain, *got.connection, job, w,
                                              slot, capture, reusable, failure);
        }
        slot.upstream = nullptr;
        w.pool().lend(endpoint_id, -1);
        if (reusable && !failure) {
            w.pool().release(std::move(got.connection));
        }
    }
    if (failure) {
        w.shard().record_failure(job.series, *failure);
    }
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count();
    w.shard().record(job.series, status, static_cast<std::uint64_t>(micros), job.unit);
    std::optional<predictions::prediction> p;
    if (model.prediction) {
        p = read_prediction(w, model, job.series, capture);
    }
    if (job.primary && p) {
        compare(w, job.series, *job.primary, *p);
    }
    if (scratch.capacity() > 64 * 1024) {
        std::string().swap(scratch);
    }
}

}  // namespace

void drop_mirror(worker& w, mirror_job& job) {
    ++w.shard().predictions(job.series).mirrors_dropped;
}

namespace {

// Runs mirrors one after another until none wait: at most mirror_max_in_flight of these run
// per worker.
task<void> run_mirrors(worker& w, std::unique_ptr<mirror_job> job) {
    slot_guard guard(w, nullptr);
    std::string scratch;
    while (job) {
        co_await mirror_once(w, *job, guard.slot(), scratch);
        job.reset();
        auto& waiting = w.mirrors_waiting();
        if (!waiting.empty() && !w.draining()) {
            job = std::move(waiting.front());
            waiting.pop_front();
        }
    }
    --w.mirrors_in_flight();
}

// Starts a mirror now, queues it, or drops it (counted) when the queue is full: the client's
// own request never waits for one.
void submit_mirror(worker& w, std::unique_ptr<mirror_job> job) {
    const auto& model = *job->model;
    if (w.draining()) {
        drop_mirror(w, *job);
        return;
    }
    if (w.mirrors_in_flight() < model.mirror_max_in_flight) {
        ++w.mirrors_in_flight();
        net::co_spawn(w.io().get_executor(), run_mirrors(w, std::move(job)), net::detached);
        return;
    }
    if (w.mirrors_waiting().size() < model.mirror_queue) {
        w.mirrors_waiting().push_back(std::move(job));
        return;
    }
    drop_mirror(w, *job);
}

// Whether this request is mirrored: it went to stable, and the draw says so.
bool draw_mirror(worker& w, const routing::model_route& model, std::uint32_t version,
                 const request_context& rc) {
    return model.mirror_bp > 0 && version == model.stable &&
           model.mirror_version != routing::no_version && !rc.head &&
           routing::point_from_u64(w.next_random()) < model.mirror_bp;
}

// A copy of `req` for the model's mirror version.
std::unique_ptr<mirror_job> mirror_of(const std::shared_ptr<const routing::route_snapshot>& routes,
                                      const routing::model_route& model, const request_t& req,
                                      const request_context& rc, std::string_view client_address,
                                      bool client_tls,
                                      std::optional<predictions::prediction> primary) {
    auto job = std::make_unique<mirror_job>();
    job->routes = routes;
    job->model = &model;
    job->version = model.mirror_version;
    job->series = model.mirror_series;
    serialize_request_head(job->head, req,
                           forward_info{client_address, client_tls, rc.id, rc.client_version},
                           req.body().size());
    // Tell the candidate this is shadow traffic (as Envoy marks its mirrors): its answer is
    // never seen by a client.
    job->head.insert(job->head.size() - 2, "X-Stagegate-Mirror: 1\r\n");
    job->body.assign(req.body().data(), req.body().size());
    job->primary = primary;
    return job;
}

// Routes and forwards one fully read request. Returns whether the client connection stays.
template <class Stream>
task<bool> handle_request(Stream& stream, worker& w, session_slot& slot, request_t& req,
                          request_context& rc, std::string& head, std::string& body_scratch,
                          const std::string& client_address, bool client_tls,
                          clock::time_point started) {
    auto routes = w.routes();  // keeps this snapshot alive for the whole exchange
    if (!routes) {
        co_return co_await send_error(stream, w, slot, rc, http::status::service_unavailable,
                                      "not_ready", "no routes are loaded yet");
    }
    auto decision = route_request(w, *routes, req);
    if (decision.error_status != http::status::ok) {
        w.shard().record_unrouted(decision.unrouted);
        co_return co_await send_error(stream, w, slot, rc, decision.error_status,
                                      decision.error_code, decision.error_message);
    }
    const auto& model = *decision.model;
    const auto& version = model.versions[decision.version];
    const routed_to routed{version.name, model.stage};  // for the gateway's own error answers
    // A mirror goes out once this request's answer has: whatever becomes of it, the client
    // neither waits for it nor shares its time with it.
    const bool mirrored = draw_mirror(w, model, decision.version, rc);
    auto send_mirror = [&](std::optional<predictions::prediction> primary) {
        if (mirrored) {
            auto job = mirror_of(routes, model, req, rc, client_address, client_tls, primary);
            job->unit = decision.unit;
            submit_mirror(w, std::move(job));
        }
    };
    const bool read_body = model.prediction && w.config().record_metrics && !rc.head;
    body_capture capture{body_scratch, read_body ? model.prediction->max_body_bytes : 0};
    // A pooled connection the backend closed just as it was taken (after its liveness check)
    // fails the first write with nothing sent: then, and only then, the request goes out once
    // more, on a connection of its own. Once a byte may have reached the backend it never does
    // (a predict call is not idempotent: nginx's rule for non-idempotent requests).
    for (int attempt = 0;; ++attempt) {
        acquired got;
        if (auto idle = w.pool().try_idle(version)) {
            got = std::move(*idle);
        } else {
            got = co_await w.pool().acquire(model, version, slot);
        }
        if (got.status != acquire_status::ok) {
            bool no_healthy = got.status == acquire_status::no_healthy_upstream;
            auto status =
                no_healthy ? http::status::service_unavailable : http::status::bad_gateway;
            if (!no_healthy) {
                w.shard().record_failure(version.series,
                                         got.status == acquire_status::connect_timeout
                                             ? metrics::upstream_failure::timeout
                                             : metrics::upstream_failure::connect);
            }
            bool keep = co_await send_error(
                stream, w, slot, rc, status,
                no_healthy ? "no_healthy_upstream" : "upstream_connect_failed",
                "model " + model.name + " version " + version.name + ": " + got.detail, routed);
            record_response(w, version, static_cast<unsigned>(status), started, decision.unit);
            send_mirror(std::nullopt);
            co_return keep;
        }
        exchange_args args{req,  rc,   w, slot, model, version, *got.endpoint, head, client_address,
                           client_tls, read_body ? &capture : nullptr};
        exchange_outcome out;
        const auto endpoint_id = got.endpoint->id;
        w.pool().lend(endpoint_id, +1);
        slot.upstream = &got.connection->lowest();
        if (got.connection->secure) {
            out = co_await exchange(stream, *got.connection->secure, got.connection, args);
        } else {
            out = co_await exchange(stream, *got.connection->plain, got.connection, args);
        }
        slot.upstream = nullptr;
        w.pool().lend(endpoint_id, -1);
        if (out.nothing_sent && got.reused && attempt == 0) {
            w.pool().forget_idle(endpoint_id);  // its siblings were idle as long: do not trust them
            continue;
        }
        if (out.failure) {
            w.shard().record_failure(version.series, *out.failure);
        }
        bool keep = out.result == exchange_result::done_keep_alive;
        if (out.result == exchange_result::failed_before_response) {
            keep = co_await send_error(stream, w, slot, rc, out.status, out.code,
                                       "model " + model.name + ": " + out.message, routed);
        }
        record_response(w, version, static_cast<unsigned>(out.status), started, decision.unit);
        // Read after the answer went out: the client never waits for this.
        std::optional<predictions::prediction> predicted;
        if (read_body && out.result != exchange_result::failed_before_response) {
            predicted = read_prediction(w, model, version.series, capture);
            if (predicted && model.prediction->feedback) {
                remember_answer(w, rc.id, version.series, *predicted);
            }
        }
        send_mirror(predicted);
        if (body_scratch.capacity() > 64 * 1024) {
            std::string().swap(body_scratch);
        }
        co_return keep;
    }
}

template <class Stream>
task<void> close_gracefully(Stream& stream, session_slot& slot) {
    if constexpr (std::is_same_v<Stream, tls_stream_type>) {
        slot.expire_in(std::chrono::seconds(2));
        [[maybe_unused]] auto [ec] = co_await stream.async_shutdown(nothrow_awaitable);
    }
    boost::system::error_code ec;
    lowest_of(stream).shutdown(tcp::socket::shutdown_send, ec);
}

template <class Stream>
task<void> run_session(Stream stream, worker& w, std::string client_address) {
    constexpr bool tls = std::is_same_v<Stream, tls_stream_type>;
    auto& lowest = lowest_of(stream);
    slot_guard guard(w, &lowest);
    auto& slot = guard.slot();
    const auto& cfg = w.config();

    if constexpr (tls) {
        slot.expire_in(cfg.client.request);
        auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server,
                                                    nothrow_awaitable);
        if (ec) {
            co_return;
        }
    }

    beast::flat_buffer buffer;
    std::string head;          // serialized heads, reused across requests
    std::string body_scratch;  // answers kept for reading their prediction
    std::optional<http::request_parser<request_body, cached_allocator<char>>> parser;
    for (;;) {
        slot.idle = buffer.size() == 0;
        if (slot.idle && w.draining()) {
            break;
        }
        parser.emplace();
        parser->header_limit(cfg.limits.max_header_bytes);
        parser->body_limit(cfg.limits.max_request_body_bytes);
        slot.expire_in(slot.idle ? cfg.client.idle : cfg.client.request);
        request_context rc;
        {
            auto [ec, n] = co_await http::async_read_header(stream, buffer, *parser,
                                                            nothrow_awaitable);
            slot.idle = false;
            if (ec) {
                bool got_bytes = buffer.size() > 0 || n > 0;
                if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
                    (ec == net::error::operation_aborted && !slot.timed_out) ||
                    (!got_bytes && slot.timed_out)) {
                    break;
                }
                rc.keep_alive = false;
                rc.id.generate(w);
                w.shard().record_unrouted(metrics::unrouted_reason::bad_request);
                if (slot.timed_out) {
                    co_await send_error(stream, w, slot, rc, http::status::request_timeout,
                                        "request_timeout", "the request was not received in time");
                    break;
                }
                auto why = classify_request_error(ec);
                co_await send_error(stream, w, slot, rc, why.status, why.code,
                                    "cannot read the request: " + ec.message());
                break;
            }
        }
        auto& req = parser->get();
        rc.client_version = req.version() == 10 ? 10 : 11;
        rc.head = req.method() == http::verb::head;
        auto rid = req.find(request_id_header);
        if (rid != req.end() && acceptable_request_id(rid->value())) {
            rc.id.assign(rid->value());
        } else {
            rc.id.generate(w);
        }
        rc.keep_alive = parser->keep_alive() && !w.draining();
        if (auto bad = check_head(req)) {
            rc.keep_alive = false;
            w.shard().record_unrouted(metrics::unrouted_reason::bad_request);
            co_await send_error(stream, w, slot, rc, bad->status, bad->code,
                                std::string(bad->message));
            break;
        }
        if (!parser->is_done()) {
            auto expect = req.find(http::field::expect);
            if (expect != req.end() && beast::iequals(expect->value(), "100-continue")) {
                static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
                auto [ec, n] = co_await net::async_write(
                    stream, net::buffer(cont.data(), cont.size()), nothrow_awaitable);
                if (ec) {
                    break;
                }
            }
            slot.expire_in(cfg.client.request);
            // Room for the body (up to a large relay buffer's worth) so it arrives in a few
            // reads, not 512-byte ones.
            if (auto length = parser->content_length();
                length && *length > buffer.capacity() - buffer.size()) {
                buffer.reserve(buffer.size() +
                               std::min<std::uint64_t>(*length, large_relay_buffer_size));
            }
            auto [ec, n] = co_await http::async_read(stream, buffer, *parser, nothrow_awaitable);
            if (ec) {
                if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
                    (ec == net::error::operation_aborted && !slot.timed_out)) {
                    break;
                }
                rc.keep_alive = false;
                w.shard().record_unrouted(metrics::unrouted_reason::bad_request);
                if (slot.timed_out) {
                    co_await send_error(stream, w, slot, rc, http::status::request_timeout,
                                        "request_timeout",
                                        "the request body was not received in time");
                    break;
                }
                auto why = classify_request_error(ec);
                co_await send_error(stream, w, slot, rc, why.status, why.code,
                                    "cannot read the request body: " + ec.message());
                break;
            }
        }
        slot.no_deadline();
        const auto started = clock::now();
        bool keep = co_await handle_request(stream, w, slot, req, rc, head, body_scratch,
                                            client_address, tls, started);
        parser.reset();
        if (!keep || w.draining()) {
            break;
        }
        // Keep idle keep-alive connections small.
        if (buffer.size() == 0 && buffer.capacity() > 8192) {
            buffer.shrink_to_fit();
        }
        if (head.capacity() > 8192) {
            std::string().swap(head);
        }
    }
    co_await close_gracefully(stream, slot);
}

// Answers 503 and closes: the worker is at its connection limit.
task<void> shed(stream_type stream, worker& w) {
    session_slot slot;  // not linked: the write is small and the socket closes right after
    slot.stream = &stream;
    request_context rc;
    rc.keep_alive = false;
    rc.id.generate(w);
    co_await send_error(stream, w, slot, rc, http::status::service_unavailable, "overloaded",
                        "too many connections; retry later");
    boost::system::error_code ec;
    stream.shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace

void start_client_session(worker& w, socket_type socket, net::ssl::context* tls,
                          std::string client_address) {
    if (tls) {
        net::co_spawn(w.io().get_executor(),
                      run_session(tls_stream_type(std::move(socket), *tls), w,
                                  std::move(client_address)),
                      net::detached);
    } else {
        net::co_spawn(w.io().get_executor(),
                      run_session(stream_type(std::move(socket)), w, std::move(client_address)),
                      net::detached);
    }
}

void shed_connection(worker& w, socket_type socket) {
    net::co_spawn(w.io().get_executor(), shed(stream_type(std::move(socket)), w), net::detached);
}

}  // namespace stagegate::proxy
