// Private to proxy: header rewriting and the one place that turns an error into an HTTP reply.
#pragma once

#include "block_cache.hpp"
#include "client_request.hpp"

#include "stagegate/core/text.hpp"

#include <boost/beast/http.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stagegate::proxy {

namespace http = boost::beast::http;

// What the proxy adds to a request it forwards upstream.
struct forward_info {
    std::string_view client_address;
    bool client_tls = false;
    std::string_view request_id;
    unsigned client_version = 11;
    bool mirror = false;  // the gateway's shadow copy: marked X-Stagegate-Mirror: 1
};

// An absolute-form target ("POST http://host/path", RFC 9112 3.2.2, which a server must
// accept) rewritten to origin form, its authority replacing any Host header as the RFC asks;
// other targets are left as they are.
void to_origin_form(client_request& req);

// Writes the upstream request head (request line, the client's end-to-end headers, the
// proxy's X-Forwarded-For/-Proto, Via and X-Request-Id, and Content-Length) into `out` as one
// contiguous block: one iovec for the kernel instead of one per header piece.
void serialize_request_head(std::string& out, const client_request& req,
                            const forward_info& info, std::size_t body_size);
// The same fields for an HTTP/2 backend, in the form h2_client::submit reads (h2_head_writer,
// h2_fields.hpp): names lowercased, Host as :authority.
void serialize_h2_request_head(std::string& out, const client_request& req,
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

// Parses an upstream response for relaying, without a field container: while the head is
// parsed, the client's response head is written into `head` (status line and the end-to-end
// headers; hop-by-hop ones, those named in Connection, Transfer-Encoding and, unless answering
// HEAD, Content-Length left out); finish_response_head() then adds framing and stamps. The
// body is copied into the buffer given by set_buffer(), as Beast's buffer_body does
// (http::error::need_buffer once it is full). Storing each field in basic_fields (an
// allocation, a case-insensitive tree insert) and serializing them again cost more than the
// rest of the relay's user time together.
class relay_response_parser final : public http::basic_parser<false> {
public:
    relay_response_parser(std::string& head, unsigned client_version, bool head_request)
        : head_(head), client_version_(client_version), head_request_(head_request) {}

    unsigned status() const { return status_; }
    bool encoded() const { return encoded_; }  // a Content-Encoding other than identity
    bool event_stream() const { return event_stream_; }  // Content-Type: text/event-stream
    void set_buffer(char* data, std::size_t size) {
        data_ = data;
        size_ = size;
    }
    std::size_t buffer_left() const { return size_; }

private:
    // It feeds the callbacks below a head it read in one pass, so that the client's head is
    // written by the same code whichever read the backend's.
    friend class relay_reader;

    void on_request_impl(http::verb, boost::beast::string_view, boost::beast::string_view, int,
                         boost::system::error_code&) override {}
    void on_response_impl(int code, boost::beast::string_view reason, int version,
                          boost::system::error_code& ec) override;
    void on_field_impl(http::field name, boost::beast::string_view name_string,
                       boost::beast::string_view value, boost::system::error_code& ec) override;
    void on_header_impl(boost::system::error_code& ec) override;
    void on_body_init_impl(const boost::optional<std::uint64_t>&,
                           boost::system::error_code&) override {}
    std::size_t on_body_impl(boost::beast::string_view body,
                             boost::system::error_code& ec) override;
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                              boost::system::error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                   boost::system::error_code& ec) override {
        return on_body_impl(body, ec);
    }
    void on_finish_impl(boost::system::error_code&) override {}

    std::string& head_;
    std::size_t fields_begin_ = 0;
    unsigned client_version_;
    bool head_request_;
    bool encoded_ = false;
    bool event_stream_ = false;
    unsigned status_ = 0;
    // The Connection headers' values, copied: the parser's views end with each call.
    std::array<char, 256> connection_{};
    std::size_t connection_size_ = 0;
    char* data_ = nullptr;
    std::size_t size_ = 0;
};

// Whether `bytes`, the first bytes of an answer, are or may still become a status line the
// relay parser accepts ("HTTP/1.x ddd reason" and CRLF). The parser judges a start line only
// once it has all of it, and once it has asked for more, only with a whole head: a backend's
// garbage ("FOO\r\n" and silence) waited for the first-byte timeout. The exchange asks this
// after each read of a head that is not complete, and answers 502 at once on false.
bool could_be_status_line(std::string_view bytes);

// The gateway's stamps on every relayed answer, in HTTP/1.1's spelling and HTTP/2's: one list
// for both protocols' heads (finish_response_head, h2_session's answers in parts) and for
// dropping a backend's own copies of them (is_gateway_stamp), so a stamp added here reaches
// every client and no backend can forge it.
struct stamp_name {
    std::string_view http1;
    std::string_view h2;
};
inline constexpr std::array<stamp_name, 3> gateway_stamps{{
    {"X-Stagegate-Version", "x-stagegate-version"},
    {"X-Stagegate-Stage", "x-stagegate-stage"},
    {"X-Request-Id", "x-request-id"},
}};

// Calls f(HTTP/1.1 name, HTTP/2 name, value) for each stamp, its value from `info`.
template <class F>
void for_each_stamp(const response_info& info, F&& f) {
    const std::array<std::string_view, gateway_stamps.size()> values{info.version, info.stage,
                                                                     info.request_id};
    for (std::size_t i = 0; i < gateway_stamps.size(); ++i) {
        f(gateway_stamps[i].http1, gateway_stamps[i].h2, values[i]);
    }
}

// Whether a field name (any case) is one of the gateway's stamps.
bool is_gateway_stamp(std::string_view name);

// Appends one field line ("name: value" and CRLF) to a head.
void append_header(std::string& out, std::string_view name, std::string_view value);

// Ends the client response head begun by relay_response_parser: framing, connection
// management and the stamps.
void finish_response_head(std::string& out, const response_info& info);

// Writes a chunk-size line ("1a2b\r\n") for chunked framing; returns its length.
std::size_t format_chunk_size(char (&out)[24], std::size_t size);

// A request id is kept only when it is short and printable (it is echoed into headers).
bool acceptable_request_id(std::string_view id);

// The version and stage routing assigned a request to; empty before routing decided.
struct routed_to {
    std::string_view version;  // X-Stagegate-Version
    std::string_view stage;    // X-Stagegate-Stage
};

// The reply for one error: {"error":{"code","message","request_id"}}. For a request routing
// assigned to a version, the gateway's own error answer (502, 503, 504) names that version and
// stage as a relayed answer does, so clients and logs can tell which version failed.
http::response<http::string_body> error_response(http::status status, std::string_view code,
                                                 std::string_view message,
                                                 std::string_view request_id, bool keep_alive,
                                                 unsigned version = 11, routed_to routed = {});

// Why a request gets the gateway's own error answer instead of a backend's: the status, the
// error code clients match on, and the message. Shared by routing, head checks, request
// parsing and the exchange (whose failures before any answer byte are answered this way).
struct answer_problem {
    http::status status = http::status::bad_request;
    std::string_view code;  // always a literal
    std::string message;
};

// Maps a Beast parse error on a client request to a status and error code (no message: the
// caller says what it was reading).
answer_problem classify_request_error(const boost::system::error_code& ec);

// A failed read while a head is awaited, as Beast's own head read reports it: the peer
// closing before any byte is end_of_stream, after some a head cut short (partial_message);
// any other error is the read's. Used by the client's and the backend's head reads alike.
template <class Parser>
boost::system::error_code head_read_failure(const boost::system::error_code& read_ec,
                                            Parser& parser) {
    if (read_ec != boost::asio::error::eof) {
        return read_ec;
    }
    if (!parser.got_some()) {
        return http::error::end_of_stream;
    }
    boost::system::error_code ec;
    parser.put_eof(ec);
    return ec ? ec : boost::system::error_code(http::error::partial_message);
}

}  // namespace stagegate::proxy
