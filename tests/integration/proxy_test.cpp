// Proxying over real loopback sockets: routing, header handling, keep-alive reuse, bodies, TLS.
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <future>
#include <latch>
#include <regex>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

TEST(Proxy, PredictIsProxiedAndStampedWithVersionStageAndRequestId) {
    auto s = stack::make();
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body);
    ASSERT_EQ(r.status, 200u) << r.error << r.body;
    EXPECT_EQ(r.header("x-stagegate-version"), "v1");
    EXPECT_EQ(r.header("x-stagegate-stage"), "canary");
    EXPECT_TRUE(std::regex_match(r.header("x-request-id"),
                                 std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
        << r.header("x-request-id");
    auto body = json::parse(r.body);
    EXPECT_EQ(body["model_version"], "v1");
    EXPECT_EQ(body["predictions"].size(), 1u);
}

// OpenAI's model discovery (models.list() in the SDKs) is answered by the gateway, on a
// kept-alive connection that then proxies a chat completion as usual.
TEST(Proxy, OpenAiModelListIsAnsweredByTheGateway) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.request("GET", "/v1/models");
    ASSERT_EQ(r.status, 200u) << r.error << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_FALSE(r.header("x-request-id").empty());
    auto list = json::parse(r.body);
    EXPECT_EQ(list["object"], "list");
    ASSERT_EQ(list["data"].size(), 1u);
    EXPECT_EQ(list["data"][0]["id"], "m");
    auto head = c.request("HEAD", "/v1/models");
    EXPECT_EQ(head.status, 200u);
    EXPECT_TRUE(head.body.empty());
    EXPECT_EQ(c.request("DELETE", "/v1/models").status, 405u);
    auto chat = c.request("POST", "/v1/chat/completions", R"({"model":"m","messages":[]})");
    EXPECT_EQ(chat.status, 200u) << chat.body;
    EXPECT_EQ(chat.header("x-stagegate-version"), "v1");
}

TEST(Proxy, ClientRequestIdIsKeptAndForwarded) {
    auto s = stack::make();
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Request-Id", "abc-123"}, {"X-Mock-Echo", "1"}});
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("x-request-id"), "abc-123");
    EXPECT_EQ(json::parse(r.body)["received_headers"]["x-request-id"], "abc-123");
}

TEST(Proxy, ForwardingHeadersAddedAndHopByHopRemoved) {
    auto s = stack::make();
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Mock-Echo", "1"},
                      {"Connection", "keep-alive, X-Drop-Me"},
                      {"X-Drop-Me", "secret"},
                      {"Keep-Alive", "timeout=5"},
                      {"X-Forwarded-For", "203.0.113.7"},
                      {"Via", "1.1 edge"},
                      {"X-Stagegate-Force-Version", "v1"},
                      {"X-Custom", "kept"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    auto h = json::parse(r.body)["received_headers"];
    EXPECT_EQ(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    EXPECT_EQ(h["x-forwarded-proto"], "http");
    EXPECT_EQ(h["via"], "1.1 edge, 1.1 stagegate");
    EXPECT_EQ(h["x-custom"], "kept");
    EXPECT_FALSE(h.contains("x-drop-me"));
    EXPECT_FALSE(h.contains("keep-alive"));
    EXPECT_FALSE(h.contains("connection"));
    EXPECT_FALSE(h.contains("x-stagegate-force-version"));
    EXPECT_EQ(h["x-request-id"], r.header("x-request-id"));
}

TEST(Proxy, KServeV2AndOpenAiShapesRoute) {
    auto s = stack::make();
    auto v2 = request(s.port, "POST", "/v2/models/m/infer",
                      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}]})");
    ASSERT_EQ(v2.status, 200u) << v2.body;
    EXPECT_EQ(json::parse(v2.body)["outputs"][0]["data"].size(), 2u);
    auto chat = request(s.port, "POST", "/v1/chat/completions",
                        R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
    ASSERT_EQ(chat.status, 200u) << chat.body;
    EXPECT_EQ(chat.header("x-stagegate-version"), "v1");
    EXPECT_EQ(json::parse(chat.body)["choices"][0]["message"]["content"], "answer from v1");
}

TEST(Proxy, ForcedVersionWhenAllowed) {
    auto s = stack::make();
    for (int i = 0; i < 20; ++i) {
        auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Stagegate-Force-Version", "v2"}});
        ASSERT_EQ(r.status, 200u);
        ASSERT_EQ(r.header("x-stagegate-version"), "v2");
    }
    auto bad = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                       {{"X-Stagegate-Force-Version", "v9"}});
    EXPECT_EQ(bad.status, 400u);
    EXPECT_EQ(json::parse(bad.body)["error"]["code"], "unknown_version");
}

TEST(Proxy, ForcedVersionIgnoredWhenNotAllowed) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.models[0].split.allow_force_version = false;
    });
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Stagegate-Force-Version", "v2"}});
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("x-stagegate-version"), "v1");
}

TEST(Proxy, UpstreamConnectionsAreReused) {
    auto s = stack::make();
    {
        connection c(s.port);
        for (int i = 0; i < 200; ++i) {
            auto r = c.request("POST", "/v1/models/m:predict", predict_body);
            ASSERT_EQ(r.status, 200u) << r.error;
            ASSERT_TRUE(r.keep_alive);
        }
    }
    // New client connections on the same worker reuse the pooled upstream connection too.
    for (int i = 0; i < 50; ++i) {
        ASSERT_EQ(request(s.port, "POST", "/v1/models/m:predict", predict_body).status, 200u);
    }
    EXPECT_EQ(s.v1->requests(), 250u);
    EXPECT_EQ(s.v1->connections_accepted(), 1u);
    EXPECT_EQ(s.gateway->totals().upstream_connects, 1u);
}

TEST(Proxy, UpstreamPoolKeepsAtMostItsIdleLimitAndDropsIdleConnectionsOnTime) {
    // The idle timeout is the time the test has to see the 2 idle connections before they go:
    // long enough for a loaded machine's scheduling, short enough to wait out.
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.pool.max_idle_per_endpoint = 2;
        c.pool.idle_timeout = std::chrono::milliseconds(1000);
    });
    // Six requests at once (connected first, then released together, so a slow thread start
    // cannot make them one after the other): each needs an upstream connection of its own.
    constexpr int n = 6;
    std::latch go(n);
    std::vector<std::future<reply>> concurrent;
    for (int i = 0; i < n; ++i) {
        concurrent.push_back(std::async(std::launch::async, [&] {
            connection c(s.port);
            go.arrive_and_wait();
            return c.request("POST", "/v1/models/m:predict", predict_body,
                             {{"X-Mock-Delay-Ms", "200"}});
        }));
    }
    for (auto& f : concurrent) {
        ASSERT_EQ(f.get().status, 200u);
    }
    EXPECT_EQ(s.v1->connections_accepted(), 6u);
    // A connection goes back to the pool after its answer has gone out: wait for it.
    int idle = -1;
    EXPECT_TRUE(wait_until([&] { return (idle = s.idle_upstream_connections()) == 2; }))
        << idle;  // 4 of the 6 were closed, not pooled
    EXPECT_TRUE(wait_until([&] { return s.idle_upstream_connections() == 0; }));
}

TEST(Proxy, UpstreamClosingConnectionIsNotReused) {
    auto s = stack::make();
    connection c(s.port);
    for (int i = 0; i < 5; ++i) {
        auto r = c.request("POST", "/v1/models/m:predict", predict_body, {{"X-Mock-Close", "1"}});
        ASSERT_EQ(r.status, 200u) << r.error;
        EXPECT_TRUE(r.keep_alive);  // the client's connection is independent of the upstream's
    }
    EXPECT_EQ(s.v1->connections_accepted(), 5u);
}

TEST(Proxy, LargeBodiesBothWays) {
    auto s = stack::make();
    std::string big = R"({"instances":[[1,2]],"pad":")" + std::string(1 << 20, 'p') + "\"}";
    auto up = request(s.port, "POST", "/v1/models/m:predict", big, {{"X-Mock-Echo", "1"}});
    ASSERT_EQ(up.status, 200u) << up.body.substr(0, 300);
    EXPECT_EQ(json::parse(up.body)["received_body_bytes"], big.size());
    auto down = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                        {{"X-Mock-Body-Bytes", "262144"}});
    ASSERT_EQ(down.status, 200u);
    EXPECT_EQ(down.body.size(), 262144u);
    EXPECT_TRUE(json::accept(down.body));
    // The buffers grown for them shrink again, and the upstream connection is reused.
    EXPECT_EQ(request(s.port, "POST", "/v1/models/m:predict", predict_body).status, 200u);
    EXPECT_EQ(s.v1->connections_accepted(), 1u);
}

TEST(Proxy, ChunkedRequestIsReframedWithContentLength) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.raw(
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-Mock-Echo: 1\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "c\r\n{\"instances\"\r\n9\r\n:[[1,2]]}\r\n0\r\n\r\n");
    ASSERT_EQ(r.status, 200u) << r.error;
    auto h = json::parse(r.body)["received_headers"];
    EXPECT_EQ(h["content-length"], "21");
    EXPECT_FALSE(h.contains("transfer-encoding"));
}

TEST(Proxy, ExpectContinueIsAnswered) {
    auto s = stack::make();
    connection c(s.port);
    ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 21\r\nExpect: 100-continue\r\n\r\n"));
    auto interim = c.read_reply();
    ASSERT_EQ(interim.status, 100u) << interim.error;
    auto r = c.raw(R"({"instances":[[1,2]]})");
    EXPECT_EQ(r.status, 200u) << r.error;
}

TEST(Proxy, Http10ClientGetsCloseDelimitedAnswer) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.raw("POST /v1/models/m:predict HTTP/1.0\r\nContent-Length: 21\r\n\r\n" +
                   predict_body);
    ASSERT_EQ(r.status, 200u) << r.error;
    EXPECT_FALSE(r.keep_alive);
    EXPECT_TRUE(c.peer_closed());
}

TEST(Proxy, ChunkedUpstreamResponseIsRelayed) {
    auto s = stack::make();
    connection c(s.port);
    for (int i = 0; i < 3; ++i) {
        auto r = c.request("POST", "/v1/models/m:predict", predict_body,
                           {{"X-Mock-Chunked", "1"}, {"X-Mock-Body-Bytes", "40000"}});
        ASSERT_EQ(r.status, 200u) << r.error;
        EXPECT_EQ(r.header("transfer-encoding"), "chunked");
        EXPECT_EQ(r.body.size(), 40000u);
        EXPECT_TRUE(json::accept(r.body));
        EXPECT_TRUE(r.keep_alive);
    }
    EXPECT_EQ(s.v1->connections_accepted(), 1u);  // a chunked answer ends cleanly: reusable
}

TEST(Proxy, HeadRequestGetsHeadersOnly) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.request("HEAD", "/v1/models/m:predict");
    ASSERT_EQ(r.status, 200u) << r.error;
    EXPECT_TRUE(r.body.empty());
    EXPECT_EQ(r.header("x-stagegate-version"), "v1");
    EXPECT_EQ(c.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
}

TEST(Proxy, TlsListenerWithGeneratedCertificate) {
    auto cert = make_test_certificate();
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        c.listeners[0].tls = config::tls_server{cert.cert_file, cert.key_file};
    });
    connection c(s.port, /*tls=*/true);
    ASSERT_TRUE(c.connected());
    for (int i = 0; i < 3; ++i) {
        auto r = c.request("POST", "/v1/models/m:predict", predict_body, {{"X-Mock-Echo", "1"}});
        ASSERT_EQ(r.status, 200u) << r.error;
        EXPECT_EQ(json::parse(r.body)["received_headers"]["x-forwarded-proto"], "https");
    }
}

TEST(Proxy, TlsToUpstreamVerifiesTheCertificate) {
    auto cert = make_test_certificate();
    mockmodel::options o;
    o.cert_file = cert.cert_file;
    o.key_file = cert.key_file;
    auto secure = start_mock("v2", o);
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[1].endpoints[0].port = secure->port();
        c.models[0].versions[1].tls =
            config::upstream_tls{.ca_file = cert.cert_file, .server_name = "localhost"};
    });
    for (int i = 0; i < 3; ++i) {
        auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Stagegate-Force-Version", "v2"}});
        ASSERT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(json::parse(r.body)["model_version"], "v2");
    }
    EXPECT_EQ(secure->connections_accepted(), 1u);  // TLS connections are pooled too

    auto wrong_name = stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[1].endpoints[0].port = secure->port();
        c.models[0].versions[1].tls =
            config::upstream_tls{.ca_file = cert.cert_file, .server_name = "not-this-host"};
    });
    auto r = request(wrong_name.port, "POST", "/v1/models/m:predict", predict_body,
                     {{"X-Stagegate-Force-Version", "v2"}});
    EXPECT_EQ(r.status, 502u);
    EXPECT_EQ(json::parse(r.body)["error"]["code"], "upstream_connect_failed");
}

TEST(Proxy, TlsToUpstreamPresentsTheClientCertificateABackendRequires) {
    // Mutual TLS: the backend accepts only clients whose certificate it verifies (here the
    // gateway's own self-signed one, as its CA).
    auto server_cert = make_test_certificate();
    auto client_cert = make_test_certificate();
    mockmodel::options o;
    o.cert_file = server_cert.cert_file;
    o.key_file = server_cert.key_file;
    o.client_ca_file = client_cert.cert_file;
    auto secure = start_mock("v2", o);
    auto with_tls = [&](const config::upstream_tls& tls) {
        return stack::make(0, 1, [&](config::gateway& c) {
            c.models[0].versions[1].endpoints[0].port = secure->port();
            c.models[0].versions[1].tls = tls;
        });
    };
    auto s = with_tls({.ca_file = server_cert.cert_file,
                       .server_name = "localhost",
                       .cert_file = client_cert.cert_file,
                       .key_file = client_cert.key_file});
    for (int i = 0; i < 3; ++i) {
        auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Stagegate-Force-Version", "v2"}});
        ASSERT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(json::parse(r.body)["model_version"], "v2");
    }
    // Without a client certificate, or with one the backend does not trust, no answer, and
    // the error says what the backend's TLS alert said.
    const std::pair<config::upstream_tls, const char*> refused_configs[] = {
        {{.ca_file = server_cert.cert_file, .server_name = "localhost"},
         "certificate required"},
        {{.ca_file = server_cert.cert_file,
          .server_name = "localhost",
          .cert_file = server_cert.cert_file,
          .key_file = server_cert.key_file},
         "unknown ca"},
    };
    for (const auto& [tls, alert] : refused_configs) {
        auto refused = with_tls(tls);
        auto r = request(refused.port, "POST", "/v1/models/m:predict", predict_body,
                         {{"X-Stagegate-Force-Version", "v2"}});
        EXPECT_EQ(r.status, 502u) << tls.cert_file << ": " << r.body;
        EXPECT_NE(r.body.find(alert), std::string::npos) << r.body;
    }
}

}  // namespace
}  // namespace stagegate::test
