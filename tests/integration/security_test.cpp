// Security of the data plane: smuggling-shaped requests, path tricks in model routing, forged
// forwarding headers, trailers, Host, headers only the gateway may set, and the limits, each
// refused with nothing reaching a backend or kept from the backend and the client.
#include "support/admin.hpp"
#include "support/raw_backend.hpp"
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

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

// RFC 9112 5.2 lets a server reject an obs-fold with 400 or unfold it; nginx rejects it, and
// unfolded, "Transfer-Encoding:\r\n chunked" is chunked to the gateway but no
// Transfer-Encoding to a server in front of it that does not unfold. Refused, in the head and
// in a chunked body's trailers, and nothing reaches a backend.
TEST(Security, ObsFoldInARequestIs400) {
    auto s = stack::make();
    for (const char* raw : {
             "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n"
             "\r\n2\r\n{}\r\n0\r\n\r\n",
             "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x\r\n chunked\r\n"
             "\r\n2\r\n{}\r\n0\r\n\r\n",
             "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-A: one\r\n\ttwo\r\n"
             "Content-Length: 2\r\n\r\n{}",
             "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "2\r\n{}\r\n0\r\nX-T: a\r\n b\r\n\r\n",
         }) {
        connection c(s.port);
        auto r = c.raw(raw);
        EXPECT_EQ(r.status, 400u) << raw;
        EXPECT_EQ(code_of(r), "obs_fold") << raw << r.body;
        EXPECT_TRUE(c.peer_closed()) << raw;
    }
    EXPECT_EQ(s.v1->requests() + s.v2->requests(), 0u);
    // Blanks after the colon and an empty value are no fold.
    connection c(s.port);
    auto r = c.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-A: \t one\r\nX-B:\r\n"
                   "X-C: \r\nContent-Length: 2\r\n\r\n{}");
    EXPECT_EQ(r.status, 200u) << r.body;
}

// A chunked body whose lines end in a bare LF is refused at once (before: 408 once the request
// timeout passed, the bytes buffered meanwhile), and so is a chunk-size line or a trailer
// section longer than a head may be, however it goes on.
TEST(Security, ChunkFramingWithBareLfOrWithoutEndIs400AtOnce) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.client.request = std::chrono::seconds(20);  // longer than the client waits
        c.limit.max_header_bytes = 4096;
    });
    const std::string head =
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (const std::string& body : {std::string("2\n{}\n0\n\n"), std::string("2\r\n{}\r\n0\n\n"),
                                    std::string("2\r\n{}\r\n0\r\nX-T: 1\n\n"),
                                    std::string(5000, '0'),
                                    "0\r\nX-T: " + std::string(5000, 'a')}) {
        SCOPED_TRACE(body.substr(0, 40));
        connection c(s.port, false, std::chrono::seconds(5));
        ASSERT_TRUE(c.write_raw(head + body));  // and nothing more: no end will come
        auto r = c.read_reply();
        EXPECT_EQ(r.status, 400u) << r.error << r.body;
        EXPECT_TRUE(c.peer_closed());
    }
    EXPECT_EQ(s.v1->requests() + s.v2->requests(), 0u);
    // A body in small pieces with CRLFs, trailers included, is read as before.
    connection c(s.port);
    auto r = c.raw(head + "2\r\n{}\r\n0\r\nX-T: 1\r\n\r\n");
    EXPECT_EQ(r.status, 200u) << r.body;
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

// The first head's deadline runs from the accept: bytes that come late do not re-arm it (they
// did, and a client that sent one byte just before the request timeout had it once more).
TEST(Security, ANewConnectionsFirstHeadIsDueWithinTheRequestTimeoutFromTheAccept) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.client.request = std::chrono::milliseconds(1000);
        c.client.idle = std::chrono::seconds(60);
    });
    const auto connected = std::chrono::steady_clock::now();
    connection c(s.port, false, std::chrono::seconds(5));
    // A slow client: its first byte at 70 % of the timeout (a pace, not a synchronisation).
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    ASSERT_TRUE(c.write_raw("G"));
    auto r = c.read_reply();
    const auto took = std::chrono::steady_clock::now() - connected;
    EXPECT_EQ(r.status, 408u) << r.error;
    // Due at 1.0 s (and a 10 ms tick); re-armed, it came at 1.7 s. A 400 ms stall of the
    // gateway's worker would fail this.
    EXPECT_LT(took, std::chrono::milliseconds(1500));
}

// The worker's deadline ticker looks only at the sessions its deadline wheel has due (with
// 1,000 open streams, looking at every session every 10 ms cost more than relaying their
// events). A session among many must still meet its deadline: a keep-alive connection idle
// for its 1 s, behind 1,500 newer connections that wait within their first-head deadline (a
// minute), is closed. (An earlier ticker that looked only at the first 1,024 sessions of its
// list, the newest, never got to it: this failed then.)
TEST(Security, AnIdleSessionAmongManyStillMeetsItsDeadline) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.client.request = std::chrono::seconds(60);
        c.client.idle = std::chrono::seconds(1);
    });
    connection idle(s.port, false, std::chrono::seconds(10));
    ASSERT_EQ(idle.request("POST", "/v1/models/m:predict", "{}").status, 200u);
    std::vector<std::unique_ptr<connection>> newer;
    for (int i = 0; i < 1500; ++i) {
        newer.push_back(std::make_unique<connection>(s.port));
        ASSERT_TRUE(newer.back()->connected()) << "connection " << i;
    }
    EXPECT_TRUE(idle.peer_closed());  // within its 10 s read timeout
    EXPECT_EQ(request(s.port, "POST", "/v1/models/m:predict", "{}").status, 200u);
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
