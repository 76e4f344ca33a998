// HTTP/2 client connections (see h2_session.hpp). One h2_connection per client connection
// owns the nghttp2 server session; each request stream becomes an h2_stream and, once its
// request has fully arrived (a call streaming its request: once it can be routed, the rest
// following through a body_feed), one coroutine that runs handle_request with an h2_answer_writer
// as its client stream. The request path writes its answer as HTTP/1.1 bytes (the same code
// serves both protocols); the writer reads them back (answer_reader: status, fields, chunked
// or sized body) into a HEADERS frame and DATA frames, relayed as they come, with
// back-pressure from the client's flow-control window. An answer relayed from an HTTP/2
// backend skips the translation: h2_exchange hands the writer its head, body bytes and
// trailers as they are (takes_answer_parts), which a gRPC call through two HTTP/2 sides,
// the usual case, spent about 5k instructions on.
// Why a translation and not a second relay: one exchange, one set of error answers, one
// access log for both protocols; the cost is one read of bytes this process wrote, for the
// answers of HTTP/1.1 backends and the gateway's own.
#include "h2_session.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "answer_reader.hpp"
#include "body_feed.hpp"
#include "h2_fields.hpp"
#include "h2_memory.hpp"
#include "grpc_status.hpp"
#include "http_util.hpp"
#include "request_context.hpp"
#include "request_handling.hpp"
#include "write_all.hpp"
#include "stagegate/routing/grpc_call.hpp"

namespace stagegate::proxy {

preface_match match_h2_preface(std::string_view first_bytes) {
    const auto n = std::min(first_bytes.size(), h2_client_preface.size());
    if (first_bytes.substr(0, n) != h2_client_preface.substr(0, n)) {
        return preface_match::http1;
    }
    return n == h2_client_preface.size() ? preface_match::http2 : preface_match::undecided;
}

namespace {

// ALPN (RFC 7301): the client's list is length-prefixed names; "h2" wins, then "http/1.1";
// a client offering neither gets no ALPN answer and speaks HTTP/1.1.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_size, const unsigned char* in,
                unsigned int in_size, void*) {
    const unsigned char* http1 = nullptr;
    for (unsigned int at = 0; at < in_size;) {
        const unsigned int size = in[at];
        if (at + 1 + size > in_size) {
            break;
        }
        const std::string_view name(reinterpret_cast<const char*>(in + at + 1), size);
        if (name == "h2") {
            *out = in + at + 1;
            *out_size = static_cast<unsigned char>(size);
            return SSL_TLSEXT_ERR_OK;
        }
        if (name == "http/1.1") {
            http1 = in + at + 1;
        }
        at += 1 + size;
    }
    if (http1) {
        *out = http1;
        *out_size = 8;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

void offer_h2_alpn(net::ssl::context& tls) {
    SSL_CTX_set_alpn_select_cb(tls.native_handle(), select_alpn, nullptr);
}

bool alpn_chose_h2(SSL* ssl) {
    const unsigned char* name = nullptr;
    unsigned int size = 0;
    SSL_get0_alpn_selected(ssl, &name, &size);
    return size == 2 && name[0] == 'h' && name[1] == '2';
}

namespace {

using write_handler = net::any_completion_handler<void(boost::system::error_code, std::size_t)>;

// Per-stream answer bytes waiting for the client's window: a write parks past the high mark
// and resumes once nghttp2 has taken the queue below the low one (one relay buffer's worth).
constexpr std::size_t answer_high_water = 64 * 1024;
constexpr std::size_t answer_low_water = 16 * 1024;
// The request body's flow-control windows: large enough that an upload is not held to one
// 64 KiB window per round trip, bounded by limits.max_request_body_bytes per stream anyway.
constexpr std::int32_t request_stream_window = 1 << 20;
constexpr std::int32_t request_connection_window = 16 << 20;

class h2_connection;

// One request stream: its request as it arrives, then its answer on the way out.
struct h2_stream final : deadline_listener, body_feed::writer {
    h2_stream(h2_connection& c, std::int32_t stream_id);
    ~h2_stream();
    h2_stream(const h2_stream&) = delete;
    h2_stream& operator=(const h2_stream&) = delete;
    void deadline_passed() override;
    void body_taken(std::size_t n) override;

    h2_connection& conn;
    const std::int32_t id;
    // --- the request
    client_request req;
    std::string authority;
    std::string cookies;  // cookie crumbs joined with "; " (RFC 9113 8.2.3)
    std::uint64_t header_bytes = 0;
    std::optional<answer_problem> problem;  // answered instead of forwarding
    metrics::unrouted_reason problem_reason = metrics::unrouted_reason::bad_request;
    bool request_ended = false;  // END_STREAM arrived
    bool started = false;        // its coroutine runs
    // A call whose client streams messages (grpc_method_streams_requests): it starts once its
    // first message is whole, and what follows goes to `feed` instead of the body.
    bool streams_request = false;
    // Its first Content-Type names gRPC (is_grpc_request, as its fields arrive).
    bool grpc = false;
    bool content_type_seen = false;
    std::shared_ptr<body_feed> feed;
    bool feed_done = false;  // no exchange takes from `feed` any more: arrivals are dropped
    // --- the answer
    answer_reader answer;  // the HTTP/1.1 answer the request path writes, read back
    cached_string pending;  // body bytes for DATA frames; [pending_at, size) not yet taken
    std::size_t pending_at = 0;
    bool submitted = false;     // HEADERS went to nghttp2
    bool answer_ended = false;  // the whole body is in `pending`
    bool deferred = false;      // nghttp2 waits for resume_data
    bool closed = false;        // nghttp2 closed the stream (or the connection ended)
    write_handler parked;
    std::size_t parked_bytes = 0;
    session_slot slot;  // the worker's deadlines for this stream (and its upstream)

    std::size_t queued() const { return pending.size() - pending_at; }
    // The stream closed (the client reset it, or the connection is gone): a backend call
    // still running for it is told, and cancels its backend stream.
    void client_left() {
        closed = true;
        if (started && !answer_ended && !slot.client_gone) {
            slot.client_gone = true;
            if (slot.on_client_gone) {
                slot.on_client_gone->client_gone();
            }
        }
    }
};

// Ends the count of a coroutine of the connection (counted when spawned, since a spawned
// coroutine starts later): the connection waits for none left before it goes.
class task_done;

class h2_connection {
  public:
    h2_connection(worker& w, session_slot& slot, const std::string& client_address, bool tls)
        : w_(w),
          slot_(slot),
          client_address_(client_address),
          tls_(tls),
          wake_(w.io().get_executor()),
          all_done_(w.io().get_executor()) {}
    ~h2_connection() {
        if (session_) {
            nghttp2_session_del(session_);
        }
        streams_.clear();  // while the counts their destructors update still exist
    }
    h2_connection(const h2_connection&) = delete;
    h2_connection& operator=(const h2_connection&) = delete;

    bool start();
    // Feeds bytes read from the client; false once the connection cannot go on (a GOAWAY is
    // queued when the protocol allows one).
    bool receive(const char* data, std::size_t size);
    // Appends what nghttp2 has to send.
    void take_output(std::string& out);
    // Neither side has anything more to say: the connection may close.
    bool finished() const {
        return !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
    }
    // Ends the connection politely: GOAWAY with the last stream taken (once).
    void go_away(std::uint32_t error_code);
    // The connection is over: streams end, parked writes fail, nothing more is submitted.
    void end();
    bool ended() const { return ended_; }
    void wake() { wake_.cancel(); }
    task<void> wait_for_output() {
        wake_.expires_at(clock::time_point::max());
        [[maybe_unused]] auto [ec] = co_await wake_.async_wait(nothrow_awaitable);
    }
    task<void> wait_for_tasks() {
        while (live_tasks_ > 0) {
            all_done_.expires_at(clock::time_point::max());
            [[maybe_unused]] auto [ec] = co_await all_done_.async_wait(nothrow_awaitable);
        }
    }
    // The connection's own deadline: the idle timeout while no stream is open, none while
    // streams are (each has its own).
    void update_idle() {
        slot_.idle = streams_.empty();
        if (slot_.idle) {
            slot_.expire_in(w_.config().client.idle);
        } else {
            slot_.no_deadline();
        }
    }

    // --- For streams and the answer writer.
    worker& w() { return w_; }
    executor_type executor() { return w_.io().get_executor(); }
    const std::string& client_address() const { return client_address_; }
    bool tls() const { return tls_; }
    boost::system::error_code write_answer(h2_stream& s, const char* data, std::size_t size);
    // An answer relayed from an HTTP/2 backend, given in parts (takes_answer_parts): its head,
    // its body through write_answer, then its end with its trailers.
    // Each false when the stream is gone (the client reset it, or the connection ended).
    bool give_answer_head(h2_stream& s, const h2_call& call, const response_info& info);
    bool give_answer_end(h2_stream& s, const h2_call& call);
    void release_parked(h2_stream& s, boost::system::error_code ec);
    void answer_finished(h2_stream& s);
    void reset(h2_stream& s, std::uint32_t error_code);
    void start_stream_task(h2_stream& s);
    // Reopens the flow-control windows by `n` bytes of stream `id` taken from us (the
    // session updates no window by itself: a streamed body's bytes count only once a
    // backend took them).
    void consumed(std::int32_t id, std::size_t n) {
        if (!ended_ && session_) {
            nghttp2_session_consume(session_, id, n);
            wake();
        }
    }
    // Nothing more goes from this stream's feed to a backend (its exchange ended, or the
    // client reset it): what it holds is dropped, and so is what still arrives, each counted
    // as taken so the connection's window does not shrink for the other streams.
    void drop_feed(h2_stream& s) {
        if (!s.feed || s.feed_done) {
            return;
        }
        s.feed_done = true;
        const auto held = s.feed->available();
        s.feed->bytes.clear();
        s.feed->at = 0;
        if (held > 0) {
            consumed(s.id, held);
        }
    }
    // Room for `size` more body bytes on this connection: four of the largest bodies a
    // request may have, at least 64 MiB.
    bool hold_body(std::size_t size) {
        const auto cap = std::max<std::uint64_t>(4 * w_.config().limits.max_request_body_bytes,
                                                 std::uint64_t{64} << 20);
        if (bodies_held_ + size > cap) {
            return false;
        }
        bodies_held_ += size;
        return true;
    }
    // A stream's request head (serialize_request_head writes it), kept with its capacity for
    // the next stream: a head grows in a few steps, each a malloc otherwise.
    std::string take_head() {
        if (spare_heads_.empty()) {
            return {};
        }
        auto head = std::move(spare_heads_.back());
        spare_heads_.pop_back();
        spare_head_bytes_ -= head.capacity();
        return head;
    }
    void give_head(std::string head) {
        if (spare_heads_.size() < max_spare_heads &&
            spare_head_bytes_ + head.capacity() <= max_spare_head_bytes) {
            if (spare_heads_.capacity() == 0) {
                spare_heads_.reserve(max_spare_heads);
            }
            spare_head_bytes_ += head.capacity();
            head.clear();
            spare_heads_.push_back(std::move(head));
        }
    }
    void release_body(std::size_t size) {
        bodies_held_ -= std::min<std::uint64_t>(size, bodies_held_);
    }
    // Starts the open calls of the read just taken in (open_calls_) that have not started:
    // one whose request ended within the read already runs as any whole request; one still
    // open streams the rest of its body through a feed, since nothing says how long its
    // client will send (a client-streaming or bidirectional call of a service the gateway
    // does not parse, whose client may wait for the server's first message to send one).
    void start_open_calls();
    template <class Task>
    void spawn_counted(Task t) {
        ++live_tasks_;
        net::co_spawn(executor(), std::move(t), net::detached);
    }

  private:
    friend class task_done;
    friend struct callbacks;

    void submit_answer_head(h2_stream& s);
    void submit_trailers(h2_stream& s);
    void resume(h2_stream& s) {
        if (s.deferred && s.submitted && (s.queued() > 0 || s.answer_ended)) {
            s.deferred = false;
            nghttp2_session_resume_data(session_, s.id);
        }
    }

    worker& w_;
    session_slot& slot_;
    const std::string& client_address_;
    bool tls_;
    nghttp2_session* session_ = nullptr;
    cached_map<std::int32_t, std::shared_ptr<h2_stream>> streams_;
    // gRPC calls of this read routed without reading their messages (by a metadata header,
    // or server-level calls) whose headers came without the request's end: they start once
    // the read is taken in, so a unary call that came whole is forwarded whole.
    std::vector<std::int32_t> open_calls_;
    // At most this many heads, of at most 32 KiB together, wait (kept while the connection
    // lives, idle or not): answers come back in bursts, and the next burst of requests takes
    // as many. A gRPC call's head is a few hundred bytes.
    static constexpr std::size_t max_spare_heads = 64;
    static constexpr std::size_t max_spare_head_bytes = 32 * 1024;
    std::vector<std::string> spare_heads_;
    std::size_t spare_head_bytes_ = 0;
    net::basic_waitable_timer<clock, net::wait_traits<clock>, executor_type> wake_;
    net::basic_waitable_timer<clock, net::wait_traits<clock>, executor_type> all_done_;
    std::uint32_t live_tasks_ = 0;
    // Request bodies held by this connection's streams: HTTP/2 lets one connection upload as
    // many bodies at once as it has streams, so the per-request limit alone would let it hold
    // 128 of them.
    std::uint64_t bodies_held_ = 0;
    bool ended_ = false;
    bool goaway_sent_ = false;
};

class task_done {
  public:
    explicit task_done(h2_connection& c) : c_(c) {}
    ~task_done() {
        if (--c_.live_tasks_ == 0) {
            c_.all_done_.cancel();
        }
    }
    task_done(const task_done&) = delete;
    task_done& operator=(const task_done&) = delete;

  private:
    h2_connection& c_;
};

h2_stream::h2_stream(h2_connection& c, std::int32_t stream_id) : conn(c), id(stream_id) {
    req.version(11);
    req.reserve(480, 16);  // a call's fields at once, not a block doubling field by field
    slot.on_deadline = this;
    slot.expire_in(c.w().config().client.request);  // the whole request must arrive by then
    c.w().link(slot);
}

h2_stream::~h2_stream() {
    conn.w().unlink(slot);
    conn.release_body(req.body().size());
    if (feed) {
        feed->from = nullptr;
    }
}

void h2_stream::body_taken(std::size_t n) {
    conn.consumed(id, n);  // the connection's window too, when the stream has closed
}

void h2_stream::deadline_passed() {
    if (closed || conn.ended()) {
        return;
    }
    if (!started) {
        problem = answer_problem{http::status::request_timeout, "request_timeout",
                                 "the request was not received in time"};
        conn.start_stream_task(*this);
        return;
    }
    // The answer waited for the client's flow-control window past the client timeout.
    conn.reset(*this, NGHTTP2_CANCEL);
}

// nghttp2's callbacks, with the connection as user data.
struct callbacks {
    static h2_stream* stream_of(nghttp2_session* session, std::int32_t id) {
        return static_cast<h2_stream*>(nghttp2_session_get_stream_user_data(session, id));
    }

    static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
            return 0;
        }
        auto& c = *static_cast<h2_connection*>(user);
        auto s = std::allocate_shared<h2_stream>(cached_allocator<h2_stream>{}, c,
                                                 frame->hd.stream_id);
        nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s.get());
        c.streams_.emplace(frame->hd.stream_id, std::move(s));
        return 0;
    }

    static int on_header(nghttp2_session* session, const nghttp2_frame* frame,
                         const std::uint8_t* name_bytes, std::size_t name_size,
                         const std::uint8_t* value_bytes, std::size_t value_size, std::uint8_t,
                         void* user) {
        auto* s = stream_of(session, frame->hd.stream_id);
        if (!s || s->started || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
            return 0;  // trailer fields are dropped, as for HTTP/1.1 (request_parser)
        }
        auto& c = *static_cast<h2_connection*>(user);
        const std::string_view name(reinterpret_cast<const char*>(name_bytes), name_size);
        const std::string_view value(reinterpret_cast<const char*>(value_bytes), value_size);
        // RFC 9113 6.5.2's measure of a field list: name, value and 32 bytes each.
        s->header_bytes += name_size + value_size + 32;
        if (s->header_bytes > c.w().config().limits.max_header_bytes) {
            if (!s->problem) {
                s->problem = answer_problem{
                    http::status::request_header_fields_too_large, "header_too_large",
                    "the request's header fields exceed " +
                        std::to_string(c.w().config().limits.max_header_bytes) + " bytes"};
            }
            return 0;
        }
        if (name == ":method") {
            s->req.method_string(value);
        } else if (name == ":path") {
            s->req.target(value);
        } else if (name == ":authority") {
            s->authority.assign(value);
        } else if (name.starts_with(':')) {
            // :scheme (the forwarded scheme is the listener's), :protocol
        } else if (name == "cookie") {
            if (!s->cookies.empty()) {
                s->cookies += "; ";
            }
            s->cookies.append(value);
        } else if (name == "host") {
            if (s->authority.empty()) {
                s->authority.assign(value);  // :authority wins when both came (RFC 9113 8.3.1)
            }
        } else {
            if (!s->content_type_seen && name == "content-type") {
                s->content_type_seen = true;
                s->grpc = is_grpc_content_type(value);
            }
            s->req.insert(name, value);
        }
        return 0;
    }

    static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                             const std::uint8_t* data, std::size_t size, void* user) {
        auto* s = stream_of(session, stream_id);
        if (s && s->feed && !s->feed_done && !s->request_ended) {
            // A streaming call under way: its window reopens as its backend takes the bytes.
            s->feed->append(reinterpret_cast<const char*>(data), size);
            return 0;
        }
        // Held in the body below (bounded by the body limits) or dropped: taken now.
        nghttp2_session_consume(session, stream_id, size);
        if (!s || s->started || s->problem) {
            return 0;
        }
        auto& c = *static_cast<h2_connection*>(user);
        auto& body = s->req.body();
        if (body.size() + size > c.w().config().limits.max_request_body_bytes) {
            s->problem = answer_problem{
                http::status::payload_too_large, "body_too_large",
                "the request body exceeds " +
                    std::to_string(c.w().config().limits.max_request_body_bytes) + " bytes"};
            c.start_stream_task(*s);  // answered now; the rest of the body is dropped
            return 0;
        }
        if (!c.hold_body(size)) {
            s->problem = answer_problem{
                http::status::service_unavailable, "overloaded",
                "this connection's requests hold too many body bytes at once; retry"};
            s->problem_reason = metrics::unrouted_reason::overloaded;
            c.start_stream_task(*s);
            return 0;
        }
        body.append(reinterpret_cast<const char*>(data), size);
        if (s->streams_request && routing::holds_whole_grpc_message(body)) {
            s->feed = std::make_shared<body_feed>();
            s->feed->from = s;
            c.start_stream_task(*s);  // routed by the first message; the rest follows it
        }
        return 0;
    }

    static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
            return 0;
        }
        auto* s = stream_of(session, frame->hd.stream_id);
        if (!s) {
            return 0;
        }
        auto& c = *static_cast<h2_connection*>(user);
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            if (!s->authority.empty()) {
                s->req.set(http::field::host, s->authority);
            }
            if (!s->cookies.empty()) {
                s->req.set(http::field::cookie, s->cookies);
            }
            if (s->grpc) {
                const auto call = routing::parse_grpc_path(std::string_view(s->req.target()));
                s->streams_request = routing::grpc_method_streams_requests(call);
                if (!routing::grpc_method_names_model(call) &&
                    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
                    c.open_calls_.push_back(s->id);
                }
            }
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            s->request_ended = true;
            if (s->feed) {
                s->feed->end();
            }
            if (!s->started) {
                c.start_stream_task(*s);
            }
        }
        return 0;
    }

    static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        // A stream answered before its request ended (an early 413 or 408): once the answer's
        // end went out, the client is told to stop sending (RFC 9113 8.1).
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            auto* s = stream_of(session, frame->hd.stream_id);
            if (s && !s->request_ended) {
                static_cast<h2_connection*>(user)->reset(*s, NGHTTP2_NO_ERROR);
            }
        }
        return 0;
    }

    static int on_stream_close(nghttp2_session* session, std::int32_t stream_id, std::uint32_t,
                               void* user) {
        auto& c = *static_cast<h2_connection*>(user);
        auto it = c.streams_.find(stream_id);
        if (it == c.streams_.end()) {
            return 0;
        }
        auto& s = *it->second;
        s.client_left();
        c.drop_feed(s);
        c.release_parked(s, net::error::connection_reset);
        nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
        c.streams_.erase(it);  // its coroutine, if it runs, keeps it alive
        return 0;
    }

    static ssize_t read_answer(nghttp2_session*, std::int32_t, std::uint8_t* buf,
                               std::size_t length, std::uint32_t* flags,
                               nghttp2_data_source* source, void* user) {
        auto& s = *static_cast<h2_stream*>(source->ptr);
        const auto available = s.queued();
        if (s.closed || (available == 0 && !s.answer_ended)) {
            s.deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
        const auto n = std::min(available, length);
        std::memcpy(buf, s.pending.data() + s.pending_at, n);
        s.pending_at += n;
        if (s.pending_at == s.pending.size()) {
            s.pending.clear();
            s.pending_at = 0;
            if (s.answer_ended) {
                *flags |= NGHTTP2_DATA_FLAG_EOF;
                if (!s.answer.fields().trailers.empty()) {
                    // The trailers end the stream instead (a gRPC answer's status).
                    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                    static_cast<h2_connection*>(user)->submit_trailers(s);
                }
            }
        }
        if (s.parked && s.queued() <= answer_low_water) {
            static_cast<h2_connection*>(user)->release_parked(s, {});
        }
        return static_cast<ssize_t>(n);
    }
};

bool h2_connection::start() {
    nghttp2_session_callbacks* cb = nullptr;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return false;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, callbacks::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, callbacks::on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, callbacks::on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, callbacks::on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, callbacks::on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, callbacks::on_stream_close);
    nghttp2_option* opt = nullptr;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return false;
    }
    // The protocol's known floods end the connection: rapid reset (CVE-2023-44487: 1,000
    // resets, then 33 a second), CONTINUATION floods (8 per header block), SETTINGS floods
    // (32 in flight), and a client that does not read our control frames (1,000 queued).
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    // Windows reopen as request bytes are taken (on_data_chunk, h2_stream::body_taken).
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    const int rv = nghttp2_session_server_new3(&session_, cb, this, opt, h2_memory());
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        session_ = nullptr;
        return false;
    }
    const auto& limits = w_.config().limits;
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(request_stream_window)},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_bytes},
    };
    if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0 ||
        nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                              request_connection_window) != 0) {
        return false;
    }
    return true;
}

bool h2_connection::receive(const char* data, std::size_t size) {
    const auto rv =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), size);
    start_open_calls();
    wake();
    update_idle();
    if (rv < 0) {
        // A flood, a bad preface or a broken frame nghttp2 cannot recover from.
        if (rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
        }
        return false;
    }
    if (w_.keep_alive_ended()) {
        go_away(NGHTTP2_NO_ERROR);
    }
    return true;
}

void h2_connection::start_open_calls() {
    for (const auto id : open_calls_) {
        auto it = streams_.find(id);
        if (it == streams_.end()) {
            continue;  // reset or closed within the read
        }
        auto& s = *it->second;
        if (s.started || s.request_ended || s.problem) {
            continue;
        }
        s.feed = std::make_shared<body_feed>();
        s.feed->from = &s;
        start_stream_task(s);
    }
    open_calls_.clear();
}

void h2_connection::take_output(std::string& out) {
    if (!session_) {
        return;
    }
    for (;;) {
        const std::uint8_t* data = nullptr;
        const auto n = nghttp2_session_mem_send(session_, &data);
        if (n <= 0) {
            return;
        }
        out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
}

void h2_connection::go_away(std::uint32_t error_code) {
    if (goaway_sent_ || ended_) {
        return;
    }
    goaway_sent_ = true;
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), error_code, nullptr,
                          0);
    wake();
}

void h2_connection::end() {
    ended_ = true;
    // The streams stay in the map (nghttp2 still points at them) until the connection goes.
    for (auto& [id, s] : streams_) {
        s->client_left();
        release_parked(*s, net::error::connection_reset);
    }
    slot_.idle = false;
    slot_.no_deadline();
    wake();
}

void h2_connection::release_parked(h2_stream& s, boost::system::error_code ec) {
    if (!s.parked) {
        return;
    }
    const std::size_t n = ec ? 0 : s.parked_bytes;
    // Not net::append(std::move(s.parked), ...): Boost 1.81's append hands its handler on as
    // an lvalue, and any_completion_handler's unconstrained converting constructor then wraps
    // itself without end (a stack overflow: the worker crashed on the first answer a client's
    // window held back).
    net::post(executor(), [handler = std::move(s.parked), ec, n]() mutable {
        std::move(handler)(ec, n);
    });
    s.parked = nullptr;
}

void h2_connection::reset(h2_stream& s, std::uint32_t error_code) {
    if (s.closed || ended_) {
        return;
    }
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, error_code);
    release_parked(
        s, error_code == NGHTTP2_CANCEL ? net::error::timed_out : net::error::connection_reset);
    wake();
}

void h2_connection::submit_answer_head(h2_stream& s) {
    const auto& t = s.answer;
    char status[4];
    const auto code = std::min(t.status(), 999u);
    status[0] = static_cast<char>('0' + code / 100);
    status[1] = static_cast<char>('0' + code / 10 % 10);
    status[2] = static_cast<char>('0' + code % 10);
    const auto& fields = t.fields();
    cached_vector<nghttp2_nv> nva;
    nva.reserve(fields.head.size() + 1);
    nva.push_back(make_nv(":status", {status, 3}));
    for (const auto& f : fields.head) {
        nva.push_back(make_nv(fields.name(f), fields.value(f)));
    }
    s.submitted = true;
    const bool no_body = s.answer_ended && s.queued() == 0 && fields.trailers.empty();
    nghttp2_data_provider body{};
    body.source.ptr = &s;
    body.read_callback = callbacks::read_answer;
    nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), no_body ? nullptr : &body);
}

void h2_connection::submit_trailers(h2_stream& s) {
    const auto& fields = s.answer.fields();
    cached_vector<nghttp2_nv> nva;
    nva.reserve(fields.trailers.size());
    for (const auto& f : fields.trailers) {
        nva.push_back(make_nv(fields.name(f), fields.value(f)));
    }
    nghttp2_submit_trailer(session_, s.id, nva.data(), nva.size());
}

boost::system::error_code h2_connection::write_answer(h2_stream& s, const char* data,
                                                      std::size_t size) {
    if (s.closed || ended_) {
        return net::error::connection_reset;
    }
    if (!s.answer.read(data, size, s.pending)) {
        // Bytes this process wrote that do not read as an answer: a defect, not the client's
        // fault.
        reset(s, NGHTTP2_INTERNAL_ERROR);
        return make_error_code(boost::system::errc::bad_message);
    }
    if (s.answer.done()) {
        s.answer_ended = true;
    }
    if (s.answer.header_done() && !s.submitted) {
        submit_answer_head(s);
    }
    resume(s);
    wake();
    return {};
}

bool h2_connection::give_answer_head(h2_stream& s, const h2_call& call, const response_info& info) {
    if (s.closed || ended_) {
        return false;
    }
    if (s.submitted) {
        return true;  // not twice
    }
    auto& t = s.answer;
    t.give_head(call.status);
    auto& fields = t.given_fields();
    for (const auto& f : call.fields.head) {
        fields.add_head(call.fields.name(f), call.fields.value(f));
    }
    // What finish_response_head adds to an HTTP/1.1 answer, less what HTTP/2 leaves out
    // (Transfer-Encoding, Connection).
    if (info.framing == body_framing::content_length) {
        char digits[20];
        const auto end = std::to_chars(digits, digits + sizeof digits, info.content_length).ptr;
        fields.add_head("content-length", {digits, static_cast<std::size_t>(end - digits)});
    }
    for_each_stamp(info, [&](std::string_view, std::string_view name, std::string_view value) {
        fields.add_head(name, value);
    });
    // No body to come (HEAD, 204, 304, an empty or trailers-only answer): one HEADERS frame
    // that ends the stream, as a gRPC client needs a trailers-only answer to be.
    if (info.framing == body_framing::none ||
        (info.framing == body_framing::content_length && info.content_length == 0)) {
        t.end_given();
        s.answer_ended = true;
    }
    submit_answer_head(s);
    wake();
    return true;
}

bool h2_connection::give_answer_end(h2_stream& s, const h2_call& call) {
    if (s.answer_ended) {
        return true;  // ended with its head (the stream may have closed since, as it should)
    }
    if (s.closed || ended_) {
        return false;
    }
    auto& fields = s.answer.given_fields();
    for (const auto& f : call.fields.trailers) {
        fields.add_trailer(call.fields.name(f), call.fields.value(f));
    }
    s.answer.end_given();
    s.answer_ended = true;
    resume(s);
    wake();
    return true;
}

void h2_connection::answer_finished(h2_stream& s) {
    if (!s.closed && !ended_ && !s.answer_ended) {
        // The answer broke off (the backend cut it, or it never began): the client must not
        // take what it got for a whole answer.
        reset(s, NGHTTP2_INTERNAL_ERROR);
    }
    s.slot.no_deadline();
    if (w_.keep_alive_ended()) {
        go_away(NGHTTP2_NO_ERROR);
    }
    wake();
}

// The client side of one stream, as handle_request and send_error see it: an
// AsyncWriteStream taking the HTTP/1.1 answer they write.
class h2_answer_writer {
  public:
    using executor_type = proxy::executor_type;
    h2_answer_writer(h2_connection& c, h2_stream& s) : c_(c), s_(s) {}
    executor_type get_executor() { return c_.executor(); }

    // An HTTP/2 backend's answer in parts (takes_answer_parts), not as HTTP/1.1.
    bool answer_head(const h2_call& call, const response_info& info) {
        return c_.give_answer_head(s_, call, info);
    }
    bool answer_end(const h2_call& call) { return c_.give_answer_end(s_, call); }

    template <class ConstBufferSequence, class Token>
    auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
        return net::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const ConstBufferSequence& bufs) {
                boost::system::error_code ec;
                const std::size_t n = take(bufs, ec);
                if (!ec && s_.queued() > answer_high_water) {
                    // Until the client's window takes it. Swapped in, not assigned: Boost
                    // 1.81's any_completion_handler move-assigns through its unconstrained
                    // converting constructor with an lvalue, which wraps itself without end.
                    write_handler(std::move(handler)).swap(s_.parked);
                    s_.parked_bytes = n;
                    return;
                }
                net::post(c_.executor(), net::append(std::move(handler), ec, ec ? 0 : n));
            },
            token, buffers);
    }

    // write_at_once's try: the bytes queued for the stream at once, without an operation
    // posted to the scheduler and a coroutine resumed from there, when the whole write fits
    // under the queue's high mark (else 0: the asynchronous write hands them over 64 KiB at a
    // time and waits for the client's window, so a client that reads nothing holds at most
    // about twice the mark, however much a backend sends).
    template <class ConstBufferSequence>
    std::size_t write_now(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
        if (s_.queued() + net::buffer_size(buffers) > answer_high_water) {
            return 0;
        }
        return take(buffers, ec);
    }

  private:
    // Hands the bytes to the stream's answer; the bytes taken (up to a failed piece).
    template <class ConstBufferSequence>
    std::size_t take(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
        std::size_t n = 0;
        for (auto it = net::buffer_sequence_begin(buffers);
             it != net::buffer_sequence_end(buffers) && !ec; ++it) {
            const net::const_buffer b(*it);
            ec = c_.write_answer(s_, static_cast<const char*>(b.data()), b.size());
            n += ec ? 0 : b.size();
        }
        return n;
    }

    h2_connection& c_;
    h2_stream& s_;
};

task<void> serve_stream(h2_connection& c, std::shared_ptr<h2_stream> s) {
    task_done counted(c);
    auto& w = c.w();
    auto& req = s->req;
    request_context rc;
    rc.http2 = true;
    // The answer is written as HTTP/1.1 and translated, unless it is an HTTP/2 backend's,
    // handed over in parts (takes_answer_parts).
    rc.client_version = 11;
    rc.keep_alive = true;
    rc.head = req.method() == http::verb::head;
    rc.grpc = s->grpc;
    rc.feed = s->feed.get();
    if (rc.head) {
        s->answer.skip_body();
    }
    auto rid = req.find("X-Request-Id");
    if (rid != req.end() && acceptable_request_id(rid->value())) {
        rc.id.assign(rid->value());
    } else {
        rc.id.generate(w);
    }
    h2_answer_writer down(c, *s);
    std::string head = c.take_head();
    std::string body_scratch;
    const auto started = clock::now();
    s->slot.no_deadline();
    if (s->problem) {
        w.shard().record_unrouted(s->problem_reason);
        co_await send_error(down, w, s->slot, rc, *s->problem);
        log_request(w, rc, std::string_view(req.method_string()), std::string_view(req.target()), 0,
                    c.client_address(), started);
    } else {
        co_await handle_request(down, w, s->slot, req, rc, head, body_scratch, c.client_address(),
                                c.tls(), started);
    }
    c.give_head(std::move(head));
    c.drop_feed(*s);
    c.answer_finished(*s);
}

void h2_connection::start_stream_task(h2_stream& s) {
    auto it = streams_.find(s.id);
    if (it == streams_.end() || s.started) {
        return;
    }
    s.started = true;
    // Streams the client reset still run until their backend answers: without a bound, a
    // client opening and resetting streams (rapid reset, below nghttp2's rate limit) would
    // pile up requests to the backends. Past twice the stream limit, new ones are refused
    // (the client may retry them: REFUSED_STREAM says nothing was processed).
    if (live_tasks_ > 2 * w_.config().limits.max_concurrent_streams) {
        reset(s, NGHTTP2_REFUSED_STREAM);
        return;
    }
    spawn_counted(serve_stream(*this, it->second));
}

template <class Stream>
stream_type& lowest_layer_of(Stream& s) {
    if constexpr (std::is_same_v<Stream, stream_type>) {
        return s;
    } else {
        return s.next_layer();
    }
}

// Writes what nghttp2 has to send whenever there is some, until the connection ends.
template <class Stream>
task<void> write_frames(Stream& stream, h2_connection& c, session_slot& slot) {
    task_done counted(c);
    const auto& cfg = c.w().config();
    std::string out;
    for (;;) {
        out.clear();
        c.take_output(out);
        if (!out.empty()) {
            // A client that stops reading holds our writes: the client timeout bounds that.
            slot.expire_in(cfg.client.request);
            const auto bytes = net::buffer(out);
            const auto w = write_at_once(stream, bytes);
            auto [ec, n] = w.finished ? w.result() : co_await write_rest(stream, bytes, w.written);
            if (ec) {
                c.end();
                boost::system::error_code ignored;
                lowest_layer_of(stream).cancel(ignored);  // the reader stops too
                co_return;
            }
            if (!c.ended()) {
                c.update_idle();
            }
            continue;
        }
        if (c.ended()) {
            co_return;
        }
        if (c.finished()) {
            // GOAWAY went out and every stream has ended: the reader may stop.
            c.end();
            boost::system::error_code ignored;
            lowest_layer_of(stream).cancel(ignored);
            co_return;
        }
        co_await c.wait_for_output();
    }
}

}  // namespace

template <class Stream>
task<void> serve_h2(Stream& stream, worker& w, session_slot& slot, beast::flat_buffer& read_ahead,
                    const std::string& client_address) {
    constexpr bool tls = std::is_same_v<Stream, tls_stream_type>;
    h2_connection c(w, slot, client_address, tls);
    if (!c.start()) {
        co_return;
    }
    c.spawn_counted(write_frames(stream, c, slot));
    bool reading = true;
    if (read_ahead.size() > 0) {
        const auto bytes = read_ahead.cdata();
        reading = c.receive(static_cast<const char*>(bytes.data()), bytes.size());
        read_ahead.consume(read_ahead.size());
    }
    while (reading && !c.ended()) {
        if (slot.idle && w.draining()) {
            c.go_away(NGHTTP2_NO_ERROR);
            break;
        }
        auto [ec, n] =
            co_await stream.async_read_some(read_ahead.prepare(16 * 1024), nothrow_awaitable);
        read_ahead.commit(n);
        if (n > 0) {
            const auto bytes = read_ahead.cdata();
            reading = c.receive(static_cast<const char*>(bytes.data()), bytes.size());
            read_ahead.consume(read_ahead.size());
        }
        if (ec) {
            if (ec == net::error::operation_aborted && !c.ended() && slot.idle &&
                (slot.timed_out || w.draining())) {
                c.go_away(NGHTTP2_NO_ERROR);  // idle past the timeout, or the worker drains
            }
            break;
        }
    }
    // Let the writer send what is left (a GOAWAY) before the streams are ended.
    c.wake();
    c.end();
    co_await c.wait_for_tasks();
}

template task<void> serve_h2<stream_type>(stream_type&, worker&, session_slot&, beast::flat_buffer&,
                                          const std::string&);
template task<void> serve_h2<tls_stream_type>(tls_stream_type&, worker&, session_slot&,
                                              beast::flat_buffer&, const std::string&);

}  // namespace stagegate::proxy
