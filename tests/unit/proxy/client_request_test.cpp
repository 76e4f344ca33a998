#include "proxy/client_request.hpp"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/request_reading.hpp"

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

using testing::read_by_parser;
using testing::read_request;
using testing::read_with;

constexpr std::size_t header_limit = 8192;
constexpr std::uint64_t body_limit = 1 << 20;

std::pair<read_request, bool> read_by_reader(std::string_view bytes, testing::delivery how = {}) {
    request_reader r(header_limit, body_limit);
    auto got = read_with(r, bytes, how);
    return {got, r.read_in_one_pass()};
}

// Views into the request itself (a field's name or value, the target) given back to it:
// copied before its bytes move. A one-pass read leaves the block exactly full, so the first
// addition moves it (under ASan, a read of the old block would be reported).
TEST(ClientRequest, TakesViewsIntoItselfAcrossItsBytesGrowth) {
    request_reader r(header_limit, body_limit);
    read_with(r, "GET /some/path HTTP/1.1\r\nHost: example.org\r\nX-Long-Name: v\r\n\r\n");
    ASSERT_TRUE(r.read_in_one_pass());
    auto& req = r.get();
    req.insert("X-Orig-Host", req[http::field::host]);
    EXPECT_EQ(req["X-Orig-Host"], "example.org");
    const auto named = *req.find("x-long-name");
    req.set(named.name_string(), req.target());
    EXPECT_EQ(req["X-Long-Name"], "/some/path");
    req.insert(req.find("X-Orig-Host")->name_string(), req.find("X-Long-Name")->value());
    req.target(req[http::field::host]);
    EXPECT_EQ(req.target(), "example.org");
    EXPECT_EQ(fields_of(req), (fields_list{{"Host", "example.org"},
                                           {"X-Long-Name", "/some/path"},
                                           {"X-Orig-Host", "example.org"},
                                           {"X-Orig-Host", "/some/path"}}));
}

// Heads as clients send them: curl, h2load, the openai SDK, Python requests, an HTTP/1.0
// client asking to keep the connection, blanks around values, empty values.
const std::vector<std::string> common_requests = {
    "POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n"
    "{\"instances\":[[1,2]]}",
    "POST /v1/models/m:predict HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-length: 5\r\n"
    "user-agent: h2load nghttp2/1.52.0\r\nContent-Type: application/json\r\nX-User-Id: u1\r\n\r\n"
    "{\"a\"}",
    "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nconnection: keep-alive\r\n"
    "Accept: application/json\r\nauthorization: Bearer sk-1\r\ncontent-type: application/json\r\n"
    "user-agent: OpenAI/JS 4.77.0\r\nx-stainless-lang: js\r\naccept-encoding: gzip,deflate\r\n"
    "content-length: 2\r\n\r\n{}",
    "GET /v1/models HTTP/1.1\r\nHost: gw\r\nUser-Agent: python-requests/2.28.1\r\n"
    "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    "GET /healthz?x=1&y=%20 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "DELETE /x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "PUT /x HTTP/1.1\r\nHost:gw\r\nX-A:  \t spaced \t value\t \r\nX-Empty:\r\nX-Blank: \t\r\n"
    "Cookie: a=1; b=2\r\nCookie: c=3\r\nContent-Length: 3\r\n\r\nabc",
    "BREW /pot HTTP/1.1\r\nHost: gw\r\nX-!#$%&'*+-.^_`|~09az: v\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: gw\r\nProxy-Connection: close\r\n\r\n",
    "POST http://gw:8080/v1/models/m:predict?q HTTP/1.1\r\nHost: other\r\nContent-Length: "
    "1\r\n\r\nx",
};

// The one pass takes the common heads, and what it makes of them is what Beast's parser
// makes: request line, fields (enums, names, values), length, keep-alive, body, bytes used.
// With a body still to come too, and with a pipelined request behind.
TEST(RequestReader, ReadsCommonHeadsInOnePassAsTheParserReadsThem) {
    for (const auto& bytes : common_requests) {
        auto [got, one_pass] = read_by_reader(bytes);
        EXPECT_TRUE(one_pass) << bytes;
        EXPECT_FALSE(got.ec) << got.ec.message() << "\n" << bytes;
        EXPECT_TRUE(got.done) << bytes;
        EXPECT_EQ(got, read_by_parser(bytes, header_limit, body_limit)) << bytes;
        // Eager from the start: the call that completes the head takes the body too.
        const testing::delivery eager{0, 0, false, true};
        auto [eager_got, one_eager] = read_by_reader(bytes, eager);
        EXPECT_TRUE(one_eager);
        EXPECT_EQ(eager_got, read_by_parser(bytes, header_limit, body_limit, eager)) << bytes;
        // A request behind it stays unread.
        const auto pipelined = bytes + "GET /next HTTP/1.1\r\n\r\n";
        auto [behind, one] = read_by_reader(pipelined);
        EXPECT_TRUE(one);
        EXPECT_EQ(behind.used, bytes.size());
        EXPECT_EQ(behind, read_by_parser(pipelined, header_limit, body_limit)) << bytes;
        const auto head_size = bytes.find("\r\n\r\n") + 4;
        if (head_size == bytes.size()) {
            continue;
        }
        // The body byte by byte after the head; cut short, with the peer closing or not.
        const testing::delivery trickle{head_size, 1, false};
        auto [slow, one_slow] = read_by_reader(bytes, trickle);
        EXPECT_TRUE(one_slow);
        EXPECT_EQ(slow.body, got.body) << bytes;
        EXPECT_EQ(slow, read_by_parser(bytes, header_limit, body_limit, trickle));
        // The head itself in pieces: the parser's from its first byte.
        const testing::delivery split{head_size / 2, 3, true};
        auto [pieces, one_pieces] = read_by_reader(bytes, split);
        EXPECT_FALSE(one_pieces);
        EXPECT_EQ(pieces, read_by_parser(bytes, header_limit, body_limit, split)) << bytes;
        const auto cut = bytes.substr(0, bytes.size() - 1);
        for (const bool eof : {false, true}) {
            const testing::delivery how{head_size, 1, eof};
            auto [partial, one_cut] = read_by_reader(cut, how);
            EXPECT_TRUE(one_cut);
            EXPECT_FALSE(partial.done);
            EXPECT_EQ(partial.ec, eof ? http::error::partial_message : http::error::need_more);
            EXPECT_EQ(partial, read_by_parser(cut, header_limit, body_limit, how)) << bytes;
        }
    }
    auto [got, one_pass] = read_by_reader(common_requests[0]);
    ASSERT_TRUE(one_pass);
    EXPECT_EQ(got.method, http::verb::post);
    EXPECT_EQ(got.target, "/v1/models/m:predict");
    EXPECT_EQ(got.version, 11u);
    EXPECT_TRUE(got.keep_alive);
    EXPECT_EQ(got.content_length, 21u);
    EXPECT_EQ(got.body, "{\"instances\":[[1,2]]}");
    ASSERT_EQ(got.fields.size(), 5u);
    EXPECT_EQ(got.fields[3], std::make_tuple(http::field::content_type, std::string("Content-Type"),
                                             std::string("application/json")));
}

// Every head the one pass does not take is read by Beast's parser from its first byte, and
// the answer is the parser's: refusals (each with its error), odd but valid heads, chunked
// bodies, heads that came in pieces or past the head limit.
TEST(RequestReader, LeavesEveryOtherHeadToTheParser) {
    const std::string long_value(header_limit, 'v');
    const std::vector<std::string> others = {
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nX-A: one\r\n two\r\n\r\n",  // a fold
        "POST / HTTP/1.1\r\nHost: gw\r\nX-A: caf\xc3\xa9\r\n\r\n",  // obs-text
        "POST / HTTP/1.1\nHost: gw\n\n",
        "POST / HTTP/1.1\r\nHost: gw\nX: y\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\rX: y\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
        "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx",
        "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
        "POST / HTTP/1.1\r\nContent-Length: 0x1\r\n\r\nx",
        "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",  // past the body limit
        "GET / HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw\r\nConnection: x-secret\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : gw\r\n\r\n",
        "GET / HTTP/1.1\r\n: gw\r\n\r\n",
        "GET / HTTP/1.1\r\nHo\"st: gw\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
        "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw\r\n",  // not whole yet
        "GET / HTTP/1.1\r\nHost: gw\r\nX: \x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw\r\nX: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Long: " + long_value + "\r\n\r\n",  // past the head limit
    };
    for (const auto& bytes : others) {
        auto [got, one_pass] = read_by_reader(bytes);
        EXPECT_FALSE(one_pass) << bytes;
        EXPECT_EQ(got, read_by_parser(bytes, header_limit, body_limit)) << bytes;
    }
    // A head at the limit exactly is still the one pass's.
    std::string at_limit = "GET / HTTP/1.1\r\nX: \r\n\r\n";
    at_limit.insert(at_limit.size() - 4, header_limit - at_limit.size(), 'v');
    ASSERT_EQ(at_limit.size(), header_limit);
    auto [got, one_pass] = read_by_reader(at_limit);
    EXPECT_TRUE(one_pass);
    EXPECT_EQ(got, read_by_parser(at_limit, header_limit, body_limit));
}

// The two agree on heads near the common ones: 200,000 of them, each a common request with a
// few of its bytes replaced, inserted or removed (bytes chosen among those that matter to the
// grammar). Deterministic: a fixed seed, so this cannot flake; fuzz_request_head does the same
// on any bytes.
TEST(RequestReader, AgreesWithTheParserOnMutatedHeads) {
    std::mt19937_64 random(24);
    std::size_t one_pass_count = 0;
    for (int round = 0; round < 200000; ++round) {
        std::string bytes = common_requests[random() % common_requests.size()];
        testing::mutate(random, bytes);
        auto [got, one_pass] = read_by_reader(bytes);
        one_pass_count += one_pass;
        const auto expected = read_by_parser(bytes, header_limit, body_limit);
        if (got != expected) {
            ADD_FAILURE() << "the reader and the parser differ (one pass: " << one_pass << ") on:\n"
                          << bytes;
            break;
        }
    }
    // Both paths were exercised: many mutations leave a head the one pass takes.
    EXPECT_GT(one_pass_count, 20000u);
    EXPECT_LT(one_pass_count, 190000u);
}

}  // namespace
}  // namespace stagegate::proxy
