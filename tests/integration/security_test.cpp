// Security of the data plane: smuggling-shaped requests, path tricks in model routing, forged
// forwarding headers, trailers, Host, headers only the gateway may set, and the limits, each
// refused with nothing reaching a backend or kept from the backend and the client.
#include "support/raw_backend.hpp"
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

// A new connection's first head is read under the request timeout, not the idle one.
TEST(Security, ANewConnectionsFirstHeadIsUnderTheRequestTimeout) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.client.request = std::chrono::milliseconds(300);
        c.client.idle = std::chrono::seconds(60);
    });
    connection c(s.port, false, std::chrono::seconds(5));
    ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHo"));
    auto r = c.read_reply();
    EXPECT_EQ(r.status, 408u) << r.error;
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

std::size_t occurrences(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
        ++n;
    }
    return n;
}

stack stack_on(raw_backend& backend) {
    return stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[0].endpoints = {{"127.0.0.1", backend.port()}};
    });
}

// RFC 9110 6.5.1: trailer fields must not become header fields. Before, Beast's parser added
// them to the head: a trailer's second Host, Authorization and force-version header reached
// the backend as headers, and the force-version trailer chose the version (3 of 3 to v2).
TEST(Security, RequestTrailersNeverBecomeHeadersNorRoute) {
    raw_backend backend;
    auto s = stack_on(backend);
    connection c(s.port);
    ASSERT_TRUE(c.write_raw(
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Trailer: Host\r\n\r\n2\r\n{}\r\n0\r\nHost: evil\r\nAuthorization: Bearer stolen\r\n"
        "X-User-Id: someone-else\r\nX-Stagegate-Force-Version: v2\r\n\r\n"));
    ASSERT_TRUE(backend.read_request());  // v1's endpoint: the trailer did not route it to v2
    const auto& forwarded = backend.last_request();
    EXPECT_EQ(occurrences(forwarded, "Host:"), 1u) << forwarded;
    EXPECT_NE(forwarded.find("Host: x\r\n"), std::string::npos) << forwarded;
    for (const char* leaked : {"evil", "Authorization", "someone-else", "Force-Version"}) {
        EXPECT_EQ(forwarded.find(leaked), std::string::npos) << leaked << " in " << forwarded;
    }
    EXPECT_NE(forwarded.find("\r\n\r\n{}"), std::string::npos) << forwarded;
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
    const auto answer = c.read_until("{}");
    EXPECT_NE(answer.find("X-Stagegate-Version: v1"), std::string::npos) << answer;
}

TEST(Security, HostMustBePresentOnceAndAHost) {
    auto s = stack::make();
    const std::vector<std::pair<std::string, std::string>> requests = {
        {"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", "missing_host"},
        {"POST /v1/models/m:predict HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}",
         "bad_host"},
        {"POST /v1/models/m:predict HTTP/1.1\r\nHost: a b\r\nContent-Length: 2\r\n\r\n{}",
         "bad_host"},
        // equal values too: the README promises 400 for any repeated Content-Length
        {"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
         "Content-Length: 2\r\n\r\n{}", "invalid_content_length"},
    };
    for (const auto& [raw, code] : requests) {
        connection c(s.port);
        auto r = c.raw(raw);
        EXPECT_EQ(r.status, 400u) << raw;
        EXPECT_EQ(code_of(r), code) << raw;
        EXPECT_TRUE(c.peer_closed()) << raw;
    }
    EXPECT_EQ(s.v1->requests() + s.v2->requests(), 0u);
    // HTTP/1.0 needs no Host.
    connection c(s.port);
    EXPECT_EQ(c.raw("POST /v1/models/m:predict HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}").status,
              200u);
}

// RFC 9112 3.2.2: a server must accept the absolute form; its authority replaces Host.
TEST(Security, AbsoluteFormTargetsAreServedWithTheirAuthorityAsHost) {
    raw_backend backend;
    auto s = stack_on(backend);
    connection c(s.port);
    ASSERT_TRUE(c.write_raw("POST http://models.example:8080/v1/models/m:predict?x=1 HTTP/1.1\r\n"
                            "Host: other\r\nContent-Length: 2\r\n\r\n{}"));
    ASSERT_TRUE(backend.read_request());
    const auto& forwarded = backend.last_request();
    EXPECT_EQ(forwarded.rfind("POST /v1/models/m:predict?x=1 HTTP/1.1\r\n", 0), 0u) << forwarded;
    EXPECT_NE(forwarded.find("Host: models.example:8080\r\n"), std::string::npos) << forwarded;
    EXPECT_EQ(forwarded.find("other"), std::string::npos) << forwarded;
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
    EXPECT_NE(c.read_until("{}").find("200 OK"), std::string::npos);
}

// The gateway never forwards Upgrade (hop-by-hop), so a backend's 101 is unsolicited: 502, as
// HAProxy answers, not a "chunked 101" relayed to the client.
TEST(Security, AnUnrequested101FromABackendIsA502) {
    raw_backend backend;
    auto s = stack_on(backend);
    connection c(s.port);
    ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Content-Length: 2\r\n\r\n{}"));
    ASSERT_TRUE(backend.read_request());
    EXPECT_EQ(backend.last_request().find("websocket"), std::string::npos)
        << backend.last_request();
    ASSERT_TRUE(backend.send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n\r\n"));
    auto r = c.read_reply();
    EXPECT_EQ(r.status, 502u) << r.body;
    EXPECT_EQ(code_of(r), "upstream_protocol_error") << r.body;
    EXPECT_NE(r.body.find("101"), std::string::npos) << r.body;
}

TEST(Security, HeadersOnlyTheGatewaySetsComeFromTheGatewayAlone) {
    raw_backend backend;
    auto s = stack_on(backend);
    connection c(s.port);
    ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                            "X-Stagegate-Mirror: 1\r\nX-Forwarded-For: 10.0.0.1\r\n"
                            "X-Forwarded-For: 10.0.0.2\r\nX-Request-Id: client-id\r\n"
                            "Content-Length: 2\r\n\r\n{}"));
    ASSERT_TRUE(backend.read_request());
    const auto& forwarded = backend.last_request();
    // A client cannot pass live traffic off as the gateway's shadow copy.
    EXPECT_EQ(forwarded.find("Mirror"), std::string::npos) << forwarded;
    // Every forwarded-for hop is kept, in order, then the peer the gateway saw.
    EXPECT_NE(forwarded.find("X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1\r\n"),
              std::string::npos)
        << forwarded;
    EXPECT_EQ(occurrences(forwarded, "X-Forwarded-For"), 1u) << forwarded;
    // A backend's own stamps never reach the client ahead of the gateway's.
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nX-Stagegate-Version: v2\r\n"
                             "X-Stagegate-Stage: forged\r\nX-Request-Id: backend-id\r\n"
                             "Content-Length: 2\r\n\r\n{}"));
    const auto answer = c.read_until("{}");
    EXPECT_EQ(occurrences(answer, "X-Stagegate-Version"), 1u) << answer;
    EXPECT_NE(answer.find("X-Stagegate-Version: v1\r\n"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("forged"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("backend-id"), std::string::npos) << answer;
    EXPECT_NE(answer.find("X-Request-Id: client-id\r\n"), std::string::npos) << answer;
}

}  // namespace
}  // namespace stagegate::test
