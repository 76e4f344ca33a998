// handle_request over an in-memory client stream (Beast's test::stream): the answers the
// gateway gives itself before anything goes upstream, and what it counts for them. Paths
// that reach a backend go through the pool's sockets; the exchange tests cover those bytes.
#include "proxy/request_handling.hpp"

#include "memory_client.hpp"

#include "requests.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace stagegate::proxy {
namespace {

class RequestHandling : public MemoryClientTest {
protected:
    std::string head;
    std::string body_scratch;

    RequestHandling() : MemoryClientTest("rid-7") {}

    // Handles `req` to the end (error answers never wait on anything); whether the
    // connection stays.
    std::optional<bool> handle(client_request& req) {
        std::optional<bool> keep;
        auto run = [](RequestHandling& t, client_request& r,
                      std::optional<bool>& result) -> task<void> {
            result = co_await handle_request(t.down, t.w, t.slot, r, t.rc, t.head,
                                             t.body_scratch, std::string("192.0.2.1"), false,
                                             clock::now());
        };
        spawn(run(*this, req, keep));
        return keep;
    }
    std::array<std::uint64_t, metrics::unrouted_reasons> unrouted() {
        std::vector<worker::endpoint_connections> connections;
        std::vector<predictions::served_record> served;
        return w.take_metrics(connections, served).unrouted;
    }
};

TEST_F(RequestHandling, NoRoutesYetIs503NotReady) {
    auto req = post_request("/v1/models/m:predict");
    auto keep = handle(req);
    ASSERT_TRUE(keep);
    EXPECT_TRUE(*keep);
    EXPECT_EQ(client_head().rfind("HTTP/1.1 503 ", 0), 0u) << client_head();
    EXPECT_NE(client_head().find("X-Request-Id: rid-7\r\n"), std::string::npos);
    auto json = nlohmann::json::parse(client_body());
    EXPECT_EQ(json["error"]["code"], "not_ready");
    EXPECT_EQ(json["error"]["request_id"], "rid-7");
}

TEST_F(RequestHandling, UnroutableRequestIsAnsweredAndCounted) {
    w.set_routes(one_model_snapshot());
    auto req = post_request("/v1/models/zzz:predict");
    auto keep = handle(req);
    ASSERT_TRUE(keep);
    EXPECT_TRUE(*keep);
    EXPECT_EQ(client_head().rfind("HTTP/1.1 404 ", 0), 0u) << client_head();
    // Not routed: no version or stage to name.
    EXPECT_EQ(client_head().find("X-Stagegate-Version"), std::string::npos) << client_head();
    auto json = nlohmann::json::parse(client_body());
    EXPECT_EQ(json["error"]["code"], "unknown_model");
    EXPECT_EQ(json["error"]["message"], "no model named \"zzz\" is served here");
    auto counts = unrouted();
    EXPECT_EQ(counts[static_cast<std::size_t>(metrics::unrouted_reason::unknown_model)], 1u);
    EXPECT_EQ(counts[static_cast<std::size_t>(metrics::unrouted_reason::bad_request)], 0u);
}

TEST_F(RequestHandling, ErrorAnswerToHeadHasNoBodyAndCloseIsHonoured) {
    w.set_routes(one_model_snapshot());
    rc.head = true;
    rc.keep_alive = false;
    auto req = post_request("/v1/models/../m:predict");
    req.method(http::verb::head);
    auto keep = handle(req);
    ASSERT_TRUE(keep);
    EXPECT_FALSE(*keep);
    EXPECT_EQ(client_head().rfind("HTTP/1.1 400 ", 0), 0u) << client_head();
    EXPECT_NE(client_head().find("Connection: close\r\n"), std::string::npos) << client_head();
    EXPECT_EQ(client_body(), "");
    EXPECT_EQ(unrouted()[static_cast<std::size_t>(metrics::unrouted_reason::bad_request)], 1u);
}

}  // namespace
}  // namespace stagegate::proxy
