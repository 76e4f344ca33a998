// handle_request over an in-memory client stream (Beast's test::stream): the answers the
// gateway gives itself before anything goes upstream, and what it counts for them. Paths
// that reach a backend go through the pool's sockets; the exchange tests cover those bytes.
#include "proxy/request_handling.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>

#include <optional>
#include <string>

namespace stagegate::proxy {
namespace {

using memory_stream = beast::test::stream;

std::uint32_t test_series(std::string_view, std::string_view, std::string_view) { return 0; }

std::shared_ptr<const routing::route_snapshot> snapshot() {
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
                  "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]}]}]
    })");
    EXPECT_TRUE(cfg) << cfg.error().describe();
    routing::endpoint_registry registry;
    auto snap = routing::build_snapshot(*cfg, registry, test_series);
    EXPECT_TRUE(snap) << snap.error().describe();
    return *snap;
}

class RequestHandling : public ::testing::Test {
protected:
    net::io_context io;
    worker w{io, settings{}, 0};
    session_slot slot;
    memory_stream down{io};
    memory_stream client{io};
    std::string head;
    std::string body_scratch;
    request_context rc;

    RequestHandling() {
        down.connect(client);
        rc.id.assign("rid-7");
    }
    ~RequestHandling() override {
        client.close();
        w.begin_drain();
        io.restart();
        io.run();
    }

    // Handles `req` to the end (error answers never wait on anything); whether the
    // connection stays.
    std::optional<bool> handle(request_type& req) {
        std::optional<bool> keep;
        auto run = [](RequestHandling& t, request_type& r,
                      std::optional<bool>& result) -> task<void> {
            result = co_await handle_request(t.down, t.w, t.slot, r, t.rc, t.head,
                                             t.body_scratch, std::string("192.0.2.1"), false,
                                             clock::now());
        };
        net::co_spawn(io.get_executor(), run(*this, req, keep), net::detached);
        io.restart();
        io.poll();
        return keep;
    }
    std::string answer_head() const {
        auto all = std::string(client.str());
        return all.substr(0, all.find("\r\n\r\n") + 4);
    }
    std::string answer_body() const {
        auto all = std::string(client.str());
        return all.substr(all.find("\r\n\r\n") + 4);
    }
    std::array<std::uint64_t, metrics::unrouted_reasons> unrouted() {
        std::vector<worker::endpoint_connections> connections;
        std::vector<predictions::served_record> served;
        return w.take_metrics(connections, served).unrouted;
    }
};

request_type request(std::string target) {
    request_type req{http::verb::post, target, 11};
    req.set(http::field::host, "gw");
    return req;
}

TEST_F(RequestHandling, NoRoutesYetIs503NotReady) {
    auto req = request("/v1/models/m:predict");
    auto keep = handle(req);
    ASSERT_TRUE(keep);
    EXPECT_TRUE(*keep);
    EXPECT_EQ(answer_head().rfind("HTTP/1.1 503 ", 0), 0u) << answer_head();
    EXPECT_NE(answer_head().find("X-Request-Id: rid-7\r\n"), std::string::npos);
    auto json = nlohmann::json::parse(answer_body());
    EXPECT_EQ(json["error"]["code"], "not_ready");
    EXPECT_EQ(json["error"]["request_id"], "rid-7");
}

TEST_F(RequestHandling, UnroutableRequestIsAnsweredAndCounted) {
    w.set_routes(snapshot());
    auto req = request("/v1/models/zzz:predict");
    auto keep = handle(req);
    ASSERT_TRUE(keep);
    EXPECT_TRUE(*keep);
    EXPECT_EQ(answer_head().rfind("HTTP/1.1 404 ", 0), 0u) << answer_head();
    // Not routed: no version or stage to name.
    EXPECT_EQ(answer_head().find("X-Stagegate-Version"), std::string::npos) << answer_head();
    auto json = nlohmann::json::parse(answer_body());
    EXPECT_EQ(json["error"]["code"], "unknown_model");
    EXPECT_EQ(json["error"]["message"], "no model named \"zzz\" is served here");
    auto counts = unrouted();
    EXPECT_EQ(counts[static_cast<std::size_t>(metrics::unrouted_reason::unknown_model)], 1u);
    EXPECT_EQ(counts[static_cast<std::size_t>(metrics::unrouted_reason::bad_request)], 0u);
}

TEST_F(RequestHandling, ErrorAnswerToHeadHasNoBodyAndCloseIsHonoured) {
    w.set_routes(snapshot());
    rc.head = true;
    rc.keep_alive = false;
    auto req = request("/v1/models/../m:predict");
    req.method(http::verb::head);
    auto keep = handle(req);
    ASSERT_TRUE(keep);
    EXPECT_FALSE(*keep);
    EXPECT_EQ(answer_head().rfind("HTTP/1.1 400 ", 0), 0u) << answer_head();
    EXPECT_NE(answer_head().find("Connection: close\r\n"), std::string::npos) << answer_head();
    EXPECT_EQ(answer_body(), "");
    EXPECT_EQ(unrouted()[static_cast<std::size_t>(metrics::unrouted_reason::bad_request)], 1u);
}

}  // namespace
}  // namespace stagegate::proxy
