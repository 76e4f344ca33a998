// Private to proxy: gRPC's status codes where they meet HTTP. A gRPC call's outcome is the
// grpc-status its answer ends with, not the HTTP status (always 200): it is recorded as the
// HTTP status grpc-gateway maps it to, so the error-rate and 4xx gates judge gRPC answers as
// they judge HTTP ones (UNAVAILABLE, INTERNAL, UNKNOWN, DEADLINE_EXCEEDED count as errors;
// INVALID_ARGUMENT, NOT_FOUND are the client's). The gateway's own errors to a gRPC client are
// trailers-only gRPC answers (HTTP 200, grpc-status and grpc-message in the one HEADERS frame),
// as gRPC's HTTP/2 protocol asks, which grpc-js and grpc-go show as the call's status.
// Must not touch: routing, relaying (the exchanges read grpc-status; this only interprets).
#pragma once

#include "http_util.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace stagegate::proxy {

namespace grpc_code {
inline constexpr unsigned ok = 0;
inline constexpr unsigned cancelled = 1;
inline constexpr unsigned unknown = 2;
inline constexpr unsigned invalid_argument = 3;
inline constexpr unsigned deadline_exceeded = 4;
inline constexpr unsigned not_found = 5;
inline constexpr unsigned resource_exhausted = 8;
inline constexpr unsigned unimplemented = 12;
inline constexpr unsigned internal = 13;
inline constexpr unsigned unavailable = 14;
inline constexpr unsigned unauthenticated = 16;
}  // namespace grpc_code

// The gRPC status a client derives from an answer without grpc-status (gRPC's "HTTP to gRPC
// status code mapping": 400 Internal, 401 Unauthenticated, 403 PermissionDenied, 404
// Unimplemented, 429, 502, 503, 504 Unavailable, any other Unknown).
unsigned grpc_code_of_http(unsigned status);

// Counts the whole length-prefixed messages (a flag byte, a 4-byte big-endian length, the
// message) in a stream's DATA bytes, however the frames cut them: a streaming call's answer
// messages are its events, timed as an LLM stream's tokens are.
class grpc_message_counter {
public:
    // The number of messages that `bytes` completed.
    std::uint32_t count(std::string_view bytes);

private:
    std::uint64_t remaining_ = 0;  // bytes of the current message still to come
    std::uint32_t length_ = 0;     // the prefix's length, as far as it came
    std::uint8_t prefix_seen_ = 0;  // of the 5 prefix bytes
};

// A gRPC call: Content-Type application/grpc, alone or with a subtype ("+proto", "+json").
bool is_grpc_request(const client_request& req);
// The same test on a Content-Type's value (an HTTP/2 stream makes it as its fields arrive,
// without a search of the request's fields).
bool is_grpc_content_type(std::string_view type);

// grpc-status's value (a decimal code 0..16 as sent; larger codes are kept, as UNKNOWN
// would lose them); nullopt when it is not a number.
std::optional<unsigned> parse_grpc_status(std::string_view value);

// The HTTP status a gRPC code is recorded as (grpc-gateway's mapping; 499 for CANCELLED,
// 500 for codes it does not know).
unsigned http_status_of_grpc(unsigned code);

// The gRPC code for one of the gateway's own error answers: by its error code where that
// says more than the status (a timeout is DEADLINE_EXCEEDED, an unknown model NOT_FOUND, an
// unknown method UNIMPLEMENTED), else by the status as gRPC's HTTP mapping reads it.
unsigned grpc_code_of_problem(http::status status, std::string_view code);

// grpc-timeout (gRPC over HTTP/2: at most 8 digits and a unit H, M, S, m, u or n), rounded
// up to whole milliseconds; nullopt when malformed (the call then has the model's timeouts).
std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view value);

// The gateway's own error as a trailers-only gRPC answer: 200, application/grpc, grpc-status,
// grpc-message (percent-encoded as the protocol asks), an empty body; stamped with the version
// and stage when routing had chosen one, and the error code in X-Stagegate-Error.
http::response<http::string_body> grpc_error_response(http::status status, std::string_view code,
                                                      std::string_view message,
                                                      std::string_view request_id,
                                                      routed_to routed = {});

}  // namespace stagegate::proxy
