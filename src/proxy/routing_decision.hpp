// Private to proxy: what to do with one fully read request before anything goes upstream:
// refuse its head (check_head), or pick the model and version (route_request: path or body
// model, a gRPC call's message or configured metadata, forced version, sticky header or
// cookie, weights, tripped versions).
// Must not touch: sockets, the pool, metrics (the caller records what was decided).
#pragma once

#include "http_util.hpp"
#include "stream_watch.hpp"

#include "stagegate/metrics/shard.hpp"
#include "stagegate/proxy/worker.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <boost/beast/core/string.hpp>

#include <cstdint>
#include <iterator>
#include <optional>
#include <string_view>

namespace stagegate::proxy {

inline constexpr std::string_view force_version_header = "X-Stagegate-Force-Version";

// What routing decided, or the error to answer with.
struct route_decision {
    const routing::model_route* model = nullptr;
    std::uint32_t version = routing::no_version;
    std::uint32_t unit = 0;  // the request's unit bucket for the metrics (a user's hash)
    std::optional<answer_problem> problem;  // set: not routed, answer this
    // Set: not routed, the gateway answers this JSON body itself with 200 (GET /v1/models).
    const std::string* local_answer = nullptr;
    metrics::unrouted_reason unrouted = metrics::unrouted_reason::bad_request;
    // An OpenAI request routed by its body's model: how its stream, if it streams, must end.
    openai_stream stream_end = openai_stream::none;
    // How the version was chosen, for the access log: "forced" (X-Stagegate-Force-Version),
    // "sticky" (the user's key), "random", or "tripped" (the drawn version had failed too often
    // on this worker: stable instead).
    std::string_view route;
};

// A Host value a request may carry (RFC 9112 3.2, RFC 3986 3.2.2): a reg-name, IPv4 or
// bracketed IP literal with an optional port; empty is allowed (an authority-less target).
bool valid_host_value(std::string_view host);

// What the parser lets through but a proxy must not forward:
// - a Transfer-Encoding other than exactly "chunked" (RFC 9112 6.1: a backend may frame the
//   body differently: request smuggling);
// - Content-Length repeated, even with equal values (Beast accepts those; the README and
//   nginx refuse them, and a backend that keeps a list would frame differently);
// - an HTTP/1.1 request without Host, with two, or with one that is no host (RFC 9112 3.2:
//   400, as nginx answers).
// Obs-folds need nothing: the parser replaces them with spaces, which RFC 9112 5.2 allows.
template <class Request>
std::optional<answer_problem> check_head(const Request& req) {
    // One walk over the fields for all three (see client_request::find).
    auto te = req.end();
    auto host = req.end();
    std::size_t lengths = 0;
    std::size_t hosts = 0;
    for (auto it = req.begin(); it != req.end(); ++it) {
        switch (it->name()) {
        case http::field::transfer_encoding:
            if (te == req.end()) {
                te = it;
            }
            break;
        case http::field::content_length:
            ++lengths;
            break;
        case http::field::host:
            if (hosts++ == 0) {
                host = it;
            }
            break;
        default:
            break;
        }
    }
    if (te != req.end() && !boost::beast::iequals(te->value(), "chunked")) {
        return answer_problem{http::status::not_implemented, "unsupported_transfer_encoding",
                              "only Transfer-Encoding: chunked is accepted"};
    }
    if (lengths > 1) {
        return answer_problem{http::status::bad_request, "invalid_content_length",
                              "Content-Length is repeated: send it once"};
    }
    if (hosts == 0) {
        if (req.version() >= 11) {
            return answer_problem{http::status::bad_request, "missing_host",
                                  "an HTTP/1.1 request needs a Host header"};
        }
    } else if (hosts > 1) {
        return answer_problem{http::status::bad_request, "bad_host",
                              "Host is repeated: send it once"};
    } else if (!valid_host_value(host->value())) {
        return answer_problem{http::status::bad_request, "bad_host",
                              "the Host header is not a host name or address"};
    }
    return std::nullopt;
}

// The request's sticky key for `model`: its sticky header, else its sticky cookie; empty when
// it has neither (the request is then placed at random).
std::string_view sticky_key(const routing::model_route& model, const client_request& req);

// Routes one request on `routes`. Draws from the worker's random generator for requests
// without a sticky key, and keeps random and sticky traffic off versions tripped on it.
route_decision route_request(worker& w, const routing::route_snapshot& routes,
                             const client_request& req);

}  // namespace stagegate::proxy
