// Private to proxy: header rewriting and the one place that turns an error into an HTTP reply.
#pragma once

#include <boost/beast/http.hpp>

#include <string>
#include <string_view>

namespace stagegate::proxy {

namespace http = boost::beast::http;

// Removes hop-by-hop headers (RFC 9110 7.6.1), including those named in Connection.
// Message framing (Content-Length, Transfer-Encoding) is left to the caller.
void strip_hop_by_hop(http::fields& fields);

// Appends the client address to X-Forwarded-For (or creates it).
void append_forwarded_for(http::fields& fields, std::string_view client_address);

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
