#include "proxy/client_request.hpp"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stagegate::proxy {
namespace {

using fields_list = std::vector<std::pair<std::string, std::string>>;

fields_list fields_of(const client_request& req) {
    fields_list out;
    for (const auto f : req) {
        out.emplace_back(f.name_string(), f.value());
    }
    return out;
}

// A field is found by its known name or by its name in any case; where a name repeats, the
// first as sent; a name that is only a prefix or an extension of another is not it.
TEST(ClientRequest, FindsTheFirstAsSentByKnownNameOrByNameInAnyCase) {
    client_request req{http::verb::post, "/p", 11};
    req.insert("X-User-Ids", "longer");
    req.insert("x-user-id", "first");
    req.insert("Cookie", "a=1");
    req.insert("X-USER-ID", "second");
    req.insert(http::field::cookie, "b=2");
    req.insert("X-User", "shorter");
    const auto user = req.find(std::string_view("X-User-Id"));
    ASSERT_NE(user, req.end());
    EXPECT_EQ(user->value(), "first");
    const auto cookie = req.find(http::field::cookie);
    ASSERT_NE(cookie, req.end());
    EXPECT_EQ(cookie->value(), "a=1");
    EXPECT_EQ(cookie->name_string(), "Cookie");
    EXPECT_EQ(req.find(std::string_view("cookie"))->value(), "a=1");
    EXPECT_EQ(req.find(http::field::content_type), req.end());
    EXPECT_EQ(req.find(std::string_view("X-Request-Id")), req.end());
    EXPECT_EQ(req["x-user-id"], "first");
    EXPECT_EQ(req[http::field::content_type], "");
    EXPECT_EQ(std::distance(req.begin(), req.end()), 6);
}

// set() leaves one field of a name, in the first one's place; erase() takes every one; both
// by a known name and by a name as written. The request line's parts change alone.
TEST(ClientRequest, SetReplacesEveryFieldOfANameInTheFirstOnesPlace) {
    client_request req{http::verb::get, "/a", 11};
    req.insert(http::field::host, "one");
    req.insert("X-A", "1");
    req.insert("host", "two");
    req.insert("x-a", "2");
    req.set(http::field::host, "gw");
    EXPECT_EQ(fields_of(req), (fields_list{{"Host", "gw"}, {"X-A", "1"}, {"x-a", "2"}}));
    req.set("X-a", "3");
    EXPECT_EQ(fields_of(req), (fields_list{{"Host", "gw"}, {"X-A", "3"}}));
    req.set("Content-Type", "application/json");  // a known name, by its spelling
    ASSERT_NE(req.find(http::field::content_type), req.end());
    req.erase("x-A");
    req.erase(http::field::host);
    EXPECT_EQ(fields_of(req), (fields_list{{"Content-Type", "application/json"}}));
    // A value taken from the request itself survives the bytes' growth.
    req.target(req.target());
    req.set("X-Copy", req[http::field::content_type]);
    EXPECT_EQ(req["X-Copy"], "application/json");
    req.method_string("BREW");
    EXPECT_EQ(req.method(), http::verb::unknown);
    EXPECT_EQ(req.method_string(), "BREW");
    req.method(http::verb::put);
    EXPECT_EQ(req.method_string(), "PUT");
    EXPECT_EQ(req.target(), "/a");
    EXPECT_EQ(req.version(), 11u);
}

std::pair<boost::system::error_code, bool> parse(request_parser& p, std::string_view bytes) {
    boost::system::error_code ec;
    p.eager(true);
    while (!bytes.empty()) {
        const auto used = p.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
        bytes.remove_prefix(used);
        if (ec || used == 0) {
            break;
        }
    }
    return {ec, p.obs_fold()};
}

// A folded header line fails the read with obs_fold() set; blanks after the colon, an empty
// value and a tab inside a value are no fold.
TEST(RequestParser, RefusesObsFoldOnly) {
    for (std::string_view folded :
         {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
          "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n",
          "POST / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n\ttwo\r\n\r\n",
          "POST / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n \r\n\r\n",
          "POST / HTTP/1.1\r\nHost: x\r\nX-A:\r\n \r\n\r\n"}) {
        request_parser p;
        auto [ec, fold] = parse(p, folded);
        EXPECT_EQ(ec, http::error::bad_value) << folded;
        EXPECT_TRUE(fold) << folded;
    }
    request_parser p;
    auto [ec, fold] =
        parse(p, "POST / HTTP/1.1\r\nHost:x\r\nX-A: \t one\ttwo \r\nX-B:\r\nX-C: \r\n\r\n");
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_FALSE(fold);
    EXPECT_EQ(fields_of(p.get()),
              (fields_list{{"Host", "x"}, {"X-A", "one\ttwo"}, {"X-B", ""}, {"X-C", ""}}));
}

// The head, the body in pieces and chunks, and a chunked body's trailers dropped: never
// fields of the request (RFC 9110 6.5.1), whatever they name.
TEST(RequestParser, KeepsTheHeadAndBodyAndDropsTrailers) {
    request_parser p;
    auto [ec, fold] = parse(p,
                            "PATCH /v1/x?y=1 HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
                            "X-User-Id: u7\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nHost: evil\r\n"
                            "X-User-Id: u8\r\n\r\n");
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_TRUE(p.is_done());
    const auto& req = p.get();
    EXPECT_EQ(req.method(), http::verb::patch);
    EXPECT_EQ(req.method_string(), "PATCH");
    EXPECT_EQ(req.target(), "/v1/x?y=1");
    EXPECT_EQ(req.body(), "abcde");
    EXPECT_EQ(fields_of(req),
              (fields_list{{"Host", "gw"}, {"Transfer-Encoding", "chunked"}, {"X-User-Id", "u7"}}));
    EXPECT_EQ(req.find(http::field::transfer_encoding)->name(), http::field::transfer_encoding);

    request_parser q;
    std::tie(ec, fold) = parse(q, "BREW /pot HTTP/1.0\r\nContent-Length: 4\r\n\r\ntea!");
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(q.get().method(), http::verb::unknown);
    EXPECT_EQ(q.get().method_string(), "BREW");
    EXPECT_EQ(q.get().version(), 10u);
    EXPECT_EQ(q.get().body(), "tea!");
    EXPECT_FALSE(q.keep_alive());
}

// Names and values longer than any 16-bit size: held whole.
TEST(RequestParser, HoldsLongNamesAndValues) {
    const std::string name(70000, 'n');
    const std::string value(70000, 'v');
    request_parser p;
    p.header_limit(1 << 20);
    const std::string head = "GET / HTTP/1.1\r\nHost: gw\r\n" + name + ": " + value + "\r\n\r\n";
    auto [ec, fold] = parse(p, head);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(p.get()[name], value);
}

}  // namespace
}  // namespace stagegate::proxy
