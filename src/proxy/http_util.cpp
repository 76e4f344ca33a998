#include "http_util.hpp"

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <charconv>
#include <vector>

namespace stagegate::proxy {

namespace beast = boost::beast;

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// Up to 8 header names listed in Connection; more are ignored (and still never forwarded by
// name only if listed in the first 8: a client listing more gains nothing but noise).
struct connection_tokens {
    std::array<std::string_view, 8> names;
    std::size_t count = 0;

    explicit connection_tokens(const fields_type& fields) {
        for (auto it = fields.find(http::field::connection);
             it != fields.end() && it->name() == http::field::connection; ++it) {
            std::string_view value = it->value();
            while (!value.empty() && count < names.size()) {
                auto comma = value.find(',');
                auto token = trim(value.substr(0, comma));
                if (!token.empty()) {
                    names[count++] = token;
                }
                value = comma == std::string_view::npos ? std::string_view{}
                                                        : value.substr(comma + 1);
            }
        }
    }
    bool listed(std::string_view name) const {
        for (std::size_t i = 0; i < count; ++i) {
            if (beast::iequals(names[i], name)) {
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

void append_header(std::string& out, std::string_view name, std::string_view value) {
    out.append(name);
    out.append(": ", 2);
    out.append(value);
    out.append("\r\n", 2);
}

void append_number(std::string& out, std::uint64_t n) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    out.append(digits, end);
}

}  // namespace

void serialize_request_head(std::string& out, const http::request_header<fields_type>& req,
                            const forward_info& info, std::size_t body_size) {
    connection_tokens named(req);
    out.append(req.method_string());
    out.push_back(' ');
    out.append(req.target());
    out.append(" HTTP/1.1\r\n", 11);
    std::string_view forwarded_for;
    std::string_view via;
    for (const auto& f : req) {
        const auto name = f.name();
        if (name == http::field::unknown) {
            const std::string_view n = f.name_string();
            if (beast::iequals(n, "x-forwarded-for")) {
                forwarded_for = f.value();  // merged below (the last one wins if repeated)
                continue;
            }
            if (beast::iequals(n, "x-forwarded-proto") || beast::iequals(n, "x-request-id") ||
                beast::iequals(n, "x-stagegate-force-version") || (named.count && named.listed(n))) {
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
        }
        append_header(out, f.name_string(), f.value());
    }
    out.append("X-Forwarded-For: ");
    if (!forwarded_for.empty()) {
        out.append(forwarded_for);
        out.append(", ", 2);
    }
    out.append(info.client_address);
    out.append("\r\nX-Forwarded-Proto: ");
    out.append(info.client_tls ? "https" : "http");
    out.append("\r\nVia: ");
    if (!via.empty()) {
        out.append(via);
        out.append(", ", 2);
    }
    out.append(info.client_version == 10 ? "1.0 stagegate" : "1.1 stagegate");
    out.append("\r\nX-Request-Id: ");
    out.append(info.request_id);
    out.append("\r\n", 2);
    const auto method = req.method();
    if (body_size > 0 || method == http::verb::post || method == http::verb::put ||
        method == http::verb::patch) {
        out.append("Content-Length: ");
        append_number(out, body_size);
        out.append("\r\n", 2);
    }
    out.append("\r\n", 2);
}

void serialize_response_head(std::string& out, const http::response_header<fields_type>& res,
                             const response_info& info) {
    connection_tokens named(res);
    out.append(info.client_version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    append_number(out, res.result_int());
    out.push_back(' ');
    std::string_view reason = res.reason();
    out.append(reason.empty() ? std::string_view(http::obsolete_reason(res.result())) : reason);
    out.append("\r\n", 2);
    for (const auto& f : res) {
        const auto name = f.name();
        if (name == http::field::unknown) {
            if (named.count && named.listed(f.name_string())) {
                continue;
            }
        } else {
            if (is_hop_by_hop(name) || name == http::field::transfer_encoding) {
                continue;
            }
            // A HEAD answer's Content-Length describes the GET body: pass it on as it is.
            if (name == http::field::content_length && !info.head_request) {
                continue;
            }
            if (named.count && named.listed(f.name_string())) {
                continue;
            }
        }
        append_header(out, f.name_string(), f.value());
    }
    switch (info.framing) {
        case body_framing::content_length:
            out.append("Content-Length: ");
            append_number(out, info.content_length);
            out.append("\r\n", 2);
            break;
        case body_framing::chunked:
            out.append("Transfer-Encoding: chunked\r\n");
            break;
        case body_framing::none:
        case body_framing::close_delimited:
            break;
    }
    if (info.client_version == 10) {
        if (info.keep_alive) {
            out.append("Connection: keep-alive\r\n");
        }
    } else if (!info.keep_alive) {
        out.append("Connection: close\r\n");
    }
    append_header(out, "X-Stagegate-Version", info.version);
    append_header(out, "X-Stagegate-Stage", info.stage);
    append_header(out, "X-Request-Id", info.request_id);
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
                                                 unsigned version) {
    nlohmann::json body = {{"error",
                            {{"code", code}, {"message", message}, {"request_id", request_id}}}};
    http::response<http::string_body> res{status, version};
    res.set(http::field::server, "stagegate");
    res.set(http::field::content_type, "application/json");
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

parse_failure classify_request_error(const boost::system::error_code& ec) {
    if (ec == http::error::header_limit) {
        return {http::status::request_header_fields_too_large, "header_too_large"};
    }
    if (ec == http::error::body_limit) {
        return {http::status::payload_too_large, "body_too_large"};
    }
    if (ec == http::error::bad_content_length || ec == http::error::multiple_content_length) {
        return {http::status::bad_request, "invalid_content_length"};
    }
    if (ec == http::error::bad_transfer_encoding) {
        return {http::status::bad_request, "invalid_transfer_encoding"};
    }
    return {http::status::bad_request, "bad_request"};
}

}  // namespace stagegate::proxy
