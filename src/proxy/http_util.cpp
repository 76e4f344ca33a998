#include "http_util.hpp"

#include <boost/algorithm/string/predicate.hpp>
#include <nlohmann/json.hpp>

#include <vector>

namespace stagegate::proxy {

namespace {

constexpr std::string_view hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
    "proxy-authenticate", "proxy-authorization",
};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

void strip_hop_by_hop(http::fields& fields) {
    // Tokens listed in Connection name more hop-by-hop headers; never let one remove framing.
    std::vector<std::string> named;
    for (auto it = fields.find(http::field::connection); it != fields.end() &&
                                                         it->name() == http::field::connection;
         ++it) {
        std::string_view value = it->value();
        while (!value.empty()) {
            auto comma = value.find(',');
            auto token = trim(value.substr(0, comma));
            if (!token.empty() && !boost::iequals(token, "content-length") &&
                !boost::iequals(token, "transfer-encoding") && !boost::iequals(token, "host")) {
                named.emplace_back(token);
            }
            value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
        }
    }
    for (const auto& name : named) {
        fields.erase(name);
    }
    for (auto name : hop_by_hop) {
        fields.erase(name);
    }
}

void append_forwarded_for(http::fields& fields, std::string_view client_address) {
    auto it = fields.find("X-Forwarded-For");
    if (it == fields.end()) {
        fields.set("X-Forwarded-For", client_address);
        return;
    }
    std::string value(it->value());
    value += ", ";
    value += client_address;
    fields.set("X-Forwarded-For", value);
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
