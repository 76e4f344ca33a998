// Private to proxy: handling one fully read request: route it (routing_decision), forward it
// through the exchange core with one retry when no byte reached the backend, answer the
// gateway's own errors, record the answer, read its prediction and hand it to the mirror
// when drawn. Must not touch: reading requests off the connection or its lifetime
// (session.cpp), relaying bytes (exchange.hpp), routing rules, mirror scheduling.
// Allocates nothing per request once warm (handle_request says how; allocation_tests checks).
// Templated on the client stream so tests drive it over in-memory streams; include it only
// from the proxy's .cpp files and tests (Beast).
#pragma once

#include "exchange.hpp"
#include "grpc_status.hpp"
#include "h2_upstream.hpp"
#include "http_util.hpp"
#include "mirror.hpp"
#include "prediction_reading.hpp"
#include "request_context.hpp"
#include "routing_decision.hpp"
#include "upstream_pool.hpp"

#include <boost/beast/http.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace stagegate::proxy {

// `routed`: the version and stage the request was routed to (empty before routing decided).
template <class Stream>
task<bool> send_error(Stream& stream, worker& w, session_slot& slot, request_context& rc,
                      http::status status, std::string_view code, std::string_view message,
                      routed_to routed = {}) {
    rc.log.status = static_cast<unsigned>(status);
    rc.log.code = code;  // a literal (answer_problem::code)
    auto res = rc.grpc ? grpc_error_response(status, code, message, rc.id, routed)
                       : error_response(status, code, message, rc.id, rc.keep_alive,
                                        rc.client_version, routed);
    if (rc.head) {
        res.body().clear();
    }
    slot.expire_in(w.config().client.request);
    auto [ec, n] = co_await http::async_write(stream, res, nothrow_awaitable);
    slot.no_deadline();
    co_return !ec && rc.keep_alive;
}

// A JSON answer the gateway gives itself (200), such as OpenAI's model list.
template <class Stream>
task<bool> send_local_answer(Stream& stream, worker& w, session_slot& slot,
                             request_context& rc, const std::string& json_body) {
    rc.log.status = 200;
    http::response<http::string_body> res{http::status::ok, rc.client_version};
    res.set(http::field::server, "stagegate");
    res.set(http::field::content_type, "application/json");
    if (const std::string_view id = rc.id; !id.empty()) {
        res.set("X-Request-Id", id);
    }
    if (!rc.head) {
        res.body() = json_body;
    }
    res.keep_alive(rc.keep_alive);
    res.prepare_payload();
    slot.expire_in(w.config().client.request);
    auto [ec, n] = co_await http::async_write(stream, res, nothrow_awaitable);
    slot.no_deadline();
    co_return !ec && rc.keep_alive;
}

// The same for a problem found before or instead of an exchange.
template <class Stream>
task<bool> send_error(Stream& stream, worker& w, session_slot& slot, request_context& rc,
                      const answer_problem& problem, routed_to routed = {}) {
    return send_error(stream, w, slot, rc, problem.status, problem.code, problem.message,
                      routed);
}

// Records one answer (or the gateway's error in its place) under the version's series, and
// trips a watched version after its run of failures. `cut_short`: the answer broke off after
// its head reached the client, a failure whatever its status. `stream`: a watched OpenAI
// stream's timing, recorded as its time to first token and time per output token.
void record_response(worker& w, const routing::version_route& version, unsigned status,
                     clock::time_point started, std::uint32_t unit, bool cut_short = false,
                     const exchange_outcome::stream_timing* stream = nullptr);

// Records what an OpenAI answer said of its tokens, how its stream ended, and a completed
// stream's output rate: judged on completed streams only, as latency is on successful answers
// (a cut stream is a failure already, and its rate up to the cut says little).
inline void record_openai_answer(worker& w, std::uint32_t series, const exchange_outcome& out) {
    if (!w.config().record_metrics) {
        return;
    }
    auto& shard = w.shard();
    if (out.tokens) {
        shard.record_tokens(series, out.tokens->input, out.tokens->output, out.tokens->source);
    }
    if (out.stream_end) {
        shard.record_stream_end(series, *out.stream_end);
        if (*out.stream_end == metrics::stream_outcome::completed && out.stream && out.tokens) {
            const auto span = std::chrono::duration_cast<std::chrono::microseconds>(
                out.stream->last_event - out.stream->first_event);
            shard.record_token_rate(series, out.tokens->output,
                                    static_cast<std::uint64_t>(span.count()));
        }
    }
}

// Completes the request's access log entry and hands it to the worker's access log (a no-op
// when it is off). `method` and `path` are empty when the request's head could not be read.
inline void log_request(worker& w, request_context& rc, std::string_view method,
                        std::string_view path, std::uint64_t body_bytes,
                        std::string_view client_address, clock::time_point started) {
    if (!w.access_log_on()) {
        return;
    }
    auto& e = rc.log;
    e.request_id = rc.id;
    e.client = client_address;
    e.method = method;
    e.path = path;
    e.client_version = rc.http2 ? 20 : rc.client_version;
    e.bytes_received = body_bytes;
    e.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started)
                        .count();
    w.log_access(e);
}

// Logs the request handle_request was given when it ends, on every path, while the route
// snapshot the entry's names point into is still held (declare it after the snapshot).
class access_line {
public:
    access_line(worker& w, request_context& rc, const client_request& req,
                std::string_view client_address, clock::time_point started)
        : w_(w), rc_(rc), req_(req), client_(client_address), started_(started) {}
    ~access_line() {
        log_request(w_, rc_, std::string_view(req_.method_string()),
                    std::string_view(req_.target()), req_.body().size(), client_, started_);
    }
    access_line(const access_line&) = delete;
    access_line& operator=(const access_line&) = delete;

private:
    worker& w_;
    request_context& rc_;
    const client_request& req_;
    std::string_view client_;
    clock::time_point started_;
};

// What the access log says of where a routed request went.
inline void log_route(request_context& rc, const route_decision& decision) {
    const auto& model = *decision.model;
    rc.log.model = model.name;
    rc.log.version = model.versions[decision.version].name;
    rc.log.stage = model.stage;
    rc.log.route = decision.route;
}

// Whether a routed request goes to a backend: not when routing refused it or answers it
// itself, nor a streaming gRPC call to a version reached over HTTP/1.1.
inline bool goes_upstream(const route_decision& decision, const request_context& rc) {
    return !decision.local_answer && !decision.problem &&
           !(rc.feed && !decision.model->versions[decision.version].http2);
}

// The gateway's own answer to a request that goes to no backend (goes_upstream), or to any
// request while no routes are loaded (`decision` null). A coroutine of its own: these rare
// paths' locals and messages would otherwise take room in handle_request's frame, which Asio
// recycles only up to 1020 bytes.
template <class Stream>
task<bool> answer_unforwarded(Stream& stream, worker& w, session_slot& slot, request_context& rc,
                              const route_decision* decision) {
    if (!decision) {
        co_return co_await send_error(stream, w, slot, rc, http::status::service_unavailable,
                                      "not_ready", "no routes are loaded yet");
    }
    if (decision->local_answer) {
        co_return co_await send_local_answer(stream, w, slot, rc, *decision->local_answer);
    }
    if (decision->problem) {
        if (decision->model) {
            rc.log.model = decision->model->name;  // a forced version it does not have
        }
        w.shard().record_unrouted(decision->unrouted);
        co_return co_await send_error(stream, w, slot, rc, *decision->problem);
    }
    // Messages that keep coming need a stream to the backend: HTTP/2 only.
    log_route(rc, *decision);
    const auto& model = *decision->model;
    const auto& version = model.versions[decision->version];
    co_return co_await send_error(
        stream, w, slot, rc, http::status::not_implemented, "streaming_needs_h2c",
        "model " + model.name + ": version " + version.name +
            " is reached over HTTP/1.1, which cannot carry a streaming gRPC call; give it "
            "\"protocol\": \"h2c\" (or \"h2\" over TLS)",
        routed_to{version.name, model.stage});
}

// The request over HTTP/2 to its backend (h2_upstream.hpp). A coroutine of its own, so that
// the outcome h2_exchange returns takes no room in handle_request's frame.
template <class Stream>
task<void> forward_h2(Stream& stream, worker& w, const client_request& req,
                      std::string_view client_address, bool client_tls, exchange_args& args,
                      exchange_outcome& out, std::string_view& upstream) {
    args.head.clear();
    serialize_h2_request_head(
        args.head, req,
        forward_info{client_address, client_tls, args.rc.id, args.rc.client_version},
        req.body().size());
    if (args.rc.grpc) {
        if (auto t = req.find("grpc-timeout"); t != req.end()) {
            args.grpc_timeout = parse_grpc_timeout(t->value());
        }
    }
    out = co_await h2_exchange(stream, w.h2(), args, upstream);
}

// The answer when the pool gave no connection to exchange over (acquire_failure), and what it
// counts. A coroutine of its own, as answer_unforwarded.
template <class Stream>
task<bool> answer_refused(Stream& stream, worker& w, session_slot& slot, request_context& rc,
                          const acquired& got, const routing::model_route& model,
                          const routing::version_route& version, clock::time_point started,
                          std::uint32_t unit) {
    const auto refused = acquire_failure(got, model, version);
    if (refused->failure) {
        w.shard().record_failure(version.series, *refused->failure);
    }
    const bool keep = co_await send_error(stream, w, slot, rc, refused->problem,
                                          routed_to{version.name, model.stage});
    record_response(w, version, static_cast<unsigned>(refused->problem.status), started, unit);
    if (rc.grpc && w.config().record_metrics) {
        w.shard().record_grpc(version.series,
                              grpc_code_of_problem(refused->problem.status, refused->problem.code));
    }
    co_return keep;
}

// The gateway's own answer when the exchange failed before any byte of the backend's answer
// reached the client (exchange_result::failed_before_response). A coroutine of its own, as
// answer_unforwarded.
template <class Stream>
task<bool> answer_failed_exchange(Stream& stream, worker& w, session_slot& slot,
                                  request_context& rc, exchange_outcome& out,
                                  const routing::model_route& model,
                                  const routing::version_route& version) {
    out.problem.message.insert(0, "model " + model.name + ": ");
    co_return co_await send_error(stream, w, slot, rc, out.problem,
                                  routed_to{version.name, model.stage});
}

// Hands a copy of the request to the mirror (mirrored requests only), with stable's prediction
// when it was read.
inline void mirror_request(worker& w, const std::shared_ptr<const routing::route_snapshot>& routes,
                           const route_decision& decision, const client_request& req,
                           const request_context& rc, std::string_view client_address,
                           bool client_tls, std::optional<predictions::prediction> primary) {
    auto job = mirror_of(routes, *decision.model, req, rc, client_address, client_tls, primary);
    job->unit = decision.unit;
    submit_mirror(w, std::move(job));
}

// What the exchange tells the access log and the failure counters.
inline void note_exchange(worker& w, request_context& rc, const routing::version_route& version,
                          const exchange_outcome& out, std::string_view upstream,
                          clock::time_point started) {
    if (out.failure) {
        w.shard().record_failure(version.series, *out.failure);
    }
    if (!w.access_log_on()) {
        return;
    }
    const auto us = [&](clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::microseconds>(t - started).count();
    };
    rc.log.upstream = upstream;
    rc.log.status = static_cast<unsigned>(out.status);
    rc.log.bytes_sent = out.body_bytes;
    rc.log.cut_short = out.cut_short;
    if (out.head_at != clock::time_point{}) {
        rc.log.upstream_head_us = us(out.head_at);
    }
    if (out.stream) {
        rc.log.ttft_us = us(out.stream->first_event);
    }
}

// Once the client has its answer: records it, reads its prediction when the model asks for
// it, and hands the request to the mirror when it was drawn. Not a coroutine: its locals stay
// on the stack.
inline void after_answer(worker& w, const request_context& rc,
                         const std::shared_ptr<const routing::route_snapshot>& routes,
                         const route_decision& decision, const exchange_outcome& out,
                         const body_capture* capture, bool mirrored, const client_request& req,
                         std::string_view client_address, bool client_tls,
                         clock::time_point started) {
    const auto& model = *decision.model;
    const auto& version = model.versions[decision.version];
    // A streaming gRPC call lasts as long as its client likes: its latency is its time to its
    // first answer message (recorded now, as though it had started that long ago).
    const auto latency_from = rc.feed && out.stream
                                  ? clock::now() - (out.stream->first_event - started)
                                  : started;
    record_response(w, version, recorded_status(rc, out), latency_from, decision.unit,
                    out.cut_short, out.stream ? &*out.stream : nullptr);
    record_openai_answer(w, version.series, out);
    if (rc.grpc && w.config().record_metrics) {
        w.shard().record_grpc(version.series, grpc_code_got(out));
    }
    // Read after the answer went out: the client never waits for this.
    std::optional<predictions::prediction> predicted;
    if (capture && out.result != exchange_result::failed_before_response) {
        predicted = read_prediction(w, model, version.series, *capture);
        if (predicted && model.prediction->feedback) {
            remember_answer(w, rc.id, version.series, *predicted);
        }
    }
    if (mirrored) {
        mirror_request(w, routes, decision, req, rc, client_address, client_tls, predicted);
    }
}

// Routes and forwards one fully read request. Returns whether the client connection stays.
// Its frame is allocated per request: Asio recycles it only while it is at most 1020 bytes, so
// rare paths live in coroutines of their own and bookkeeping in plain functions, and the
// exchange lends what it keeps (exchange.hpp). The allocation test keeps this at zero
// allocations per request (tests/integration/allocations_test.cpp).
template <class Stream>
task<bool> handle_request(Stream& stream, worker& w, session_slot& slot, client_request& req,
                          request_context& rc, std::string& head, std::string& body_scratch,
                          const std::string& client_address, bool client_tls,
                          clock::time_point started) {
    auto routes = w.routes();  // keeps this snapshot alive for the whole exchange
    const access_line logged(w, rc, req, client_address, started);
    rc.grpc = rc.grpc || is_grpc_request(req);
    route_decision decision;
    if (routes) {
        decision = route_request(w, *routes, req);
    }
    if (!routes || !goes_upstream(decision, rc)) {
        co_return co_await answer_unforwarded(stream, w, slot, rc, routes ? &decision : nullptr);
    }
    const auto& model = *decision.model;
    const auto& version = model.versions[decision.version];
    log_route(rc, decision);
    // A mirror goes out once this request's answer has: whatever becomes of it, the client
    // neither waits for it nor shares its time with it.
    // A streaming call's body is not kept whole, so it has no copy to mirror.
    const bool mirrored = !rc.feed && draw_mirror(w, model, decision.version, rc);
    const bool read_body = model.prediction && w.config().record_metrics && !rc.head && !rc.feed;
    body_capture capture{body_scratch, read_body ? model.prediction->max_body_bytes : 0};
    exchange_args args{head,    std::string_view(req.body().data(), req.body().size()),
                       rc,      w,
                       slot,    model,
                       version, read_body ? &capture : nullptr,
                       decision.stream_end};
    exchange_outcome out;
    std::string_view upstream;  // the endpoint's authority, in the route snapshot
    if (version.http2) {
        co_await forward_h2(stream, w, req, client_address, client_tls, args, out, upstream);
    }
    // A pooled connection the backend closed just as it was taken (after its liveness check)
    // fails the first write with nothing sent: then, and only then, the request goes out once
    // more, on a connection of its own. Once a byte may have reached the backend it never does
    // (a predict call is not idempotent: nginx's rule for non-idempotent requests).
    for (int attempt = 0; !version.http2; ++attempt) {
        auto got = w.pool().try_idle(version);
        if (!got) {
            got = co_await w.pool().acquire(model, version, slot);
        }
        if (got->status != acquire_status::ok) {
            const bool keep = co_await answer_refused(stream, w, slot, rc, *got, model, version,
                                                      started, decision.unit);
            if (mirrored) {
                mirror_request(w, routes, decision, req, rc, client_address, client_tls,
                               std::nullopt);
            }
            co_return keep;
        }
        head.clear();
        serialize_request_head(head, req,
                               forward_info{client_address, client_tls, rc.id, rc.client_version},
                               req.body().size());
        co_await exchange_over(stream, *got, args, out);
        if (out.nothing_sent && got->reused && attempt == 0) {
            // its siblings were idle as long: do not trust them
            w.pool().forget_idle(got->endpoint->id);
            continue;
        }
        upstream = got->endpoint->authority;
        break;
    }
    note_exchange(w, rc, version, out, upstream, started);
    bool keep = out.result == exchange_result::done_keep_alive;
    if (out.result == exchange_result::failed_before_response) {
        keep = co_await answer_failed_exchange(stream, w, slot, rc, out, model, version);
    }
    after_answer(w, rc, routes, decision, out, read_body ? &capture : nullptr, mirrored, req,
                 client_address, client_tls, started);
    if (body_scratch.capacity() > 64 * 1024) {
        std::string().swap(body_scratch);
    }
    co_return keep;
}

}  // namespace stagegate::proxy
