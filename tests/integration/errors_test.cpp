// Every error the data plane answers, each with its status and JSON body, and the process
// still serving afterwards.
#include "support/ports.hpp"
#include "support/raw_backend.hpp"
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

// Asserts the status and the JSON error code, and that the request id is echoed.
void expect_error(const reply& r, unsigned status, const std::string& code) {
    ASSERT_EQ(r.status, status) << r.error << " " << r.body;
    auto body = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body["error"]["code"], code) << r.body;
    EXPECT_FALSE(body["error"]["message"].get<std::string>().empty());
    EXPECT_EQ(body["error"]["request_id"], r.header("x-request-id"));
    EXPECT_EQ(r.header("content-type"), "application/json");
}

void expect_still_serving(std::uint16_t port) {
    EXPECT_EQ(request(port, "POST", "/v1/models/m:predict", predict_body).status, 200u);
}

TEST(Errors, UnknownModelAndNoRouteAre404) {
    auto s = stack::make();
    expect_error(request(s.port, "POST", "/v1/models/nope:predict", predict_body), 404,
                 "unknown_model");
    expect_error(request(s.port, "POST", "/v2/models/nope/infer", "{}"), 404, "unknown_model");
    expect_error(request(s.port, "GET", "/index.html"), 404, "no_route");
    expect_error(request(s.port, "POST", "/v1/chat/completions", R"({"model":"nope"})"), 404,
                 "unknown_model");
    expect_still_serving(s.port);
}

TEST(Errors, OpenAiBodyWithoutModelIs400) {
    auto s = stack::make();
    expect_error(request(s.port, "POST", "/v1/chat/completions", R"({"messages":[]})"), 400,
                 "missing_model");
    expect_error(request(s.port, "POST", "/v1/chat/completions", "not json"), 400,
                 "missing_model");
}

TEST(Errors, UnknownModelKeepsTheConnectionAlive) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.request("POST", "/v1/models/nope:predict", predict_body);
    expect_error(r, 404, "unknown_model");
    EXPECT_TRUE(r.keep_alive);
    EXPECT_EQ(c.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
}

TEST(Errors, MalformedRequestIs400AndCloses) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.raw("GARBAGE\r\n\r\n");
    expect_error(r, 400, "bad_request");
    EXPECT_FALSE(r.keep_alive);
    EXPECT_TRUE(c.peer_closed());
    connection c2(s.port);
    expect_error(c2.raw("POST /v1/models/m:predict HTTP/9.9\r\n\r\n"), 400, "bad_request");
    expect_still_serving(s.port);
}

TEST(Errors, HeaderTooLargeIs431) {
    auto s = stack::make(0, 1, [](config::gateway& c) { c.limit.max_header_bytes = 4096; });
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Big", std::string(8000, 'a')}});
    expect_error(r, 431, "header_too_large");
    expect_still_serving(s.port);
}

TEST(Errors, BodyTooLargeIs413) {
    auto s = stack::make(0, 1, [](config::gateway& c) { c.limit.max_request_body_bytes = 1024; });
    expect_error(request(s.port, "POST", "/v1/models/m:predict", std::string(4096, 'x')), 413,
                 "body_too_large");
    connection c(s.port);  // chunked bodies are limited as they arrive
    std::string chunk(1000, 'y');
    auto r = c.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3e8\r\n" + chunk + "\r\n3e8\r\n" + chunk + "\r\n0\r\n\r\n");
    expect_error(r, 413, "body_too_large");
    expect_still_serving(s.port);
}

TEST(Errors, ContentLengthWithTransferEncodingIs400) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    ASSERT_EQ(r.status, 400u) << r.error;
    EXPECT_FALSE(r.keep_alive);
    EXPECT_EQ(s.v1->requests(), 0u);  // nothing smuggled through
}

TEST(Errors, InvalidContentLengthIs400) {
    auto s = stack::make();
    {
        connection c(s.port);
        expect_error(c.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: abc\r\n\r\n"),
                     400, "invalid_content_length");
    }
    {
        connection c(s.port);
        expect_error(c.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
                     400, "invalid_content_length");
    }
    EXPECT_EQ(s.v1->requests(), 0u);
    expect_still_serving(s.port);
}

// A version's only endpoint is never ejected (nginx ignores max_fails for a group of one
// server): each request makes a fresh connect attempt and gets 502 while it is down, never 503.
TEST(Errors, ConnectFailureIs502AndAnOnlyEndpointIsTriedAgain) {
    refused_port dead;  // held for the whole test: no other test's listener can appear on it
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[0].endpoints[0].port = dead.port();
    });
    for (std::uint64_t attempt = 1; attempt <= 3; ++attempt) {
        SCOPED_TRACE(attempt);
        expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body), 502,
                     "upstream_connect_failed");
        EXPECT_TRUE(
            wait_until([&] { return s.gateway->totals().upstream_connect_failures == attempt; }));
    }
    // The other version is unaffected.
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Stagegate-Force-Version", "v2"}});
    EXPECT_EQ(r.status, 200u);
}

// No 503 window after a version's only endpoint failed: the first request after it is back
// gets 200, however long fail_timeout is.
TEST(Errors, OnlyEndpointDownThenBackAnswersAtOnce) {
    // The port is held from the start (bound, not listening: connects are refused), so no
    // other test can take it between "down" and "back".
    raw_backend backend(false);
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[0].endpoints[0].port = backend.port();
        c.models[0].health.fail_timeout = std::chrono::minutes(10);
    });
    expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body), 502,
                 "upstream_connect_failed");
    backend.listen();
    connection c(s.port);
    ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 2\r\n\r\n{}"));
    ASSERT_TRUE(backend.read_request());
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
    auto r = c.read_reply();
    EXPECT_EQ(r.status, 200u) << r.error << r.body;
    EXPECT_EQ(r.header("x-stagegate-version"), "v1");
}

// With two endpoints, the one down is ejected after its failed connect (max_fails 1) and the
// other takes every request: one connect failure in all, no error for the client.
TEST(Errors, OneOfTwoEndpointsDownIsEjected) {
    raw_backend dead_held(false);  // bound, refusing connects
    const auto dead = dead_held.port();
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        auto live = c.models[0].versions[0].endpoints[0];
        c.models[0].versions[0].endpoints = {{"127.0.0.1", dead}, live};
        c.models[0].health.fail_timeout = std::chrono::minutes(10);
    });
    for (int i = 0; i < 20; ++i) {
        auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body);
        ASSERT_EQ(r.status, 200u) << r.body;
    }
    ASSERT_TRUE(wait_until([&] { return s.v1->requests() == 20; }));
    ASSERT_TRUE(wait_until([&] { return s.gateway->totals().upstream_connect_failures >= 1; }));
    // The down endpoint was tried once, then skipped by the 19 requests after it.
    EXPECT_EQ(s.gateway->totals().upstream_connect_failures, 1u);
}

// Every endpoint of a version down: the last one in service is never ejected, so requests
// keep trying it and get 502 (the backend's failure), never 503.
TEST(Errors, EveryEndpointDownIsStillTriedAndGives502) {
    raw_backend dead_a_held(false);  // bound, refusing connects
    const auto dead_a = dead_a_held.port();
    raw_backend dead_b_held(false);  // bound, refusing connects
    const auto dead_b = dead_b_held.port();
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[0].endpoints = {{"127.0.0.1", dead_a}, {"127.0.0.1", dead_b}};
    });
    for (std::uint64_t i = 1; i <= 5; ++i) {
        SCOPED_TRACE(i);
        expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body), 502,
                     "upstream_connect_failed");
        // At least one fresh connect attempt per request.
        EXPECT_TRUE(wait_until([&] { return s.gateway->totals().upstream_connect_failures >= i; }));
    }
}

// Panic mode: an endpoint one version ejected can be another version's only endpoint. With
// every endpoint of that version ejected, its requests still go to them (502 while down, not
// 503), and the first one after the endpoint is back gets 200.
TEST(Errors, VersionWithEveryEndpointEjectedStillTriesThem) {
    raw_backend backend(false);  // held, refusing connects: down, and no other test's port
    const auto shared = backend.port();
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        auto& versions = c.models[0].versions;
        auto live = versions[0].endpoints[0];
        versions[0].endpoints = {{"127.0.0.1", shared}, live};
        versions[1].endpoints = {{"127.0.0.1", shared}};
        c.models[0].health.fail_timeout = std::chrono::minutes(10);
    });
    // v1 tries the shared endpoint first, ejects it (v1 has another) and answers from v1's.
    ASSERT_EQ(request(s.port, "POST", "/v1/models/m:predict", predict_body).status, 200u);
    ASSERT_TRUE(wait_until([&] { return s.gateway->totals().upstream_connect_failures == 1; }));
    const header_list force_v2{{"X-Stagegate-Force-Version", "v2"}};
    expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body, force_v2), 502,
                 "upstream_connect_failed");
    EXPECT_TRUE(wait_until([&] { return s.gateway->totals().upstream_connect_failures == 2; }));
    backend.listen();
    connection c(s.port);
    ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                            "X-Stagegate-Force-Version: v2\r\nContent-Length: 2\r\n\r\n{}"));
    ASSERT_TRUE(backend.read_request());
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
    auto r = c.read_reply();
    EXPECT_EQ(r.status, 200u) << r.error << r.body;
    EXPECT_EQ(r.header("x-stagegate-version"), "v2");
}

TEST(Errors, FailedConnectIsRetriedOnAnotherEndpoint) {
    raw_backend dead_held(false);  // bound, refusing connects
    const auto dead = dead_held.port();
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        auto live = c.models[0].versions[0].endpoints[0];
        c.models[0].versions[0].endpoints = {{"127.0.0.1", dead}, live};
    });
    for (int i = 0; i < 20; ++i) {
        auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body);
        ASSERT_EQ(r.status, 200u) << r.body;
    }
    EXPECT_GE(s.gateway->totals().upstream_connect_failures, 1u);
}

TEST(Errors, UpstreamTimeoutIs504) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.models[0].timeouts.first_byte = std::chrono::milliseconds(200);
    });
    expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Mock-Delay-Ms", "3000"}}),
                 504, "upstream_timeout");
    expect_still_serving(s.port);
}

// The gateway's own error answer to a request routed to a version names that version and
// stage, as a relayed answer does.
TEST(Errors, ConnectFailureNamesTheVersionAndStage) {
    raw_backend dead_held(false);  // bound, refusing connects
    const auto dead = dead_held.port();
    auto s = stack::make(
        0, 1, [&](config::gateway& c) { c.models[0].versions[1].endpoints[0].port = dead; });
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Stagegate-Force-Version", "v2"}});
    expect_error(r, 502, "upstream_connect_failed");
    EXPECT_EQ(r.header("x-stagegate-version"), "v2");
    EXPECT_EQ(r.header("x-stagegate-stage"), "canary");
}

TEST(Errors, UpstreamTimeoutNamesTheVersionAndStage) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.models[0].timeouts.first_byte = std::chrono::milliseconds(200);
    });
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Mock-Delay-Ms", "3000"}});
    expect_error(r, 504, "upstream_timeout");
    EXPECT_EQ(r.header("x-stagegate-version"), "v1");
    EXPECT_EQ(r.header("x-stagegate-stage"), "canary");
}

// Errors answered before routing assigned a version name none.
TEST(Errors, ErrorsBeforeRoutingNameNoVersion) {
    auto s = stack::make();
    auto unknown = request(s.port, "POST", "/v1/models/nope:predict", predict_body);
    expect_error(unknown, 404, "unknown_model");
    auto bad_version = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                               {{"X-Stagegate-Force-Version", "v9"}});
    expect_error(bad_version, 400, "unknown_version");
    for (const auto* r : {&unknown, &bad_version}) {
        EXPECT_EQ(r->headers.count("x-stagegate-version"), 0u);
        EXPECT_EQ(r->headers.count("x-stagegate-stage"), 0u);
    }
}

TEST(Errors, UpstreamResetIs502AndNeverRetried) {
    auto s = stack::make();
    expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Mock-Reset", "1"}}),
                 502, "upstream_reset");
    EXPECT_EQ(s.v1->requests(), 1u);  // the request reached the backend: no retry
    // The same on a pooled connection: a reused connection that fails after the request was
    // written is not retried either (only one that fails the write with nothing sent is).
    ASSERT_EQ(request(s.port, "POST", "/v1/models/m:predict", predict_body).status, 200u);
    ASSERT_EQ(s.v1->connections_accepted(), 2u);
    expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Mock-Reset", "1"}}),
                 502, "upstream_reset");
    EXPECT_EQ(s.v1->connections_accepted(), 2u);  // it went out on the pooled connection
    EXPECT_EQ(s.v1->requests(), 3u);
    expect_still_serving(s.port);
}

TEST(Errors, MalformedUpstreamAnswerIs502) {
    auto s = stack::make();
    expect_error(request(s.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Mock-Garbage", "1"}}),
                 502, "upstream_protocol_error");
    expect_still_serving(s.port);
    EXPECT_EQ(s.v1->connections_accepted(), 2u);  // the bad connection was not reused
}

TEST(Errors, UpstreamClosingMidBody) {
    // Cut before the head was whole: nothing reached the client, which gets a clean 502.
    {
        raw_backend backend;
        auto s = stack::make(0, 1, [&](config::gateway& c) {
            c.models[0].versions[0].endpoints = {{"127.0.0.1", backend.port()}};
        });
        connection c(s.port);
        ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 2\r\n\r\n{}"));
        ASSERT_TRUE(backend.read_request());
        ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Le"));
        backend.close();
        expect_error(c.read_reply(), 502, "upstream_reset");
    }
    // Cut after the head and part of the body went out (relayed as they arrived): the client
    // sees a short body and a closed connection, never a complete-looking answer.
    auto s = stack::make();
    for (const char* body_bytes : {"0", "100000"}) {
        SCOPED_TRACE(body_bytes);
        connection c(s.port);
        auto r = c.request("POST", "/v1/models/m:predict", predict_body,
                           {{"X-Mock-Truncate", "1"}, {"X-Mock-Body-Bytes", body_bytes}});
        EXPECT_EQ(r.status, 0u);
        EXPECT_TRUE(c.peer_closed());
    }
    expect_still_serving(s.port);
    EXPECT_EQ(s.v1->connections_accepted(), 3u);  // neither cut connection was reused
}

TEST(Errors, SlowClientRequestIs408AndIdleConnectionsClose) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.client.request = std::chrono::milliseconds(300);
        c.client.idle = std::chrono::milliseconds(300);
    });
    connection slow(s.port);
    auto r = slow.raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n");  // never finished
    expect_error(r, 408, "request_timeout");
    connection idle(s.port);
    ASSERT_EQ(idle.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
    EXPECT_TRUE(idle.peer_closed());  // closed after the idle timeout, within the client's 10 s
}

TEST(Errors, UpstreamErrorStatusPassesThrough) {
    auto s = stack::make();
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Mock-Status", "503"}});
    EXPECT_EQ(r.status, 503u);
    EXPECT_EQ(json::parse(r.body)["error"]["code"], "mock_failure");
    EXPECT_EQ(r.header("x-stagegate-version"), "v1");
}

TEST(Errors, ConnectionsOverTheLimitAreShedWith503) {
    auto s = stack::make(0, 1, [](config::gateway& c) { c.limit.max_connections_per_worker = 2; });
    connection a(s.port);
    connection b(s.port);
    ASSERT_EQ(a.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
    ASSERT_EQ(b.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
    connection c(s.port);
    auto r = c.read_reply();  // answered without sending anything
    expect_error(r, 503, "overloaded");
    EXPECT_FALSE(r.keep_alive);
    EXPECT_EQ(a.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
}

}  // namespace
}  // namespace stagegate::test
