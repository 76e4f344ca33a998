// Routing one request: pure decisions on the worker's route snapshot. See routing_decision.hpp.
#include "routing_decision.hpp"

#include <string>

namespace stagegate::proxy {

namespace {

answer_problem problem(http::status status, std::string_view code, std::string message) {
    return answer_problem{status, code, std::move(message)};
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
    // reg-name: unreserved, pct-encoded and sub-delims (RFC 3986 3.2.2).
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') ||
                        std::string_view("-._~%!$&'()*+,;=").find(c) != std::string_view::npos;
        if (!ok) {
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

std::string_view sticky_key(const routing::model_route& model, const request_type& req) {
    std::string_view key;
    if (!model.sticky_header.empty()) {
        auto it = req.find(model.sticky_header);
        if (it != req.end()) {
            key = it->value();
        }
    }
    if (key.empty() && !model.sticky_cookie.empty()) {
        for (auto it = req.find(http::field::cookie);
             it != req.end() && it->name() == http::field::cookie && key.empty(); ++it) {
            key = routing::find_cookie(it->value(), model.sticky_cookie);
        }
    }
    return key;
}

route_decision route_request(worker& w, const routing::route_snapshot& routes,
                             const request_type& req) {
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
        case routing::match_outcome::no_route:
            d.unrouted = metrics::unrouted_reason::no_route;
            d.problem = problem(http::status::not_found, "no_route",
                                "no model route matches " + std::string(req.target()));
            return d;
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
