// Graceful drain: in-flight requests finish, idle connections close, threads exit.
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>

#include <future>
#include <vector>

namespace stagegate::test {
namespace {

const std::string predict_body = R"({"instances":[[1,2]]})";

TEST(Drain, InFlightRequestsFinishAndIdleConnectionsClose) {
    auto s = stack::make(0, 2);
    connection idle(s.port);
    ASSERT_EQ(idle.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
    auto before = s.v1->requests();

    constexpr int in_flight = 8;
    std::vector<std::future<reply>> replies;
    for (int i = 0; i < in_flight; ++i) {
        replies.push_back(std::async(std::launch::async, [&] {
            return request(s.port, "POST", "/v1/models/m:predict", predict_body,
                           {{"X-Mock-Delay-Ms", "300"}});
        }));
    }
    // Every request has reached the backend: they are in flight in the gateway.
    ASSERT_TRUE(wait_until([&] { return s.v1->requests() >= before + in_flight; }));
    s.gateway->stop();
    for (auto& f : replies) {
        auto r = f.get();
        EXPECT_EQ(r.status, 200u) << r.error;
        EXPECT_FALSE(r.keep_alive);  // told to go away after this answer
    }
    EXPECT_TRUE(idle.peer_closed());
    s.gateway->wait();
    connection late(s.port);
    EXPECT_FALSE(late.connected());
}

TEST(Drain, DeadlineAbortsRequestsThatWillNotFinish) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.client.drain = std::chrono::milliseconds(200);
    });
    auto stuck = std::async(std::launch::async, [&] {
        return request(s.port, "POST", "/v1/models/m:predict", predict_body,
                       {{"X-Mock-Hang", "1"}});
    });
    ASSERT_TRUE(wait_until([&] { return s.v1->requests() >= 1; }));
    auto started = std::chrono::steady_clock::now();
    s.gateway->stop();
    s.gateway->wait();
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
    EXPECT_EQ(stuck.get().status, 0u);  // connection closed without an answer
}

}  // namespace
}  // namespace stagegate::test

namespace stagegate::test {
namespace {

TEST(Start, FailureLeavesNothingListening) {
    // Occupy a port, then ask the gateway's admin listener for it.
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor busy(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    auto v1 = start_mock("v1");
    auto cfg = stack_config(v1->port(), v1->port(), 0);
    cfg.admin_listener.port = busy.local_endpoint().port();
    app::gateway gw(cfg);
    auto started = gw.start();
    ASSERT_FALSE(started);
    EXPECT_EQ(started.error().code, "bind_failed");
    EXPECT_TRUE(gw.ports().empty());
}

}  // namespace
}  // namespace stagegate::test
