// The dashboard's built-in files: found by exact name only (no path is ever resolved), served
// with their content types, cache validators and the headers that keep the page to its origin,
// and written so that policy does not block them (no inline script or style, no reference to a
// file that is not built in, the token never in localStorage or a cookie).
#include "admin/ui_assets.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/field.hpp>

#include <regex>
#include <set>
#include <string>

namespace stagegate::admin {
namespace {

namespace http = boost::beast::http;

std::string_view file_text(std::string_view name) {
    const auto* f = find_ui_file(name);
    return f ? f->body : std::string_view{};
}

TEST(UiAssets, EveryFileIsBuiltInWithAContentTypeABrowserRuns) {
    std::set<std::string_view> names;
    for (const auto& f : ui_files()) {
        EXPECT_TRUE(names.insert(f.name).second) << "twice: " << f.name;
        EXPECT_FALSE(f.body.empty()) << f.name;
        EXPECT_EQ(f.name.find('/'), std::string_view::npos) << f.name;
        EXPECT_NE(ui_content_type(f.name), "application/octet-stream") << f.name;
    }
    EXPECT_TRUE(names.count("index.html"));
    EXPECT_EQ(ui_content_type("index.html"), "text/html; charset=utf-8");
    // A module script with another type is refused by the browser.
    EXPECT_EQ(ui_content_type("dashboard.js"), "text/javascript; charset=utf-8");
    EXPECT_EQ(ui_content_type("dashboard.css"), "text/css; charset=utf-8");
    EXPECT_EQ(ui_content_type("favicon.svg"), "image/svg+xml");
    EXPECT_EQ(ui_content_type("secrets.token"), "application/octet-stream");
}

TEST(UiAssets, ANameIsLookedUpNeverResolvedAsAPath) {
    ASSERT_NE(find_ui_file("index.html"), nullptr);
    for (const char* name : {"", ".", "..", "../index.html", "./index.html", "ui/index.html",
                             "/index.html", "index.html/", "INDEX.HTML", "index.html%00",
                             "..%2fCMakeLists.txt", "../../CMakeLists.txt", "/etc/passwd"}) {
        EXPECT_EQ(find_ui_file(name), nullptr) << name;
        EXPECT_FALSE(ui_file_answer(name, "", 11)) << name;
    }
}

TEST(UiAssets, AnAnswerCarriesItsTypeValidatorAndPolicy) {
    auto res = ui_file_answer("dashboard.js", "", 11);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result(), http::status::ok);
    EXPECT_EQ(res->body(), file_text("dashboard.js"));
    EXPECT_EQ((*res)[http::field::content_type], "text/javascript; charset=utf-8");
    EXPECT_EQ((*res)[http::field::cache_control], "no-cache");
    EXPECT_EQ((*res)[http::field::etag], ui_etag(*find_ui_file("dashboard.js")));
    EXPECT_EQ((*res)["X-Content-Type-Options"], "nosniff");
    EXPECT_EQ((*res)["X-Frame-Options"], "DENY");
    EXPECT_EQ((*res)["Referrer-Policy"], "no-referrer");
    const std::string csp((*res)["Content-Security-Policy"]);
    for (const char* directive : {"default-src 'none'", "script-src 'self'", "style-src 'self'",
                                  "connect-src 'self'", "frame-ancestors 'none'",
                                  "form-action 'none'"}) {
        EXPECT_NE(csp.find(directive), std::string::npos) << csp;
    }
    EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
}

TEST(UiAssets, AFileTheCacheHoldsIsAnsweredNotModified) {
    const auto etag = ui_etag(*find_ui_file("index.html"));
    ASSERT_EQ(etag.size(), 18u) << etag;  // 16 hex digits, quoted
    EXPECT_NE(etag, ui_etag(*find_ui_file("dashboard.js")));
    for (const std::string& if_none_match :
         {etag, "W/" + etag, "\"other\", " + etag, std::string("*")}) {
        auto res = ui_file_answer("index.html", if_none_match, 11);
        ASSERT_TRUE(res);
        EXPECT_EQ(res->result(), http::status::not_modified) << if_none_match;
        EXPECT_TRUE(res->body().empty());
        EXPECT_EQ((*res)[http::field::etag], etag);
    }
    for (const std::string& if_none_match : {std::string("\"other\""), std::string("")}) {
        auto res = ui_file_answer("index.html", if_none_match, 11);
        ASSERT_TRUE(res);
        EXPECT_EQ(res->result(), http::status::ok) << if_none_match;
    }
}

TEST(UiAssets, TheRedirectNamesTheDashboard) {
    auto res = ui_redirect("/ui/", 11);
    EXPECT_EQ(res.result(), http::status::found);
    EXPECT_EQ(res[http::field::location], "/ui/");
    EXPECT_FALSE(res["Content-Security-Policy"].empty());
}

// What the Content-Security-Policy would block, or a reference to nothing, fails here rather
// than as a blank page.
TEST(UiAssets, ThePageRefersOnlyToBuiltInFilesAndHasNothingInline) {
    const std::string page(file_text("index.html"));
    const std::regex reference(R"re((?:src|href)="([^"]*)")re");
    int references = 0;
    for (std::sregex_iterator it(page.begin(), page.end(), reference), end; it != end; ++it) {
        ++references;
        EXPECT_NE(find_ui_file((*it)[1].str()), nullptr) << "not built in: " << (*it)[1];
    }
    EXPECT_GE(references, 3);
    EXPECT_EQ(page.find("style="), std::string::npos);
    EXPECT_EQ(page.find("<style"), std::string::npos);
    EXPECT_EQ(std::regex_search(page, std::regex("<script(?![^>]*\\bsrc=)")), false)
        << "an inline script: the policy blocks it";
    const std::regex module_import(R"re(from "\./([^"]+)")re");
    for (const auto& f : ui_files()) {
        const std::string text(f.body);
        for (std::sregex_iterator it(text.begin(), text.end(), module_import), end; it != end;
             ++it) {
            EXPECT_NE(find_ui_file((*it)[1].str()), nullptr) << f.name << " imports " << (*it)[1];
        }
    }
}

// The token lives in the tab's sessionStorage and travels only in the Authorization header.
TEST(UiAssets, TheTokenIsNeverKeptInLocalStorageOrACookie) {
    for (const auto& f : ui_files()) {
        EXPECT_EQ(f.body.find("localStorage."), std::string_view::npos) << f.name;
        EXPECT_EQ(f.body.find("document.cookie"), std::string_view::npos) << f.name;
        EXPECT_EQ(f.body.find("new EventSource"), std::string_view::npos)
            << f.name << ": EventSource cannot send the Authorization header";
    }
    EXPECT_NE(file_text("api.js").find("sessionStorage"), std::string_view::npos);
    EXPECT_NE(file_text("api.js").find("credentials: \"omit\""), std::string_view::npos);
}

}  // namespace
}  // namespace stagegate::admin
