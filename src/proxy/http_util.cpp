#include "http_util.hpp"

#include "h2_fields.hpp"
#include "string_cursor.hpp"

#include "stagegate/core/text.hpp"

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <vector>

namespace stagegate::proxy {

namespace beast = boost::beast;
using namespace std::string_view_literals;

namespace {

// Up to 8 header names listed in Connection; more are ignored (and still never forwarded by
// name only if listed in the first 8: a client listing more gains nothing but noise).
struct connection_tokens {
    std::array<std::string_view, 8> names;
    std::size_t count = 0;

    explicit connection_tokens(const client_request& req) {
        for (const auto f : req) {
            if (f.name() == http::field::connection) {
                add(f.value());
            }
        }
    }
    explicit connection_tokens(std::string_view values) { add(values); }
    void add(std::string_view value) {
        while (!value.empty() && count < names.size()) {
            auto comma = value.find(',');
            auto token = trim_blanks(value.substr(0, comma));
            if (!token.empty()) {
                names[count++] = token;
            }
            value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
        }
    }
    bool listed(std::string_view name) const {
        for (std::size_t i = 0; i < count; ++i) {
            if (ascii_iequal(names[i], name)) {
                return true;
            }
        }
        return false;
    }
};

bool is_hop_by_hop(http::field f) {
    switch (f) {
        case http::field::connection:
        case http::field::keep_alive:
        case http::field::proxy_connection:
        case http::field::te:
        case http::field::trailer:
        case http::field::upgrade:
        case http::field::proxy_authenticate:
        case http::field::proxy_authorization:
            return true;
        default:
            return false;
    }
}

void append_number(std::string& out, std::uint64_t n) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    out.append(digits, end);
}

}  // namespace

// One append per header line (four were a tenth of the relay's user time): the line is
// assembled on the stack when it is short, as nearly all are. (A string_cursor here cost 200
// instructions a request more: it resizes twice per line.)
void append_header(std::string& out, std::string_view name, std::string_view value) {
    const std::size_t size = name.size() + value.size() + 4;
    std::array<char, 256> line;
    if (size > line.size()) {
        out.append(name);
        out.append(": ", 2);
        out.append(value);
        out.append("\r\n", 2);
        return;
    }
    char* p = std::copy_n(name.data(), name.size(), line.data());
    *p++ = ':';
    *p++ = ' ';
    p = std::copy_n(value.data(), value.size(), p);
    *p++ = '\r';
    *p++ = '\n';
    out.append(line.data(), size);
}

void to_origin_form(client_request& req) {
    const std::string_view target = req.target();
    std::size_t scheme = 0;
    if (target.size() >= 7 && beast::iequals(target.substr(0, 7), "http://")) {
        scheme = 7;
    } else if (target.size() >= 8 && beast::iequals(target.substr(0, 8), "https://")) {
        scheme = 8;
    } else {
        return;
    }
    const auto rest = target.substr(scheme);
    const auto path_at = rest.find_first_of("/?");
    // Copied first: the views point into the request's bytes, which setting Host may move.
    const std::string authority(rest.substr(0, path_at));
    std::string path = path_at == std::string_view::npos ? std::string("/")
                                                         : std::string(rest.substr(path_at));
    if (path.front() == '?') {
        path.insert(0, 1, '/');
    }
    req.set(http::field::host, authority);
    req.target(path);
}

namespace {

// forward_request_fields' sink for an HTTP/1.1 backend: the head as it goes on the wire,
// written through a string_cursor.
class http1_head_writer {
public:
    explicit http1_head_writer(std::string& out) : out_(out) {}
    void start(std::string_view method, std::string_view target) {
        out_.put(method);
        out_.put(" "sv);
        out_.put(target);
        out_.put(" HTTP/1.1\r\n"sv);
    }
    void field(std::string_view name, std::string_view value) { out_.field_line(name, value); }
    void authority(std::string_view name, std::string_view host) { field(name, host); }
    void open(std::string_view name) {
        out_.put(name);
        out_.put(": "sv);
    }
    void add(std::string_view piece) { out_.put(piece); }
    void close() { out_.put("\r\n"sv); }
    void length(std::string_view digits) {
        open("Content-Length"sv);
        out_.put(digits);
        close();
    }
    void finish() {
        out_.put("\r\n"sv);
        out_.finish();
    }

private:
    string_cursor out_;
};

// The fields of a forwarded request, for either protocol's sink: the request line, the
// client's end-to-end fields, the proxy's X-Forwarded-For/-Proto, Via and X-Request-Id (and
// X-Stagegate-Mirror on a shadow copy), and Content-Length.
template <class Sink>
void forward_request_fields(Sink& sink, const client_request& req,
                            const forward_info& info, std::size_t body_size) {
    connection_tokens named(req);
    sink.start(req.method_string(), req.target());
    bool forwarded_for = false;
    std::string_view via;
    for (const auto f : req) {
        const auto name = f.name();
        if (name == http::field::unknown) {
            const std::string_view n = f.name_string();
            if (ascii_iequal(n, "x-forwarded-for"sv)) {
                forwarded_for = true;  // joined below
                continue;
            }
            // X-Stagegate-Mirror marks the gateway's own shadow copies: a client's would pass
            // live traffic off as shadow traffic to the backend.
            if (ascii_iequal(n, "x-forwarded-proto"sv) || ascii_iequal(n, "x-request-id"sv) ||
                ascii_iequal(n, "x-stagegate-force-version"sv) ||
                ascii_iequal(n, "x-stagegate-mirror"sv) || (named.count && named.listed(n))) {
                continue;
            }
        } else {
            if (is_hop_by_hop(name) || name == http::field::content_length ||
                name == http::field::transfer_encoding || name == http::field::expect) {
                continue;
            }
            if (name == http::field::via) {
                via = f.value();
                continue;
            }
            if (named.count && named.listed(f.name_string())) {
                continue;
            }
            if (name == http::field::host) {
                sink.authority(f.name_string(), f.value());
                continue;
            }
        }
        sink.field(f.name_string(), f.value());
    }
    // Every X-Forwarded-For the client sent, in order, joined with commas as RFC 9110 5.3
    // allows for list fields (nginx's $proxy_add_x_forwarded_for does the same), then ours.
    sink.open("X-Forwarded-For"sv);
    if (forwarded_for) {
        for (const auto f : req) {
            if (f.name() == http::field::unknown &&
                ascii_iequal(f.name_string(), "x-forwarded-for"sv)) {
                sink.add(f.value());
                sink.add(", "sv);
            }
        }
    }
    sink.add(info.client_address);
    sink.close();
    sink.field("X-Forwarded-Proto"sv, info.client_tls ? "https"sv : "http"sv);
    sink.open("Via"sv);
    if (!via.empty()) {
        sink.add(via);
        sink.add(", "sv);
    }
    sink.add(info.client_version == 10 ? "1.0 stagegate"sv : "1.1 stagegate"sv);
    sink.close();
    sink.field("X-Request-Id"sv, info.request_id);
    if (info.mirror) {
        sink.field("X-Stagegate-Mirror"sv, "1"sv);
    }
    const auto method = req.method();
    if (body_size > 0 || method == http::verb::post || method == http::verb::put ||
        method == http::verb::patch) {
        char digits[20];
        const auto end = std::to_chars(digits, digits + sizeof digits, body_size).ptr;
        sink.length(std::string_view(digits, static_cast<std::size_t>(end - digits)));
    }
    sink.finish();
}

}  // namespace

void serialize_request_head(std::string& out, const client_request& req,
                            const forward_info& info, std::size_t body_size) {
    http1_head_writer sink(out);
    forward_request_fields(sink, req, info, body_size);
}

void serialize_h2_request_head(std::string& out, const client_request& req,
                               const forward_info& info, std::size_t body_size) {
    h2_head_writer sink(out);
    forward_request_fields(sink, req, info, body_size);
}

void relay_response_parser::on_response_impl(int code, beast::string_view reason, int,
                                             boost::system::error_code&) {
    status_ = static_cast<unsigned>(code);
    head_.append(client_version_ == 10 ? "HTTP/1.0 "sv : "HTTP/1.1 "sv);
    append_number(head_, status_);
    head_.push_back(' ');
    const std::string_view fallback = http::obsolete_reason(http::int_to_status(status_));
    head_.append(reason.empty() ? fallback : std::string_view(reason));
    head_.append("\r\n", 2);
    fields_begin_ = head_.size();
}

void relay_response_parser::on_field_impl(http::field name, beast::string_view name_string,
                                          beast::string_view value, boost::system::error_code&) {
    if (name == http::field::connection) {
        // Joined with commas; names past 256 bytes are not honoured (as past 8 names).
        if (connection_size_ > 0 && connection_size_ < connection_.size()) {
            connection_[connection_size_++] = ',';
        }
        const auto n = std::min(value.size(), connection_.size() - connection_size_);
        std::copy_n(value.data(), n, connection_.data() + connection_size_);
        connection_size_ += n;
        return;
    }
    if (is_hop_by_hop(name) || name == http::field::transfer_encoding) {
        return;
    }
    // A HEAD answer's Content-Length describes the GET body: pass it on as it is.
    if (name == http::field::content_length && !head_request_) {
        return;
    }
    if (name == http::field::content_encoding && !beast::iequals(value, "identity")) {
        encoded_ = true;
    }
    if (name == http::field::content_type) {
        constexpr std::string_view sse = "text/event-stream";
        event_stream_ = value.size() >= sse.size() && beast::iequals(value.substr(0, sse.size()), sse);
    }
    // The gateway's own stamps come from the gateway alone: a backend's copy would reach the
    // client ahead of them, and a client reads the first.
    if (name == http::field::unknown && is_gateway_stamp(name_string)) {
        return;
    }
    append_header(head_, name_string, value);
}

void relay_response_parser::on_header_impl(boost::system::error_code&) {
    if (connection_size_ == 0) {
        return;
    }
    const connection_tokens named(std::string_view(connection_.data(), connection_size_));
    // "keep-alive" and "close" name no header left to drop (Keep-Alive is hop-by-hop anyway).
    bool names_headers = false;
    for (std::size_t i = 0; i < named.count; ++i) {
        names_headers = names_headers || (!beast::iequals(named.names[i], "keep-alive") &&
                                          !beast::iequals(named.names[i], "close"));
    }
    if (!names_headers) {
        return;
    }
    // Drop the lines whose header Connection names (rare: a copy of the fields is fine).
    std::string_view fields(head_.data() + fields_begin_, head_.size() - fields_begin_);
    std::string kept;
    while (!fields.empty()) {
        const auto end = fields.find("\r\n") + 2;
        const auto line = fields.substr(0, end);
        if (!named.listed(line.substr(0, line.find(':')))) {
            kept.append(line);
        }
        fields.remove_prefix(end);
    }
    head_.resize(fields_begin_);
    head_.append(kept);
}

std::size_t relay_response_parser::on_body_impl(beast::string_view body,
                                                boost::system::error_code& ec) {
    if (!data_) {
        ec = http::error::need_buffer;
        return 0;
    }
    const auto n = std::min(size_, body.size());
    std::copy_n(body.data(), n, data_);
    data_ += n;
    size_ -= n;
    if (n < body.size()) {
        ec = http::error::need_buffer;
    }
    return n;
}

bool is_gateway_stamp(std::string_view name) {
    return std::any_of(gateway_stamps.begin(), gateway_stamps.end(), [&](const stamp_name& s) {
        return ascii_iequal(name, s.h2);
    });
}

bool could_be_status_line(std::string_view bytes) {
    // As Beast's response parser: version 1.0 or 1.1, SP, three digits, SP, then a reason of
    // anything but control characters (HTAB allowed) up to CRLF.
    constexpr std::string_view shape = "HTTP/1.? ### ";
    const std::size_t n = std::min(bytes.size(), shape.size());
    for (std::size_t i = 0; i < n; ++i) {
        const char c = bytes[i];
        const char want = shape[i];
        const bool ok = want == '?'   ? (c == '0' || c == '1')
                        : want == '#' ? (c >= '0' && c <= '9')
                                      : c == want;
        if (!ok) {
            return false;
        }
    }
    for (std::size_t i = n; i < bytes.size(); ++i) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            // The line's end: only CRLF (a bare LF or another control is not)
            return c == '\r' && (i + 1 == bytes.size() || bytes[i + 1] == '\n');
        }
    }
    return true;
}

void finish_response_head(std::string& out, const response_info& info) {
    switch (info.framing) {
        case body_framing::content_length:
            out.append("Content-Length: "sv);
            append_number(out, info.content_length);
            out.append("\r\n", 2);
            break;
        case body_framing::chunked:
            out.append("Transfer-Encoding: chunked\r\n"sv);
            break;
        case body_framing::none:
        case body_framing::close_delimited:
            break;
    }
    if (info.client_version == 10) {
        if (info.keep_alive) {
            out.append("Connection: keep-alive\r\n"sv);
        }
    } else if (!info.keep_alive) {
        out.append("Connection: close\r\n"sv);
    }
    for_each_stamp(info, [&](std::string_view name, std::string_view, std::string_view value) {
        append_header(out, name, value);
    });
    out.append("\r\n", 2);
}

std::size_t format_chunk_size(char (&out)[24], std::size_t size) {
    auto [end, ec] = std::to_chars(out, out + 20, size, 16);
    *end++ = '\r';
    *end++ = '\n';
    return static_cast<std::size_t>(end - out);
}

bool acceptable_request_id(std::string_view id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    for (unsigned char c : id) {
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

http::response<http::string_body> error_response(http::status status, std::string_view code,
                                                 std::string_view message,
                                                 std::string_view request_id, bool keep_alive,
                                                 unsigned version, routed_to routed) {
    // OpenAI's error shape (message, type, param, code), which its SDKs show as they are;
    // KServe and custom clients read code and message.
    const bool client_side = static_cast<unsigned>(status) < 500;
    nlohmann::json body = {
        {"error",
         {{"code", code},
          {"message", message},
          {"type", client_side ? "invalid_request_error" : "server_error"},
          {"param", nullptr},
          {"request_id", request_id}}}};
    http::response<http::string_body> res{status, version};
    res.set(http::field::server, "stagegate");
    res.set(http::field::content_type, "application/json");
    if (!routed.version.empty()) {
        res.set("X-Stagegate-Version", routed.version);
        res.set("X-Stagegate-Stage", routed.stage);
    }
    if (!request_id.empty()) {
        res.set("X-Request-Id", request_id);
    }
    // replace: invalid UTF-8 from a client's input must not make the error path throw.
    res.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    res.body() += '\n';
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
}

answer_problem classify_request_error(const boost::system::error_code& ec) {
    if (ec == http::error::header_limit) {
        return {http::status::request_header_fields_too_large, "header_too_large", {}};
    }
    if (ec == http::error::body_limit) {
        return {http::status::payload_too_large, "body_too_large", {}};
    }
    if (ec == http::error::bad_content_length || ec == http::error::multiple_content_length) {
        return {http::status::bad_request, "invalid_content_length", {}};
    }
    if (ec == http::error::bad_transfer_encoding) {
        return {http::status::bad_request, "invalid_transfer_encoding", {}};
    }
    return {http::status::bad_request, "bad_request", {}};
}

}  // namespace stagegate::proxy
