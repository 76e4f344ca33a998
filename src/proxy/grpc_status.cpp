// gRPC status codes and HTTP (see grpc_status.hpp).
#include "grpc_status.hpp"

#include <boost/beast/core/string.hpp>

#include <string>

namespace stagegate::proxy {

bool is_grpc_request(const client_request& req) {
    auto it = req.find(http::field::content_type);
    return it != req.end() && is_grpc_content_type(it->value());
}

bool is_grpc_content_type(std::string_view type) {
    constexpr std::string_view grpc = "application/grpc";
    if (type.size() < grpc.size() || !boost::beast::iequals(type.substr(0, grpc.size()), grpc)) {
        return false;
    }
    return type.size() == grpc.size() || type[grpc.size()] == '+' || type[grpc.size()] == ';';
}

std::optional<unsigned> parse_grpc_status(std::string_view value) {
    if (value.empty() || value.size() > 4) {
        return std::nullopt;
    }
    unsigned code = 0;
    for (char c : value) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        code = code * 10 + static_cast<unsigned>(c - '0');
    }
    return code;
}

unsigned http_status_of_grpc(unsigned code) {
    switch (code) {
        case 0: return 200;   // OK
        case 1: return 499;   // CANCELLED
        case 2: return 500;   // UNKNOWN
        case 3: return 400;   // INVALID_ARGUMENT
        case 4: return 504;   // DEADLINE_EXCEEDED
        case 5: return 404;   // NOT_FOUND
        case 6: return 409;   // ALREADY_EXISTS
        case 7: return 403;   // PERMISSION_DENIED
        case 8: return 429;   // RESOURCE_EXHAUSTED
        case 9: return 400;   // FAILED_PRECONDITION
        case 10: return 409;  // ABORTED
        case 11: return 400;  // OUT_OF_RANGE
        case 12: return 501;  // UNIMPLEMENTED
        case 13: return 500;  // INTERNAL
        case 14: return 503;  // UNAVAILABLE
        case 15: return 500;  // DATA_LOSS
        case 16: return 401;  // UNAUTHENTICATED
        default: return 500;
    }
}

unsigned grpc_code_of_problem(http::status status, std::string_view code) {
    if (code == "upstream_timeout" || code == "request_timeout") {
        return grpc_code::deadline_exceeded;
    }
    if (code == "unknown_model" || code == "unknown_version") {
        return grpc_code::not_found;
    }
    if (code == "no_route" || code == "method_not_allowed" || code == "streaming_needs_h2c") {
        return grpc_code::unimplemented;
    }
    if (code == "body_too_large" || code == "header_too_large") {
        return grpc_code::resource_exhausted;
    }
    const auto s = static_cast<unsigned>(status);
    if (s == 401) {
        return grpc_code::unauthenticated;
    }
    if (s == 429 || s == 502 || s == 503 || s == 504) {
        return grpc_code::unavailable;  // gRPC's mapping: the client may retry
    }
    if (s >= 400 && s < 500) {
        return grpc_code::invalid_argument;
    }
    return grpc_code::internal;
}

unsigned grpc_code_of_http(unsigned status) {
    switch (status) {
        case 400: return grpc_code::internal;
        case 401: return grpc_code::unauthenticated;
        case 403: return 7;  // PERMISSION_DENIED
        case 404: return grpc_code::unimplemented;
        case 429:
        case 502:
        case 503:
        case 504: return grpc_code::unavailable;
        default: return grpc_code::unknown;
    }
}

std::uint32_t grpc_message_counter::count(std::string_view bytes) {
    std::uint32_t whole = 0;
    while (!bytes.empty()) {
        if (prefix_seen_ < 5) {
            if (prefix_seen_ > 0) {  // the flag byte is not part of the length
                length_ = (length_ << 8) | static_cast<unsigned char>(bytes.front());
            }
            bytes.remove_prefix(1);
            if (++prefix_seen_ == 5) {
                remaining_ = length_;
                if (remaining_ == 0) {
                    ++whole;
                    prefix_seen_ = 0;
                    length_ = 0;
                }
            }
            continue;
        }
        const auto n = std::min<std::uint64_t>(remaining_, bytes.size());
        bytes.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0) {
            ++whole;
            prefix_seen_ = 0;
            length_ = 0;
        }
    }
    return whole;
}

std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view value) {
    if (value.size() < 2 || value.size() > 9) {
        return std::nullopt;
    }
    std::uint64_t amount = 0;
    for (char c : value.substr(0, value.size() - 1)) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        amount = amount * 10 + static_cast<std::uint64_t>(c - '0');
    }
    auto up = [&](std::uint64_t per_ms) {
        return std::chrono::milliseconds((amount + per_ms - 1) / per_ms);
    };
    switch (value.back()) {
        case 'H': return std::chrono::milliseconds(amount * 3600000);
        case 'M': return std::chrono::milliseconds(amount * 60000);
        case 'S': return std::chrono::milliseconds(amount * 1000);
        case 'm': return std::chrono::milliseconds(amount);
        case 'u': return up(1000);
        case 'n': return up(1000000);
        default: return std::nullopt;
    }
}

http::response<http::string_body> grpc_error_response(http::status status, std::string_view code,
                                                      std::string_view message,
                                                      std::string_view request_id,
                                                      routed_to routed) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::server, "stagegate");
    res.set(http::field::content_type, "application/grpc");
    res.set("grpc-status", std::to_string(grpc_code_of_problem(status, code)));
    // Percent-encoded: every byte outside printable ASCII, and '%' itself.
    std::string encoded;
    encoded.reserve(message.size());
    static constexpr char hex[] = "0123456789ABCDEF";
    for (unsigned char c : message) {
        if (c < 0x20 || c > 0x7e || c == '%') {
            encoded.push_back('%');
            encoded.push_back(hex[c >> 4]);
            encoded.push_back(hex[c & 15]);
        } else {
            encoded.push_back(static_cast<char>(c));
        }
    }
    res.set("grpc-message", encoded);
    res.set("X-Stagegate-Error", code);
    if (!routed.version.empty()) {
        res.set("X-Stagegate-Version", routed.version);
        res.set("X-Stagegate-Stage", routed.stage);
    }
    if (!request_id.empty()) {
        res.set("X-Request-Id", request_id);
    }
    res.keep_alive(true);
    res.prepare_payload();  // Content-Length: 0, so the answer is one HEADERS frame
    return res;
}

}  // namespace stagegate::proxy
