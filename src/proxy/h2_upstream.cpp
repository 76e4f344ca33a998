// HTTP/2 client connections to backends (see h2_upstream.hpp). An h2_client owns one
// connection's nghttp2 client session, a reader and a writer coroutine, and the calls open on
// it; nghttp2's callbacks fill in each call's answer and wake the exchange waiting on it.
// The transport is the pool's connection, cleartext (h2c) or TLS whose ALPN chose h2 (the pool
// checked): only the reader's and writer's stream differs, everything above it is the same.
#include "h2_upstream.hpp"
#include "h2_fields.hpp"
#include "h2_memory.hpp"
#include "http_util.hpp"

#include <nghttp2/nghttp2.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstring>

namespace stagegate::proxy {

namespace {

// What a backend may send ahead of the client taking it: per stream one relay's worth of
// round trips (1 MiB), per connection 16 MiB; a stream's window reopens only as its client
// takes the bytes.
constexpr std::int32_t answer_stream_window = 1 << 20;
constexpr std::int32_t answer_connection_window = 16 << 20;

// The answer fields the client never gets from a backend: the gateway's own stamps (the
// backend's copy would reach the client first) and the framing, which the relay decides.
bool dropped_answer_field(std::string_view name) {
    return is_gateway_stamp(name) || name == "content-length" || name == "connection" ||
           name == "transfer-encoding" || name == "keep-alive";
}

}  // namespace

class h2_client : public std::enable_shared_from_this<h2_client> {
public:
    h2_client(worker& w, std::unique_ptr<upstream_connection> connection,
              const routing::upstream_endpoint& endpoint)
        : w_(w),
          connection_(std::move(connection)),
          authority_(endpoint.authority),
          scheme_(connection_->secure ? "https" : "http"),
          endpoint_id_(endpoint.id),
          wake_(w.io().get_executor()) {}
    ~h2_client() {
        if (session_) {
            nghttp2_session_del(session_);
        }
    }
    h2_client(const h2_client&) = delete;
    h2_client& operator=(const h2_client&) = delete;

    bool start();
    // `head`: the request's fields as serialize_h2_request_head wrote them.
    std::shared_ptr<h2_call> submit(std::string_view head, std::string_view body, body_feed* feed);
    // A streaming call's body has more bytes (or ended): its DATA goes on.
    void resume_body(h2_call& call) {
        if (session_ && !dead_ && call.stream_id > 0) {
            nghttp2_session_resume_data(session_, call.stream_id);
            wake();
        }
    }
    bool accepting() const { return !dead_ && !going_away_ && !closing_; }
    bool dead() const { return dead_; }
    std::uint32_t endpoint_id() const { return endpoint_id_; }
    bool idle() const { return calls_.empty(); }
    void finish(h2_call& call);
    void consumed(h2_call& call, std::size_t n) {
        if (session_ && !dead_) {
            nghttp2_session_consume(session_, call.stream_id, n);
            wake();
        }
    }
    // Closes once no stream is open (now, if none is).
    void close_when_idle() {
        closing_ = true;
        if (calls_.empty()) {
            shut("the connection was closed by the gateway");
        }
    }
    void shut(std::string_view why) {
        if (dead_) {
            return;
        }
        connection_lost(why);
        boost::system::error_code ignored;
        connection_->lowest().close(ignored);
    }

private:
    struct callbacks;
    void wake() { wake_.cancel(); }
    // The connection is over: every call still open closes; those whose request never left
    // may go out elsewhere.
    void connection_lost(std::string_view why) {
        if (dead_) {
            return;
        }
        dead_ = true;
        for (auto& [id, call] : calls_) {
            call->closed = true;
            call->unprocessed = !call->headers_sent;
            call->closed_why = std::string(why);
            call->changed();
        }
        calls_.clear();
        wake();
    }
    // On the connection's stream: stream_type (h2c) or tls_stream_type (h2). One read and one
    // write may be under way at once on either (Asio's SSL stream allows it, as serve_h2 does).
    template <class Stream>
    task<void> read_frames(std::shared_ptr<h2_client> self, Stream& stream);
    template <class Stream>
    task<void> write_frames(std::shared_ptr<h2_client> self, Stream& stream);

    worker& w_;
    std::unique_ptr<upstream_connection> connection_;
    std::string authority_;
    std::string_view scheme_;  // :scheme of every request
    std::uint32_t endpoint_id_;
    nghttp2_session* session_ = nullptr;
    cached_map<std::int32_t, std::shared_ptr<h2_call>> calls_;
    std::vector<nghttp2_nv> nva_;  // submit()'s scratch, reused from call to call
    wake_timer wake_;
    bool dead_ = false;
    bool going_away_ = false;  // the backend sent GOAWAY: no new streams here
    bool closing_ = false;     // the gateway drains: no new streams, close when idle
};

struct h2_client::callbacks {
    static h2_call* call_of(nghttp2_session* session, std::int32_t id) {
        return static_cast<h2_call*>(nghttp2_session_get_stream_user_data(session, id));
    }

    static int on_header(nghttp2_session* session, const nghttp2_frame* frame,
                         const std::uint8_t* name_bytes, std::size_t name_size,
                         const std::uint8_t* value_bytes, std::size_t value_size, std::uint8_t,
                         void*) {
        auto* call = call_of(session, frame->hd.stream_id);
        if (!call || frame->hd.type != NGHTTP2_HEADERS) {
            return 0;
        }
        const std::string_view name(reinterpret_cast<const char*>(name_bytes), name_size);
        const std::string_view value(reinterpret_cast<const char*>(value_bytes), value_size);
        if (name == ":status") {
            if (!call->head_done) {
                call->status = 0;
                for (char c : value.substr(0, 3)) {
                    call->status = call->status * 10 + static_cast<unsigned>(c - '0');
                }
            }
            return 0;
        }
        if (name.starts_with(':')) {
            return 0;
        }
        if (name == "grpc-status") {
            call->grpc_status = parse_grpc_status(value);
        }
        if (name == "content-encoding" && !call->head_done && !ascii_iequal(value, "identity")) {
            call->encoded = true;
        }
        if (name == "content-length" && !call->head_done) {
            std::uint64_t n = 0;
            for (char c : value) {
                n = n * 10 + static_cast<std::uint64_t>(c - '0');  // nghttp2 checked the digits
            }
            call->content_length = n;
        }
        if (dropped_answer_field(name)) {
            return 0;
        }
        if (call->fields.bytes.size() + name.size() + value.size() > answer_fields::max_bytes) {
            call->closed_why = "its answer's fields passed 64 KiB";
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
        }
        // nghttp2 refuses CR, LF and NUL in values, and names that are not lowercase tokens.
        if (call->head_done) {
            call->fields.add_trailer(name, value);
        } else {
            call->grpc_answer |= name == "content-type" && value.starts_with("application/grpc");
            call->fields.add_head(name, value);
        }
        return 0;
    }

    static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                             const std::uint8_t* data, std::size_t size, void*) {
        auto* call = call_of(session, stream_id);
        if (!call || call->detached) {
            nghttp2_session_consume(session, stream_id, size);  // nobody takes it
            return 0;
        }
        call->data.append(reinterpret_cast<const char*>(data), size);
        call->changed();
        return 0;
    }

    static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        auto& client = *static_cast<h2_client*>(user);
        if (frame->hd.type == NGHTTP2_GOAWAY) {
            client.going_away_ = true;  // streams past its last id close as REFUSED_STREAM
            return 0;
        }
        if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
            return 0;
        }
        auto* call = call_of(session, frame->hd.stream_id);
        if (!call) {
            return 0;
        }
        if (frame->hd.type == NGHTTP2_HEADERS && !call->head_done) {
            if (call->status >= 200) {
                call->head_done = true;
            } else {
                call->fields.clear();  // a 1xx interim answer: the final one follows
                call->grpc_answer = false;
                call->grpc_status.reset();
                call->content_length.reset();
                call->encoded = false;
            }
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            call->ended = true;
        }
        call->changed();
        return 0;
    }

    static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void*) {
        if (frame->hd.type == NGHTTP2_HEADERS) {
            if (auto* call = call_of(session, frame->hd.stream_id)) {
                call->headers_sent = true;
            }
        }
        return 0;
    }

    static int on_stream_close(nghttp2_session* session, std::int32_t stream_id,
                               std::uint32_t error_code, void* user) {
        auto& client = *static_cast<h2_client*>(user);
        auto it = client.calls_.find(stream_id);
        if (it == client.calls_.end()) {
            return 0;
        }
        auto call = std::move(it->second);
        client.calls_.erase(it);
        nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
        call->closed = true;
        if (!call->ended) {
            call->error_code = error_code;
            call->unprocessed = error_code == NGHTTP2_REFUSED_STREAM || !call->headers_sent;
            if (call->closed_why.empty()) {  // not reset by us (on_header says why then)
                call->closed_why = std::string("the backend reset the stream (") +
                                   nghttp2_http2_strerror(error_code) + ")";
            }
        }
        call->changed();
        if (client.closing_ && client.calls_.empty()) {
            client.wake();  // the writer closes the connection
        }
        return 0;
    }

    static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                             std::uint32_t* flags, nghttp2_data_source* source, void*) {
        auto& call = *static_cast<h2_call*>(source->ptr);
        if (call.detached) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
        }
        auto n = std::min(length, call.body.size() - call.body_sent);
        std::memcpy(buf, call.body.data() + call.body_sent, n);
        call.body_sent += n;
        if (call.body_sent < call.body.size()) {
            return static_cast<ssize_t>(n);
        }
        if (auto* feed = call.feed) {
            n += feed->take(buf + n, length - n);
            if (feed->available() > 0) {
                return static_cast<ssize_t>(n);
            }
            if (!feed->ended) {
                if (n > 0) {
                    return static_cast<ssize_t>(n);
                }
                call.body_deferred = true;  // until body_arrived
                return NGHTTP2_ERR_DEFERRED;
            }
        }
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return static_cast<ssize_t>(n);
    }
};

bool h2_client::start() {
    nghttp2_session_callbacks* cb = nullptr;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return false;
    }
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
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    const int rv = nghttp2_session_client_new3(&session_, cb, this, opt, h2_memory());
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        session_ = nullptr;
        return false;
    }
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(answer_stream_window)},
    };
    if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0 ||
        nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                              answer_connection_window) != 0) {
        return false;
    }
    auto self = shared_from_this();
    if (auto& secure = connection_->secure) {
        net::co_spawn(w_.io().get_executor(), read_frames(self, *secure), net::detached);
        net::co_spawn(w_.io().get_executor(), write_frames(self, *secure), net::detached);
    } else {
        net::co_spawn(w_.io().get_executor(), read_frames(self, *connection_->plain),
                      net::detached);
        net::co_spawn(w_.io().get_executor(), write_frames(self, *connection_->plain),
                      net::detached);
    }
    return true;
}

std::shared_ptr<h2_call> h2_client::submit(std::string_view head, std::string_view body,
                                           body_feed* feed) {
    // The fields serialize_h2_request_head wrote (h2_fields.hpp: names lowercased, hop-by-hop
    // ones left out), pseudo-headers first as HTTP/2 requires. Scratch kept with the
    // connection (one worker thread): nghttp2 copies what is submitted.
    auto& nva = nva_;
    nva.clear();
    nva.resize(4);  // :method, :scheme, :path, :authority
    nva[1] = make_nv(":scheme", scheme_);
    nva[3] = make_nv(":authority", authority_);
    h2_head_entries(head, [&](const h2_head_field& f) {
        switch (f.kind) {
            case h2_entry::method:
                nva[0] = make_nv(":method", f.value);
                break;
            case h2_entry::path:
                nva[2] = make_nv(":path", f.value);
                break;
            case h2_entry::authority:
                nva[3] = make_nv(":authority", f.value);
                break;
            case h2_entry::content_length:
                // A streamed call's length is its first message(s)' only: the stream says
                // where it ends.
                if (!feed) {
                    nva.push_back(make_nv(f.name, f.value));
                }
                break;
            case h2_entry::field:
                nva.push_back(make_nv(f.name, f.value));
                break;
        }
    });
    // The gateway relays trailers (a gRPC answer's status is in them); gRPC servers ask for it.
    nva.push_back(make_nv("te", "trailers"));

    auto call = std::allocate_shared<h2_call>(cached_allocator<h2_call>{}, w_.io().get_executor());
    call->body = body;
    call->client = weak_from_this();
    nghttp2_data_provider provider{};
    provider.source.ptr = call.get();
    provider.read_callback = callbacks::read_body;
    const auto id =
        nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                               body.empty() && !feed ? nullptr : &provider, call.get());
    if (id < 0) {
        call->closed = true;
        call->unprocessed = true;
        call->closed_why = std::string("the stream could not be opened: ") + nghttp2_strerror(id);
        return call;
    }
    call->stream_id = id;
    if (feed) {
        call->feed = feed;
        feed->to = call.get();
    }
    calls_.emplace(id, call);
    wake();
    return call;
}

void h2_call::body_arrived() {
    if (!body_deferred || detached) {
        return;
    }
    body_deferred = false;
    if (auto c = client.lock()) {
        c->resume_body(*this);
    }
}

void h2_client::finish(h2_call& call) {
    call.detached = true;
    if (call.feed) {
        call.feed->to = nullptr;  // the call may outlive the exchange; the feed may not
        call.feed = nullptr;
    }
    if (dead_ || !session_) {
        return;
    }
    if (!call.data.empty()) {
        nghttp2_session_consume(session_, call.stream_id, call.data.size());
        call.data.clear();
    }
    if (!call.closed && call.stream_id > 0) {
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, call.stream_id, NGHTTP2_CANCEL);
    }
    wake();
}

// `keep`: the connection lives as long as its coroutines run.
template <class Stream>
task<void> h2_client::read_frames(std::shared_ptr<h2_client> /*keep*/, Stream& stream) {
    auto& buffer = connection_->buffer;
    while (!dead_) {
        auto [ec, n] =
            co_await stream.async_read_some(buffer.prepare(16 * 1024), nothrow_awaitable);
        buffer.commit(n);
        if (n > 0 && !dead_) {
            const auto bytes = buffer.cdata();
            const auto rv = nghttp2_session_mem_recv(
                session_, static_cast<const std::uint8_t*>(bytes.data()), bytes.size());
            buffer.consume(buffer.size());
            if (rv < 0) {
                connection_lost(std::string("the backend broke the HTTP/2 protocol (") +
                                nghttp2_strerror(static_cast<int>(rv)) + ")");
                break;
            }
            wake();
        }
        if (ec) {
            // (Over TLS, a close without close_notify reads as stream_truncated.)
            const bool closed = ec == net::error::eof || ec == net::ssl::error::stream_truncated;
            connection_lost(closed ? "the backend closed the connection"
                                   : "the connection failed: " + ec.message());
            break;
        }
    }
    boost::system::error_code ignored;
    connection_->lowest().close(ignored);
    wake();
}

template <class Stream>
task<void> h2_client::write_frames(std::shared_ptr<h2_client> /*keep*/, Stream& stream) {
    std::string out;
    while (!dead_) {
        out.clear();
        for (;;) {
            const std::uint8_t* data = nullptr;
            const auto n = nghttp2_session_mem_send(session_, &data);
            if (n <= 0) {
                break;
            }
            out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
        }
        if (!out.empty()) {
            const auto bytes = net::buffer(out);
            const auto w = write_at_once(stream, bytes);
            auto [ec, n] = w.finished ? w.result() : co_await write_rest(stream, bytes, w.written);
            if (ec) {
                connection_lost("writing to the backend failed: " + ec.message());
                break;
            }
            continue;
        }
        if ((closing_ && calls_.empty()) ||
            (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_))) {
            connection_lost(closing_ ? "the connection was closed by the gateway"
                                     : "the backend ended the connection (GOAWAY)");
            break;
        }
        wake_.expires_at(clock::time_point::max());
        [[maybe_unused]] auto [ec] = co_await wake_.async_wait(nothrow_awaitable);
    }
    boost::system::error_code ignored;
    connection_->lowest().close(ignored);  // the reader stops too
}

// --- h2_upstreams --------------------------------------------------------------------------

h2_upstreams::h2_upstreams(worker& w) : w_(w), connected_(w.io().get_executor()) {
    connected_.expires_at(clock::time_point::max());  // only cancel() wakes its waiters
}

h2_upstreams::~h2_upstreams() { abort_all(); }

std::shared_ptr<h2_client> h2_upstreams::accepting(std::uint32_t endpoint_id) {
    auto& clients = at(endpoint_id).clients;
    std::erase_if(clients, [](const auto& c) { return c->dead(); });
    for (const auto& c : clients) {
        if (c->accepting()) {
            return c;
        }
    }
    return nullptr;
}

task<h2_upstreams::opened> h2_upstreams::open(const routing::model_route& model,
                                              const routing::version_route& version,
                                              session_slot& slot, std::string_view head,
                                              std::string_view body, body_feed* feed) {
    opened out;
    const auto& eps = version.endpoints;
    if (eps.empty() || stopped_) {
        acquired none;
        none.status = acquire_status::no_healthy_upstream;
        none.detail = stopped_ ? "the gateway is shutting down"
                               : "version " + version.name + " has no endpoints";
        out.refused = acquire_failure(none, model, version);
        co_return out;
    }
    const auto connect_deadline = coarse_now() + model.timeouts.connect;
    for (;;) {
        // The endpoint whose turn it is: its connection, else a connect to it (the pool skips
        // it when it is ejected); while connects to all of them are under way, wait for one.
        const std::uint32_t start = round_robin_[eps.front().id]++;
        std::shared_ptr<h2_client> client;
        std::optional<std::size_t> connect_to;
        for (std::size_t k = 0; k < eps.size() && !client && !connect_to; ++k) {
            const auto index = (start + k) % eps.size();
            client = accepting(eps[index].id);
            if (client) {
                out.authority = eps[index].authority;
            } else if (at(eps[index].id).connecting == 0) {
                connect_to = index;
            }
        }
        if (client) {
            out.call = client->submit(head, body, feed);
            co_return out;
        }
        if (!connect_to) {
            // Woken when a connect under way ends (each is bounded by the connect timeout).
            // Never re-armed here: expires_at would cancel every other waiter, and each of
            // those, re-arming, would cancel the rest again.
            [[maybe_unused]] auto [ec] = co_await connected_.async_wait(nothrow_awaitable);
            if (coarse_now() >= connect_deadline) {
                acquired late;
                late.status = acquire_status::connect_timeout;
                late.detail = "no connection to version " + version.name + " in time";
                out.refused = acquire_failure(late, model, version);
                co_return out;
            }
            continue;
        }
        const auto first_id = eps[*connect_to].id;
        ++at(first_id).connecting;
        auto got = co_await w_.pool().acquire(model, version, slot, *connect_to);
        --at(first_id).connecting;
        connected_.cancel();
        if (auto refused = acquire_failure(got, model, version)) {
            out.refused = std::move(refused);
            co_return out;
        }
        auto client_new = std::make_shared<h2_client>(w_, std::move(got.connection), *got.endpoint);
        if (!client_new->start()) {
            acquired broken;
            broken.detail = "the HTTP/2 session could not start";
            out.refused = acquire_failure(broken, model, version);
            co_return out;
        }
        if (stopped_) {
            client_new->close_when_idle();
        } else {
            at(got.endpoint->id).clients.push_back(client_new);
        }
        out.authority = got.endpoint->authority;
        out.call = client_new->submit(head, body, feed);
        co_return out;
    }
}

void h2_upstreams::finish(h2_call& call) {
    if (auto client = call.client.lock()) {
        client->finish(call);
    } else {
        call.detached = true;
        if (call.feed) {
            call.feed->to = nullptr;
            call.feed = nullptr;
        }
    }
}

void h2_upstreams::consumed(h2_call& call, std::size_t n) {
    if (auto client = call.client.lock()) {
        client->consumed(call, n);
    }
}

void h2_upstreams::gauges(std::vector<worker::endpoint_connections>& out) const {
    for (std::uint32_t id = 0; id < endpoints_.size(); ++id) {
        worker::endpoint_connections e{id, 0, 0};
        for (const auto& c : endpoints_[id].clients) {
            if (!c->dead()) {
                ++(c->idle() ? e.idle : e.active);
            }
        }
        if (e.idle + e.active > 0) {
            out.push_back(e);
        }
    }
}

void h2_upstreams::stop() {
    stopped_ = true;
    for (auto& e : endpoints_) {
        for (auto& c : e.clients) {
            c->close_when_idle();
        }
        e.clients.clear();  // each is kept alive by its own coroutines until it closes
    }
}

void h2_upstreams::abort_all() {
    stopped_ = true;
    for (auto& e : endpoints_) {
        for (auto& c : e.clients) {
            c->shut("the gateway stopped");
        }
        e.clients.clear();
    }
}

task<bool> wait_for_change(h2_call& call, clock::time_point deadline) {
    call.wake.expires_at(deadline);
    auto [ec] = co_await call.wake.async_wait(nothrow_awaitable);
    co_return ec == net::error::operation_aborted || coarse_now() < deadline;
}

void frame_h2_answer(const h2_call& call, response_info& info) {
    // A trailers-only answer (a gRPC error: the status in its one HEADERS frame) stays one:
    // no body, so the client side sends no DATA and no trailers either.
    const bool no_body = call.ended && call.data.empty() && call.fields.trailers.empty();
    if (info.head_request || call.status == 204 || call.status == 304) {
        info.framing = body_framing::none;
    } else if (no_body) {
        info.framing = body_framing::content_length;
        info.content_length = 0;
    } else if (call.content_length && call.fields.trailers.empty() && !call.grpc_answer) {
        info.framing = body_framing::content_length;
        info.content_length = *call.content_length;
    } else if (info.client_version >= 11) {
        info.framing = body_framing::chunked;  // carries the trailers
    } else {
        info.framing = body_framing::close_delimited;
        info.keep_alive = false;
    }
}

void write_h2_answer_head(std::string& out, const h2_call& call, response_info& info) {
    out.append("HTTP/1.1 ");
    const unsigned code = std::min(call.status, 999u);  // nghttp2 let only 3 digits through
    const char digits[3] = {static_cast<char>('0' + code / 100),
                            static_cast<char>('0' + code / 10 % 10),
                            static_cast<char>('0' + code % 10)};
    out.append(digits, 3);
    out.push_back(' ');
    out.append(http::obsolete_reason(http::int_to_status(call.status)));
    out.append("\r\n", 2);
    for (const auto& f : call.fields.head) {
        append_header(out, call.fields.name(f), call.fields.value(f));
    }
    frame_h2_answer(call, info);
    finish_response_head(out, info);
}

void write_h2_trailers(std::string& out, const h2_call& call) {
    for (const auto& f : call.fields.trailers) {
        append_header(out, call.fields.name(f), call.fields.value(f));
    }
}

}  // namespace stagegate::proxy
