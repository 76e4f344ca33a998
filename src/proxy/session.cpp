// Client sessions: one coroutine per client connection (plain or TLS) reads requests off it,
// refuses bad heads and unreadable requests, sends 100 Continue, and hands each full request
// to handle_request (request_handling.hpp) until the connection closes or the worker drains.
// Must not touch: routing, forwarding or relaying (request_handling.hpp, exchange.hpp).
// On the worker's thread; nothing here blocks or throws.
#include "session.hpp"

#include "h2_session.hpp"
#include "http_util.hpp"
#include "request_context.hpp"
#include "request_handling.hpp"
#include "routing_decision.hpp"
#include "upstream_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

namespace stagegate::proxy {

namespace {

constexpr std::string_view request_id_header = "X-Request-Id";


template <class Stream>
stream_type& lowest_of(Stream& s) {
    if constexpr (std::is_same_v<Stream, stream_type>) {
        return s;
    } else {
        return s.next_layer();
    }
}

}  // namespace

void record_response(worker& w, const routing::version_route& version, unsigned status,
                     clock::time_point started, std::uint32_t unit, bool cut_short,
                     const exchange_outcome::stream_timing* stream) {
    const auto& cfg = w.config();
    const auto series = version.series;
    if (version.trip_after > 0) {
        auto streak = w.shard().record_streak(series, status >= 500 || cut_short);
        if (streak == version.trip_after) {
            w.trip(series);
            if (cfg.on_broken) {
                cfg.on_broken(series, streak);
            }
        }
    }
    if (cfg.record_metrics) {
        const auto micros = [](clock::duration d) {
            return static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(d).count());
        };
        w.shard().record(series, status, micros(clock::now() - started), unit, cut_short);
        if (stream) {
            w.shard().record_stream(series, micros(stream->first_event - started),
                                    micros(stream->last_event - stream->first_event),
                                    stream->events);
        }
    }
}

namespace {

// A bare LF: a line end without its CR.
bool has_bare_lf(std::string_view bytes) {
    for (std::size_t i = bytes.find('\n'); i != std::string_view::npos;
         i = bytes.find('\n', i + 1)) {
        if (i == 0 || bytes[i - 1] != '\r') {
            return true;
        }
    }
    return false;
}

// Reads a request's body, after its head, into the reader. Most bodies came with their head
// and are taken from the buffer at once; reads (each as large as the buffer allows) wait
// only for the rest.
// A chunked body's framing is watched as it comes: Beast's parser waits for a chunk-size
// line's CRLF, and after the last chunk for the trailers' blank line, however long that takes
// and however many bytes come meanwhile: a client ending its lines with a bare LF got 408
// after the request timeout, its bytes buffered all along. What the parser leaves unread is
// always framing still to be parsed (a chunk-size line, the CRLF after a chunk, trailers;
// chunk data is taken as it comes), so a bare LF in it, or more of it than a head may hold,
// is refused at once with bad_chunk. (A body of known length leaves nothing unread.)
template <class Stream>
task<boost::system::error_code> read_body(Stream& stream, beast::flat_buffer& buffer,
                                          request_reader& reader, std::size_t framing_limit) {
    reader.eager(true);
    for (;;) {
        if (buffer.size() > 0) {
            boost::system::error_code ec;
            const auto used = reader.put(buffer.data(), ec);
            buffer.consume(used);
            if (ec && ec != http::error::need_more) {
                co_return ec;
            }
            if (reader.is_done()) {
                co_return boost::system::error_code{};
            }
            const auto rest = buffer.cdata();
            const std::string_view framing(static_cast<const char*>(rest.data()), rest.size());
            if (framing.size() > framing_limit || has_bare_lf(framing)) {
                co_return http::error::bad_chunk;
            }
        }
        auto [ec, n] = co_await stream.async_read_some(
            buffer.prepare(beast::read_size(buffer, 65536)), nothrow_awaitable);
        buffer.commit(n);
        if (ec == net::error::eof) {
            co_return http::error::partial_message;  // as Beast's read: the body was cut short
        }
        if (ec) {
            co_return ec;
        }
    }
}

// Why a request could not be read: a folded header line has its own code, else
// classify_request_error's.
answer_problem unreadable_request(const request_reader& reader,
                                  const boost::system::error_code& ec, std::string_view what) {
    if (reader.obs_fold()) {
        return {http::status::bad_request, "obs_fold",
                std::string(what) +
                    ": a header line is folded (obsolete line folding, RFC 9112 5.2); send "
                    "each header on one line"};
    }
    auto why = classify_request_error(ec);
    why.message = std::string(what) + ": " + ec.message();
    return why;
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

    beast::flat_buffer buffer;
    if constexpr (tls) {
        slot.expire_in(cfg.client.request);
        auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server,
                                                    nothrow_awaitable);
        if (ec) {
            co_return;
        }
        if (alpn_chose_h2(stream.native_handle())) {
            co_await serve_h2(stream, w, slot, buffer, client_address);
            co_await close_gracefully(stream, slot);
            co_return;
        }
    } else {
        // HTTP/2 with prior knowledge (h2c) opens with its preface; an HTTP/1.1 request line
        // differs from it at its first byte, so HTTP/1.1 pays no extra read for the check.
        slot.expire_in(cfg.client.request);
        for (;;) {
            const auto b = buffer.cdata();
            const auto match = match_h2_preface(
                std::string_view(static_cast<const char*>(b.data()), b.size()));
            if (match == preface_match::http1) {
                break;
            }
            if (match == preface_match::http2) {
                co_await serve_h2(stream, w, slot, buffer, client_address);
                co_await close_gracefully(stream, slot);
                co_return;
            }
            // 512 bytes, as Beast's first header read takes: the buffer keeps its size for the
            // connection's life, so 4 KiB here cost every idle keep-alive connection 3.5 KiB
            // (loadtest/RESULTS.md run 19).
            auto [ec, n] = co_await stream.async_read_some(buffer.prepare(512), nothrow_awaitable);
            buffer.commit(n);
            if (ec) {
                co_return;  // gone, or silent past the request timeout, before a request
            }
        }
    }

    std::string head;          // serialized heads, reused across requests
    std::string body_scratch;  // answers kept for reading their prediction
    std::optional<request_reader> reader;
    // A new connection's first head must arrive within the request timeout from the accept
    // (as nginx's client_header_timeout): its deadline, armed before the TLS handshake or the
    // HTTP/2 preface check, runs on. Not the keep-alive idle one, and not re-armed once the
    // first bytes came, which let a client that trickled a head hold it for twice as long.
    bool first = true;
    for (;;) {
        slot.idle = buffer.size() == 0;
        if (slot.idle && w.draining()) {
            break;
        }
        reader.emplace(cfg.limits.max_header_bytes, cfg.limits.max_request_body_bytes);
        if (!first) {
            slot.expire_in(slot.idle ? cfg.client.idle : cfg.client.request);
        }
        first = false;
        request_context rc;
        {
            // What Beast's async_read_header does, without its layers of composed operations
            // (#24: over a third of the proxy's own time per request was Asio's machinery): parse
            // what the buffer holds, read only while the head is incomplete. Most heads come
            // whole in one read, or already sit in the buffer behind a pipelined request.
            boost::system::error_code ec;
            std::size_t n = 0;
            for (bool parse = buffer.size() > 0;; parse = true) {
                if (parse) {
                    const auto used = reader->put(buffer.data(), ec);
                    buffer.consume(used);
                    n += used;
                    if (ec != http::error::need_more) {
                        break;  // the head, or what is wrong with it
                    }
                    ec = {};
                }
                const auto room = beast::read_size(buffer, 65536);
                if (room == 0) {
                    ec = http::error::buffer_overflow;
                    break;
                }
                auto [read_ec, got] =
                    co_await stream.async_read_some(buffer.prepare(room), nothrow_awaitable);
                buffer.commit(got);
                if (read_ec) {
                    ec = head_read_failure(read_ec, *reader);
                    break;
                }
            }
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
                } else {
                    const auto why = unreadable_request(*reader, ec, "cannot read the request");
                    co_await send_error(stream, w, slot, rc, why);
                }
                log_request(w, rc, {}, {}, 0, client_address, clock::now());
                break;
            }
        }
        auto& req = reader->get();
        to_origin_form(req);
        rc.client_version = req.version() == 10 ? 10 : 11;
        rc.head = req.method() == http::verb::head;
        auto rid = req.find(request_id_header);
        if (rid != req.end() && acceptable_request_id(rid->value())) {
            rc.id.assign(rid->value());
        } else {
            rc.id.generate(w);
        }
        rc.keep_alive = reader->keep_alive() && !w.keep_alive_ended();
        const auto head_read = clock::now();
        if (auto bad = check_head(req)) {
            rc.keep_alive = false;
            w.shard().record_unrouted(metrics::unrouted_reason::bad_request);
            co_await send_error(stream, w, slot, rc, *bad);
            log_request(w, rc, std::string_view(req.method_string()),
                        std::string_view(req.target()), 0, client_address, head_read);
            break;
        }
        if (!reader->is_done()) {
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
            if (auto length = reader->content_length();
                length && *length > buffer.capacity() - buffer.size()) {
                buffer.reserve(buffer.size() +
                               std::min<std::uint64_t>(*length, large_relay_buffer_size));
            }
            const auto ec = co_await read_body(stream, buffer, *reader, cfg.limits.max_header_bytes);
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
                } else {
                    const auto why =
                        unreadable_request(*reader, ec, "cannot read the request body");
                    co_await send_error(stream, w, slot, rc, why);
                }
                log_request(w, rc, std::string_view(req.method_string()),
                            std::string_view(req.target()), 0, client_address, head_read);
                break;
            }
        }
        slot.no_deadline();
        const auto started = clock::now();
        bool keep = co_await handle_request(stream, w, slot, req, rc, head, body_scratch,
                                            client_address, tls, started);
        reader.reset();
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
    log_request(w, rc, {}, {}, 0, {}, clock::now());
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