// The dashboard's files as HTTP answers: lookup by exact name, content type, entity tag and
// the headers every answer of the dashboard carries (see ui_assets.hpp).
#include "ui_assets.hpp"

#include "stagegate/core/text.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>

#include <cstdint>

namespace stagegate::admin {

namespace http = boost::beast::http;

namespace {

// The page loads only its own scripts, styles and icon, and talks only to this origin (the
// admin API); nothing inline, no plug-ins, no framing, no form posted anywhere (the token form
// is handled by the script: without it, nothing is sent).
constexpr std::string_view content_security_policy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

void set_common_headers(ui_response& res) {
    res.set(http::field::server, "stagegate-admin");
    res.set("Content-Security-Policy", content_security_policy);
    res.set("X-Content-Type-Options", "nosniff");
    res.set("X-Frame-Options", "DENY");
    res.set("Referrer-Policy", "no-referrer");
}

// Whether an If-None-Match value ("*", or a list of tags, weak or strong) names `etag`.
bool names_etag(std::string_view if_none_match, std::string_view etag) {
    while (!if_none_match.empty()) {
        const auto comma = if_none_match.find(',');
        auto tag = trim_blanks(if_none_match.substr(0, comma));
        if (tag.starts_with("W/")) {
            tag.remove_prefix(2);  // weak comparison, as RFC 9110 asks for If-None-Match
        }
        if (tag == "*" || tag == etag) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        if_none_match.remove_prefix(comma + 1);
    }
    return false;
}

}  // namespace

const ui_file* find_ui_file(std::string_view name) {
    for (const auto& f : ui_files()) {
        if (f.name == name) {
            return &f;
        }
    }
    return nullptr;
}

std::string_view ui_content_type(std::string_view name) {
    if (name.ends_with(".html")) return "text/html; charset=utf-8";
    if (name.ends_with(".js")) return "text/javascript; charset=utf-8";  // module scripts need it
    if (name.ends_with(".css")) return "text/css; charset=utf-8";
    if (name.ends_with(".svg")) return "image/svg+xml";
    return "application/octet-stream";
}

std::string ui_etag(const ui_file& file) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out = "\"";
    const auto h = fnv1a(file.body);
    for (int shift = 60; shift >= 0; shift -= 4) {
        out += digits[(h >> shift) & 0xf];
    }
    return out + "\"";
}

std::optional<ui_response> ui_file_answer(std::string_view name, std::string_view if_none_match,
                                          unsigned version) {
    const auto* file = find_ui_file(name);
    if (!file) {
        return std::nullopt;
    }
    const auto etag = ui_etag(*file);
    const bool unchanged = names_etag(if_none_match, etag);
    ui_response res{unchanged ? http::status::not_modified : http::status::ok, version};
    set_common_headers(res);
    res.set(http::field::content_type, ui_content_type(file->name));
    // Kept, but asked about each time: the files change with the binary, and a 304 costs
    // next to nothing, so an upgraded gateway never runs yesterday's script.
    res.set(http::field::cache_control, "no-cache");
    res.set(http::field::etag, etag);
    if (!unchanged) {
        res.body() = std::string(file->body);
    }
    return res;
}

ui_response ui_redirect(std::string_view location, unsigned version) {
    ui_response res{http::status::found, version};
    set_common_headers(res);
    res.set(http::field::location, location);
    res.set(http::field::cache_control, "no-store");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "the dashboard is at " + std::string(location) + "\n";
    return res;
}

}  // namespace stagegate::admin
