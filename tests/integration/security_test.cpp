// Security of the data plane: smuggling-shaped requests, path tricks in model routing, forged
// forwarding headers, and the limits, each refused with nothing reaching a backend.
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

std::string code_of(const reply& r) {
    auto j = json::parse(r.body, nullptr, false);
    return j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
}

TEST(Security, PathTricksNeverReachAnotherModel) {
    auto s = stack::make();
    for (const char* path : {"/v1/models/other/../m:predict", "/v1/models/m/..%2fother:predict",
                             "/v1/models/%2e%2e/m:predict", "/v1/models/./m:predict",
                             "/v1/models/m%5c..:predict"}) {
        connection c(s.port);
        auto r = c.request("POST", path, "{}");
        EXPECT_EQ(r.status, 400u) << path;
        EXPECT_EQ(code_of(r), "bad_path") << path;
    }
    EXPECT_EQ(s.v1->requests() + s.v2->requests(), 0u);
    EXPECT_EQ(request(s.port, "POST", "/v1/models/m:predict", "{}").status, 200u);
}

TEST(Security, SmugglingShapesAreRefusedAndTheConnectionClosed) {
    auto s = stack::make();
    const std::vector<std::pair<std::string, unsigned>> requests = {
        // Transfer-Encoding that is not exactly chunked
        {"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         "2\r\n{}\r\n0\r\n\r\n", 501},
        // a space before the colon
        {"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}", 400},
        // a bare LF inside a header value is not a line end
        {"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-A: a\nContent-Length: 2\r\n\r\n{}", 400},
        // two requests where the body length is ambiguous
        {"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
         "Content-Length: 40\r\n\r\n{}GET /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n\r\n", 400},
    };
    for (const auto& [raw, status] : requests) {
        connection c(s.port);
        auto r = c.raw(raw);
        EXPECT_EQ(r.status, status) << raw;
        EXPECT_FALSE(r.keep_alive) << raw;
        EXPECT_TRUE(c.peer_closed()) << raw;
    }
    EXPECT_EQ(s.v1->requests() + s.v2->requests(), 0u);
}

// RFC 9112 5.2 lets a server either reject an obs-fold or replace it with spaces before
// forwarding; the parser does the latter, so no line break ever reaches a backend.
TEST(Security, ObsFoldIsUnfoldedBeforeForwarding) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-Mock-Echo: 1\r\n"
                   "X-A: one\r\n two\r\nContent-Length: 2\r\n\r\n{}");
    ASSERT_EQ(r.status, 200u) << r.body;
    auto value = json::parse(r.body)["received_headers"]["x-a"].get<std::string>();
    EXPECT_EQ(value.find_first_of("\r\n"), std::string::npos) << value;
    EXPECT_NE(value.find("one"), std::string::npos);
    EXPECT_NE(value.find("two"), std::string::npos);
}

TEST(Security, ForwardingHeadersCannotBeForged) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.request("POST", "/v1/models/m:predict", "{}",
                       {{"X-Mock-Echo", "1"},
                        {"X-Forwarded-For", "10.9.9.9"},
                        {"X-Forwarded-Proto", "https"},
                        {"Connection", "keep-alive, X-Secret"},
                        {"X-Secret", "hop-by-hop by the client's say"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    auto body = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    const auto& echoed = body["received_headers"];
    // The client's claim is kept but the peer we saw is appended: nobody can erase the hop.
    EXPECT_EQ(echoed["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
    // The scheme is what the gateway's listener speaks, not what the client says.
    EXPECT_EQ(echoed["x-forwarded-proto"], "http");
    EXPECT_FALSE(echoed.contains("x-secret"));
}

TEST(Security, HeaderAndBodyLimits) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.limit.max_header_bytes = 4096;
        c.limit.max_request_body_bytes = 1024;
    });
    {
        connection c(s.port);
        std::string many;
        for (int i = 0; i < 1000; ++i) {
            many += "X-H" + std::to_string(i) + ": v\r\n";  // small headers, 3x the limit
        }
        auto r = c.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n" + many +
                       "Content-Length: 2\r\n\r\n{}");
        EXPECT_EQ(r.status, 431u);
    }
    {
        connection c(s.port);
        auto r = c.request("POST", "/v1/models/m:predict", std::string(2048, 'x'));
        EXPECT_EQ(r.status, 413u);
    }
    EXPECT_EQ(s.v1->requests(), 0u);
    EXPECT_EQ(request(s.port, "POST", "/v1/models/m:predict", "{}").status, 200u);
}

}  // namespace
}  // namespace stagegate::test
