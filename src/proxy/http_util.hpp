// Private to proxy: header rewriting and the one place that turns an error into an HTTP reply.
#pragma once

#include "block_cache.hpp"

#include <boost/beast/http.hpp>

#include <string>
#include <string_view>

namespace stagegate::proxy {

namespace http = boost::beast::http;

// Per-request HTTP structures draw their memory from the worker's block cache.
using fields_type = http::basic_fields<cached_allocator<char>>;
using request_body = http::basic_string_body<char, std::char_traits<char>, cached_allocator<char>>;
using request_type = http::request<request_body, fields_type>;

// What the proxy adds to a request it forwards upstream.
struct forward_info {
    std::string_view client_address;
    bool client_tls = false;
    std::string_view request_id;
    unsigned client_version = 11;
};

// Writes the upstream request head (request line, the client's end-to-end headers, the
// proxy's X-Forwarded-For/-Proto, Via and X-Request-Id, and Content-Length) into `out` as one
// contiguous block: one iovec for the kernel instead of one per header piece.
void serialize_request_head(std::string& out, const http::request_header<fields_type>& req,
                            const forward_info& info, std::size_t body_size);

enum class body_framing { none, content_length, chunked, close_delimited };

// What the proxy stamps on a response it relays to the client.
struct response_info {
    std::string_view version;  // X-Stagegate-Version
    std::string_view stage;    // X-Stagegate-Stage
    std::string_view request_id;
    unsigned client_version = 11;
    bool keep_alive = true;
    bool head_request = false;
    body_framing framing = body_framing::none;
    std::uint64_t content_length = 0;
};

// Writes the client response head: status line, the upstream's end-to-end headers, the
// stamps, framing and connection management.
void serialize_response_head(std::string& out, const http::response_header<fields_type>& res,
                             const response_info& info);

// Writes a chunk-size line ("1a2b\r\n") for chunked framing; returns its length.
std::size_t format_chunk_size(char (&out)[24], std::size_t size);

// A request id is kept only when it is short and printable (it is echoed into headers).
bool acceptable_request_id(std::string_view id);

// The reply for one error: {"error":{"code","message","request_id"}}.
http::response<http::string_body> error_response(http::status status, std::string_view code,
                                                 std::string_view message,
                                                 std::string_view request_id, bool keep_alive,
                                                 unsigned version = 11);

// Maps a Beast parse error on a client request to a status and error code.
struct parse_failure {
    http::status status;
    std::string_view code;
};
parse_failure classify_request_error(const boost::system::error_code& ec);

}  // namespace stagegate::proxy
