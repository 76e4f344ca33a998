// What the proxy's unit tests over in-memory streams (Beast's test::stream) share: a one-model
// route snapshot, and a worker on an io_context the test polls (runs until nothing is ready),
// so "the client already has this" is checked without sleeping. The exchange tests add a
// backend on memory streams; the request handling tests use the client side alone.
#pragma once

#include "proxy/request_context.hpp"
#include "proxy/upstream_pool.hpp"
#include "stagegate/config/config.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace stagegate::proxy {

using memory_stream = beast::test::stream;

// Model "m" on its stable "v1" alone (one endpoint, never dialled: tests bring their own
// upstream), at stage "canary".
inline std::shared_ptr<const routing::route_snapshot> one_model_snapshot() {
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
                  "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]}],
                  "traffic": {"weights": {"v1": 10000}, "stage": "canary"}}]
    })");
    EXPECT_TRUE(cfg) << cfg.error().describe();
    routing::endpoint_registry registry;
    auto no_series = [](std::string_view, std::string_view, std::string_view) {
        return std::uint32_t{0};
    };
    auto snap = routing::build_snapshot(*cfg, registry, no_series);
    EXPECT_TRUE(snap) << snap.error().describe();
    return *snap;
}

// A worker and one client connection to it: the code under test writes to `down`, the test
// reads what the client got from `client`.
class MemoryClientTest : public ::testing::Test {
protected:
    net::io_context io;
    worker w{io, settings{}, 0};
    session_slot slot;
    memory_stream down{io};
    memory_stream client{io};
    request_context rc;

    explicit MemoryClientTest(std::string_view request_id) {
        down.connect(client);
        rc.id.assign(request_id);
    }
    ~MemoryClientTest() override { finish(); }

    // Closes the client, drains the worker and runs the io_context until the code under test,
    // the ticker and the pool's sweeper have all ended. A fixture with streams of its own calls
    // it from its destructor, while those streams still exist.
    void finish() {
        if (finished_) {
            return;
        }
        finished_ = true;
        client.close();
        w.begin_drain();
        io.restart();
        io.run();
    }

    // Starts `t` and runs it as far as it goes now.
    void spawn(task<void> t) {
        net::co_spawn(io.get_executor(), std::move(t), net::detached);
        settle();
    }
    // Runs everything that can run now: the code under test stops at its next wait for bytes.
    void settle() {
        io.restart();
        io.poll();
    }

    std::string client_got() const { return std::string(client.str()); }
    // The answer's head, up to its blank line, and the bytes after it ("" until the head has
    // ended).
    std::string client_head() const {
        auto all = client_got();
        auto end = all.find("\r\n\r\n");
        return end == std::string::npos ? std::string() : all.substr(0, end + 4);
    }
    std::string client_body() const {
        auto all = client_got();
        auto end = all.find("\r\n\r\n");
        return end == std::string::npos ? std::string() : all.substr(end + 4);
    }

private:
    bool finished_ = false;
};

}  // namespace stagegate::proxy
