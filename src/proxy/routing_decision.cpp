// Routing one request: pure decisions on the worker's route snapshot. See routing_decision.hpp.
#include "routing_decision.hpp"

#include "grpc_status.hpp"

#include "stagegate/routing/grpc_call.hpp"

#include <array>
#include <string>

namespace stagegate::proxy {

namespace {

answer_problem problem(http::status status, std::string_view code, std::string message) {
    return answer_problem{status, code, std::move(message)};
}

// A gRPC call to an inference service: its model from the call's first message, or, for a
// call about the server, the first model (in config order) serving that protocol, whose
// stable version answers it. False when `d` holds the problem to answer instead; true with
// d.version set when the call is already placed (stable), with only d.model otherwise.
bool route_grpc_call(const routing::route_snapshot& routes, const client_request& req,
                     const routing::grpc_path& call, route_decision& d) {
    const bool kserve = call.service == routing::grpc_service::kserve_v2;
    auto serves = [&](const routing::model_route& m) {
        return kserve ? m.route.kserve_v2 : m.route.kserve_v1;
    };
    const std::string method(call.method);
    if (!routing::grpc_method_names_model(call)) {
        for (const auto& m : routes.models) {
            if (serves(m)) {
                d.model = &m;
                d.version = m.stable;
                d.route = "server";
                return true;
            }
        }
        d.unrouted = metrics::unrouted_reason::no_route;
        d.problem = problem(http::status::not_found, "no_route",
                            std::string("no model here serves ") +
                                (kserve ? "KServe v2 / Triton gRPC" : "TF Serving gRPC"));
        return false;
    }
    const auto read = routing::read_grpc_model_name(call, req.body());
    switch (read.status) {
        case routing::grpc_read::found:
            break;
        case routing::grpc_read::absent:
            d.problem = problem(http::status::bad_request, "missing_model",
                                "the " + method + " request names no model (" +
                                    (kserve ? "field 1, name" : "model_spec.name") + ")");
            return false;
        case routing::grpc_read::compressed:
            d.problem = problem(http::status::bad_request, "compressed_message",
                                "the " + method +
                                    " request's first message is compressed: the gateway reads "
                                    "the model name from it, so send it uncompressed");
            return false;
        case routing::grpc_read::malformed:
            d.problem = problem(http::status::bad_request, "bad_grpc_message",
                                "the " + method +
                                    " request is not one length-prefixed protobuf message");
            return false;
    }
    d.model = routes.find_model(read.name);
    if (!d.model || !serves(*d.model)) {
        d.model = nullptr;
        d.unrouted = metrics::unrouted_reason::unknown_model;
        d.problem = problem(http::status::not_found, "unknown_model",
                            "no model named \"" + std::string(read.name) + "\" is served here");
        return false;
    }
    return true;
}

// A gRPC call of a service the gateway does not read: the configured metadata
// (route_snapshot::grpc_model_header) names its model, routed then as any request for it is.
// Without that metadata the call has no route (UNIMPLEMENTED), and the answer says which
// metadata would route it. False when `d` holds the problem to answer.
bool route_grpc_by_metadata(const routing::route_snapshot& routes, const client_request& req,
                            std::string_view path, route_decision& d) {
    const auto& header = routes.grpc_model_header;
    const auto named = req.find(std::string_view(header));
    if (named == req.end() || named->value().empty()) {
        d.unrouted = metrics::unrouted_reason::no_route;
        d.problem = problem(http::status::not_found, "no_route",
                            "the gateway does not read the messages of " + std::string(path) +
                                ": name the call's model in its \"" + header + "\" metadata");
        return false;
    }
    const std::string_view name = named->value();
    d.model = routes.find_model(name);
    if (!d.model) {
        d.unrouted = metrics::unrouted_reason::unknown_model;
        d.problem = problem(http::status::not_found, "unknown_model",
                            "no model named \"" + std::string(name) + "\" (metadata \"" +
                                header + "\") is served here");
        return false;
    }
    return true;
}

}  // namespace

bool valid_host_value(std::string_view host) {
    std::string_view name = host;
    if (!host.empty() && host.front() == '[') {
        const auto close = host.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        for (char c : host.substr(1, close - 1)) {
            const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                            (c >= 'A' && c <= 'F') || c == ':' || c == '.';
            if (!ok) {
                return false;
            }
        }
        name = {};
        host.remove_prefix(close + 1);
    } else {
        const auto colon = host.find(':');
        name = host.substr(0, colon);
        host = colon == std::string_view::npos ? std::string_view{} : host.substr(colon);
    }
    // reg-name: unreserved, pct-encoded and sub-delims (RFC 3986 3.2.2), one table look-up a
    // byte (every request's Host passes here).
    static constexpr auto reg_name_byte = [] {
        std::array<bool, 256> ok{};
        for (int c = 0; c < 256; ++c) {
            ok[static_cast<std::size_t>(c)] =
                (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                std::string_view("-._~%!$&'()*+,;=").find(static_cast<char>(c)) !=
                    std::string_view::npos;
        }
        return ok;
    }();
    for (char c : name) {
        if (!reg_name_byte[static_cast<unsigned char>(c)]) {
            return false;
        }
    }
    // What is left is the port: empty, or ':' and at most five digits.
    if (host.empty()) {
        return true;
    }
    if (host.front() != ':' || host.size() > 6) {
        return false;
    }
    for (char c : host.substr(1)) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

std::string_view sticky_key(const routing::model_route& model, const client_request& req) {
    std::string_view key;
    if (!model.sticky_header.empty()) {
        auto it = req.find(std::string_view(model.sticky_header));
        if (it != req.end()) {
            key = it->value();
        }
    }
    if (key.empty() && !model.sticky_cookie.empty()) {
        for (auto it = req.begin(); it != req.end() && key.empty(); ++it) {
            if (it->name() == http::field::cookie) {
                key = routing::find_cookie(it->value(), model.sticky_cookie);
            }
        }
    }
    return key;
}

route_decision route_request(worker& w, const routing::route_snapshot& routes,
                             const client_request& req) {
    route_decision d;
    if (!routing::safe_request_path(req.target())) {
        d.problem = problem(http::status::bad_request, "bad_path",
                            "the path has dot-segments or encoded separators: send it normalized");
        return d;
    }
    auto match = routing::match_path(routes, req.target());
    switch (match.outcome) {
        case routing::match_outcome::model:
            d.model = match.model;
            break;
        case routing::match_outcome::unknown_model:
            d.unrouted = metrics::unrouted_reason::unknown_model;
            d.problem = problem(http::status::not_found, "unknown_model",
                                "no model named \"" + std::string(match.name) +
                                    "\" is served here");
            return d;
        case routing::match_outcome::no_route: {
            const std::string_view path =
                std::string_view(req.target()).substr(0, std::string_view(req.target()).find('?'));
            const auto call = routing::parse_grpc_path(path);
            if (call.service != routing::grpc_service::none) {
                if (route_grpc_call(routes, req, call, d)) {
                    break;
                }
                return d;
            }
            if (!routes.grpc_model_header.empty() && is_grpc_request(req)) {
                if (route_grpc_by_metadata(routes, req, path, d)) {
                    break;
                }
                return d;
            }
            d.unrouted = metrics::unrouted_reason::no_route;
            d.problem = problem(http::status::not_found, "no_route",
                                "no model route matches " + std::string(req.target()));
            return d;
        }
        case routing::match_outcome::model_list:
            if (req.method() != http::verb::get && req.method() != http::verb::head) {
                d.problem = problem(http::status::method_not_allowed, "method_not_allowed",
                                    "/v1/models lists the models: use GET");
                return d;
            }
            d.local_answer = &routes.openai_model_list;
            return d;
        case routing::match_outcome::needs_body: {
            auto name = routing::body_model_field(req.body());
            if (!name) {
                d.problem = problem(http::status::bad_request, "missing_model",
                                    "the JSON body needs a string field \"model\"");
                return d;
            }
            d.model = routing::match_body_model(routes, *name);
            d.stream_end = openai_stream_of(req.target());
            if (!d.model) {
                d.unrouted = metrics::unrouted_reason::unknown_model;
                d.problem = problem(http::status::not_found, "unknown_model",
                                    "no model named \"" + *name + "\" is served here");
                return d;
            }
            break;
        }
    }
    const auto& m = *d.model;
    if (d.version != routing::no_version) {
        return d;  // a gRPC call about the server: stable answers it
    }
    if (m.allow_force_version) {
        auto forced = req.find(force_version_header);
        if (forced != req.end()) {
            d.route = "forced";
            d.version = m.find_version(forced->value());
            if (d.version == routing::no_version) {
                d.problem = problem(http::status::bad_request, "unknown_version",
                                    "model " + m.name + " has no version \"" +
                                        std::string(forced->value()) + "\"");
            }
            return d;
        }
    }
    const std::string_view key = sticky_key(m, req);
    const std::uint64_t hash =
        key.empty() ? w.next_random() : routing::sticky_hash(key, m.hash_salt);
    // The point takes the hash's top bits, the unit bucket its low ones.
    d.unit = static_cast<std::uint32_t>(hash);
    d.route = key.empty() ? "random" : "sticky";
    d.version = routing::pick_version(m, routing::point_from_u64(hash));
    if (d.version != m.stable && w.tripped(m.versions[d.version].series)) {
        d.version = m.stable;
        d.route = "tripped";
    }
    return d;
}

}  // namespace stagegate::proxy
