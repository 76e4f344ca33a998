#include "proxy/http_util.hpp"

#include "proxy/h2_fields.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace stagegate::proxy {
namespace {

client_request sample_request() {
    client_request req{http::verb::post, "/v1/models/m:predict?x=1", 11};
    req.set(http::field::host, "gw");
    req.set(http::field::connection, "keep-alive, X-Secret, Content-Length");
    req.set("Keep-Alive", "timeout=5");
    req.set("X-Secret", "1");
    req.set("TE", "trailers");
    req.set("Upgrade", "h2c");
    req.set("Proxy-Connection", "keep-alive");
    req.set(http::field::transfer_encoding, "chunked");
    req.set(http::field::expect, "100-continue");
    req.set("X-Stagegate-Force-Version", "v2");
    req.set("X-Request-Id", "client-id");
    req.set("X-Forwarded-For", "203.0.113.7");
    req.set(http::field::via, "1.1 edge");
    req.set("X-Keep", "yes");
    return req;
}

TEST(SerializeRequestHead, DropsHopByHopAndAddsProxyHeaders) {
    auto req = sample_request();
    std::string out;
    serialize_request_head(out, req, forward_info{"127.0.0.1", true, "rid-9", 11}, 21);
    EXPECT_EQ(out.rfind("POST /v1/models/m:predict?x=1 HTTP/1.1\r\n", 0), 0u) << out;
    for (const char* gone : {"Keep-Alive", "X-Secret", "TE:", "Upgrade", "Proxy-Connection",
                             "Transfer-Encoding", "Expect", "X-Stagegate-Force-Version",
                             "client-id", "Connection"}) {
        EXPECT_EQ(out.find(gone), std::string::npos) << gone << " leaked:\n" << out;
    }
    EXPECT_NE(out.find("Host: gw\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Keep: yes\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
    EXPECT_NE(out.find("Via: 1.1 edge, 1.1 stagegate\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Request-Id: rid-9\r\n"), std::string::npos);
    EXPECT_NE(out.find("Content-Length: 21\r\n"), std::string::npos);
    EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(SerializeRequestHead, GetWithoutBodyHasNoContentLength) {
    client_request req{http::verb::get, "/v2/models/m", 11};
    std::string out;
    serialize_request_head(out, req, forward_info{"10.0.0.1", false, "r", 10}, 0);
    EXPECT_EQ(out.find("Content-Length"), std::string::npos);
    EXPECT_NE(out.find("X-Forwarded-For: 10.0.0.1\r\n"), std::string::npos);
    EXPECT_NE(out.find("Via: 1.0 stagegate\r\n"), std::string::npos);
}

// The same request for an HTTP/2 backend: the same fields in the same order (names
// lowercased, Host as :authority, the method and target as pseudo-header entries), and the
// length set apart for a streamed call to leave out.
TEST(SerializeRequestHead, ForAnHttp2BackendTheSameFieldsAsEntries) {
    auto req = sample_request();
    req.insert("X-Forwarded-For", "198.51.100.2");  // a second one: joined in order
    std::string out;
    serialize_h2_request_head(out, req, forward_info{"127.0.0.1", true, "rid-9", 11, true}, 21);
    std::vector<std::pair<std::string, std::string>> entries;
    std::vector<h2_entry> kinds;
    h2_head_entries(out, [&](const h2_head_field& f) {
        kinds.push_back(f.kind);
        entries.emplace_back(f.name, f.value);
    });
    const std::vector<std::pair<std::string, std::string>> expected{
        {"", "POST"},
        {"", "/v1/models/m:predict?x=1"},
        {"", "gw"},
        {"x-keep", "yes"},
        {"x-forwarded-for", "203.0.113.7, 198.51.100.2, 127.0.0.1"},
        {"x-forwarded-proto", "https"},
        {"via", "1.1 edge, 1.1 stagegate"},
        {"x-request-id", "rid-9"},
        {"x-stagegate-mirror", "1"},
        {"content-length", "21"},
    };
    EXPECT_EQ(entries, expected);
    const std::vector<h2_entry> expected_kinds{
        h2_entry::method, h2_entry::path,  h2_entry::authority, h2_entry::field,
        h2_entry::field,  h2_entry::field, h2_entry::field,     h2_entry::field,
        h2_entry::field,  h2_entry::content_length};
    EXPECT_EQ(kinds, expected_kinds);

    // What the HTTP/1.1 head of the same request says, field for field.
    std::string head;
    serialize_request_head(head, req, forward_info{"127.0.0.1", true, "rid-9", 11, true}, 21);
    EXPECT_NE(head.find("X-Forwarded-For: 203.0.113.7, 198.51.100.2, 127.0.0.1\r\n"),
              std::string::npos)
        << head;
    EXPECT_NE(head.find("X-Stagegate-Mirror: 1\r\n"), std::string::npos) << head;
}

// Fields past the room the writer makes ahead (1 KiB), one of them larger than twice that
// room, after what `out` already held: every entry arrives whole and in order.
TEST(SerializeRequestHead, ForAnHttp2BackendFieldsPastTheFirstKilobyteArriveWhole) {
    client_request req{http::verb::post, "/p", 11};
    std::vector<std::pair<std::string, std::string>> sent;
    for (int i = 0; i < 60; ++i) {
        sent.emplace_back("x-field-" + std::to_string(i),
                          std::string(i == 30 ? 3000 : 20, static_cast<char>('a' + i % 26)));
        req.insert("X-Field-" + std::to_string(i), sent.back().second);
    }
    std::string out = "before";
    serialize_h2_request_head(out, req, forward_info{"10.0.0.1", false, "r", 11}, 0);
    ASSERT_EQ(out.substr(0, 6), "before");
    std::vector<std::pair<std::string, std::string>> fields;
    h2_head_entries(std::string_view(out).substr(6), [&](const h2_head_field& f) {
        if (f.name.starts_with("x-field-")) {
            fields.emplace_back(f.name, f.value);
        }
    });
    EXPECT_EQ(fields, sent);
    std::size_t entries = 0;
    h2_head_entries(std::string_view(out).substr(6), [&](const h2_head_field&) { ++entries; });
    EXPECT_EQ(entries, 2 + 60 + 4 + 1u);  // method, path, fields, XFF/-Proto/Via/Id, length
}

// Feeds an upstream answer's bytes to a relay parser; returns what it consumed.
std::size_t feed(relay_response_parser& parser, std::string_view wire,
                 boost::system::error_code& ec) {
    return parser.put(boost::asio::buffer(wire.data(), wire.size()), ec);
}

response_info stamps() {
    response_info info;
    info.version = "v2";
    info.stage = "canary-5";
    info.request_id = "rid";
    return info;
}

TEST(RelayResponseParser, WritesTheClientHeadWithoutHopByHopHeaders) {
    const std::string_view wire =
        "HTTP/1.1 200 OK\r\nX-Hop: 1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
        "Content-Encoding: identity\r\n\r\n";
    std::string out;
    relay_response_parser parser(out, 11, false);
    boost::system::error_code ec;
    EXPECT_EQ(feed(parser, wire, ec), wire.size());
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(parser.is_header_done());
    EXPECT_EQ(parser.status(), 200u);
    EXPECT_TRUE(parser.keep_alive());
    EXPECT_TRUE(parser.chunked());
    EXPECT_FALSE(parser.encoded());
    auto info = stamps();
    info.framing = body_framing::content_length;
    info.content_length = 42;
    info.keep_alive = false;
    finish_response_head(out, info);
    EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
    EXPECT_NE(out.find("Content-Type: application/json\r\n"), std::string::npos);
    EXPECT_NE(out.find("Content-Encoding: identity\r\n"), std::string::npos);
    EXPECT_NE(out.find("Content-Length: 42\r\n"), std::string::npos);
    EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Stagegate-Version: v2\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Stagegate-Stage: canary-5\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Request-Id: rid\r\n"), std::string::npos);
    EXPECT_EQ(out.find("chunked"), std::string::npos);
    EXPECT_EQ(out.find("X-Hop"), std::string::npos) << out;  // named in Connection, before it
    EXPECT_EQ(out.find("Keep-Alive"), std::string::npos);
    EXPECT_EQ(out.find("\r\n\r\n"), out.size() - 4);
}

// The limit: the first 8 names a Connection header lists are honoured (a backend listing
// more gains nothing but noise; the 9th is relayed like any end-to-end header).
TEST(RelayResponseParser, HonoursEightConnectionNames) {
    std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n";
    std::string names;
    for (int i = 1; i <= 9; ++i) {
        wire += "X-Hop-" + std::to_string(i) + ": " + std::to_string(i) + "\r\n";
        names += (i > 1 ? ", X-Hop-" : "X-Hop-") + std::to_string(i);
    }
    wire += "Connection: " + names + "\r\nX-Kept: yes\r\n\r\n";
    std::string out;
    relay_response_parser parser(out, 11, false);
    boost::system::error_code ec;
    feed(parser, wire, ec);
    ASSERT_FALSE(ec) << ec.message();
    for (int i = 1; i <= 8; ++i) {
        EXPECT_EQ(out.find("X-Hop-" + std::to_string(i) + ":"), std::string::npos) << out;
    }
    EXPECT_NE(out.find("X-Hop-9: 9\r\n"), std::string::npos) << out;
    EXPECT_NE(out.find("X-Kept: yes\r\n"), std::string::npos) << out;
}

TEST(RelayResponseParser, ChunkedFramingAndImplicitKeepAlive) {
    std::string out;
    relay_response_parser parser(out, 11, false);
    boost::system::error_code ec;
    feed(parser, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", ec);
    ASSERT_FALSE(ec) << ec.message();
    auto info = stamps();
    info.framing = body_framing::chunked;
    info.keep_alive = true;
    finish_response_head(out, info);
    EXPECT_EQ(out.rfind("HTTP/1.1 201 Created\r\n", 0), 0u) << out;
    EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
    EXPECT_EQ(out.find("Connection:"), std::string::npos);  // HTTP/1.1 keep-alive is implicit
    EXPECT_EQ(out.find("Content-Length"), std::string::npos);
}

TEST(RelayResponseParser, Http10ClientKeepAliveIsExplicitAndReasonFallsBack) {
    std::string out;
    relay_response_parser parser(out, 10, false);
    boost::system::error_code ec;
    feed(parser, "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", ec);
    ASSERT_FALSE(ec) << ec.message();
    auto info = stamps();
    info.client_version = 10;
    info.keep_alive = true;
    info.framing = body_framing::content_length;
    finish_response_head(out, info);
    EXPECT_EQ(out.rfind("HTTP/1.0 404 Not Found\r\n", 0), 0u) << out;
    EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);
}

TEST(RelayResponseParser, HeadAnswerKeepsItsContentLengthAndEncodingIsSeen) {
    std::string out;
    relay_response_parser parser(out, 11, true);
    parser.skip(true);
    boost::system::error_code ec;
    feed(parser, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Encoding: gzip\r\n\r\n", ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_TRUE(parser.is_done());
    EXPECT_TRUE(parser.encoded());
    EXPECT_NE(out.find("Content-Length: 1234\r\n"), std::string::npos) << out;
}

TEST(RelayResponseParser, BodyFillsTheGivenBufferThenAsksForAnother) {
    std::string out;
    relay_response_parser parser(out, 11, false);
    parser.eager(true);
    boost::system::error_code ec;
    const std::string_view head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    EXPECT_EQ(feed(parser, head, ec), head.size());
    ASSERT_FALSE(ec);
    EXPECT_EQ(feed(parser, "0123456789", ec), 0u);  // no buffer yet
    EXPECT_EQ(ec, http::error::need_buffer);
    char first[4];
    parser.set_buffer(first, sizeof first);
    ec = {};
    EXPECT_EQ(feed(parser, "0123456789", ec), 4u);
    EXPECT_EQ(ec, http::error::need_buffer);
    EXPECT_EQ(parser.buffer_left(), 0u);
    EXPECT_EQ(std::string_view(first, 4), "0123");
    char rest[16];
    parser.set_buffer(rest, sizeof rest);
    ec = {};
    EXPECT_EQ(feed(parser, "456789", ec), 6u);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_TRUE(parser.is_done());
    EXPECT_EQ(std::string_view(rest, sizeof rest - parser.buffer_left()), "456789");
}

TEST(ChunkSize, IsHexWithCrlf) {
    char out[24];
    EXPECT_EQ(std::string(out, format_chunk_size(out, 255)), "ff\r\n");
    EXPECT_EQ(std::string(out, format_chunk_size(out, 0x10000)), "10000\r\n");
}

TEST(RequestId, OnlyShortPrintableIdsAreKept) {
    EXPECT_TRUE(acceptable_request_id("abc-123"));
    EXPECT_FALSE(acceptable_request_id(""));
    EXPECT_FALSE(acceptable_request_id("a b"));
    EXPECT_FALSE(acceptable_request_id(std::string(200, 'a')));
}

TEST(ErrorResponse, JsonBodyWithCodeMessageAndRequestId) {
    auto res = error_response(http::status::not_found, "unknown_model", "no \"x\"\xff", "rid-1",
                              true);
    EXPECT_EQ(res.result(), http::status::not_found);
    EXPECT_EQ(res[http::field::content_type], "application/json");
    EXPECT_EQ(res["X-Request-Id"], "rid-1");
    auto body = nlohmann::json::parse(res.body());
    EXPECT_EQ(body["error"]["code"], "unknown_model");
    EXPECT_EQ(body["error"]["request_id"], "rid-1");
    EXPECT_TRUE(res.keep_alive());
    EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
    // Not routed to a version: no version or stage stamps.
    EXPECT_EQ(res.find("X-Stagegate-Version"), res.end());
    EXPECT_EQ(res.find("X-Stagegate-Stage"), res.end());
}

TEST(ErrorResponse, RoutedRequestNamesItsVersionAndStage) {
    auto res = error_response(http::status::bad_gateway, "upstream_connect_failed", "down", "rid-2",
                              false, 11, routed_to{"v2", "canary-5"});
    EXPECT_EQ(res.result(), http::status::bad_gateway);
    EXPECT_EQ(res["X-Stagegate-Version"], "v2");
    EXPECT_EQ(res["X-Stagegate-Stage"], "canary-5");
    EXPECT_EQ(res["X-Request-Id"], "rid-2");
    EXPECT_FALSE(res.keep_alive());
}

TEST(ClassifyRequestError, MapsParserErrorsToStatuses) {
    EXPECT_EQ(classify_request_error(http::error::header_limit).status,
              http::status::request_header_fields_too_large);
    EXPECT_EQ(classify_request_error(http::error::body_limit).status,
              http::status::payload_too_large);
    EXPECT_EQ(classify_request_error(http::error::bad_content_length).code,
              "invalid_content_length");
    EXPECT_EQ(classify_request_error(http::error::bad_method).status, http::status::bad_request);
}

// Every prefix of a good status line may still become one; garbage is known at its first
// wrong byte, and a line ending in a bare LF or a control character at its end.
TEST(CouldBeStatusLine, JudgesEachPrefix) {
    const std::string good = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (std::size_t n = 0; n <= good.size(); ++n) {
        EXPECT_TRUE(could_be_status_line(std::string_view(good).substr(0, n))) << n;
    }
    EXPECT_TRUE(could_be_status_line("HTTP/1.0 404 \r\n"));
    EXPECT_TRUE(could_be_status_line("HTTP/1.1 200 Fine\tand \x80\xff dandy"));
    for (std::string_view bad : {"FOO\r\n", "F", "http/1.1 200 OK\r\n", "HTTP/2.0 200 OK\r\n",
                                 "HTTP/1.2 200 OK\r\n", "HTTP/1.1 20x OK\r\n", "HTTP/1.1 200\r\n",
                                 "HTTP/1.1  200 OK\r\n", "HTTP/1.1 200 OK\n", "HTTP/1.1 200 OK\rX",
                                 "HTTP/1.1 200 O\x01K", "\r\nHTTP/1.1 200 OK\r\n"}) {
        EXPECT_FALSE(could_be_status_line(bad)) << bad;
    }
}

}  // namespace
}  // namespace stagegate::proxy
