// Private to admin: the dashboard's files (src/admin/ui/, built into the binary by CMake, so
// the gateway serves them with no file system access and no path ever reaches a disk), and the
// HTTP answer for one: its content type, a validator for caches, and the headers that keep the
// page to this origin (a Content-Security-Policy of 'self', no framing, no sniffing, no
// referrer).
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace stagegate::admin {

struct ui_file {
    std::string_view name;  // as under /ui/: "index.html"
    std::string_view body;
};

// Every file of the dashboard, as the tree had it at build time (generated: ui_files.cpp.in).
std::span<const ui_file> ui_files();

// The file by that exact name, or null: a name is looked up, never resolved as a path.
const ui_file* find_ui_file(std::string_view name);

// "text/html; charset=utf-8" and so on, by the name's extension; application/octet-stream for
// one the dashboard has no use for.
std::string_view ui_content_type(std::string_view name);

// The file's entity tag: a quoted hash of its bytes, the same for the same build.
std::string ui_etag(const ui_file& file);

using ui_response = boost::beast::http::response<boost::beast::http::string_body>;

// 200 with the file, or 304 when `if_none_match` (the request's If-None-Match) already names
// its entity tag; nullopt when the dashboard has no file of that name.
std::optional<ui_response> ui_file_answer(std::string_view name, std::string_view if_none_match,
                                          unsigned version);

// 302 to `location` (the dashboard's page for "/" and "/ui").
ui_response ui_redirect(std::string_view location, unsigned version);

}  // namespace stagegate::admin
