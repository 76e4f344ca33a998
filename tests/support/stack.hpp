// Test support: an in-process gateway in front of in-process mock model versions, all on
// ephemeral loopback ports.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "stagegate/app/gateway.hpp"
#include "stagegate/config/config.hpp"
#include "stagegate/mockmodel/mock_model.hpp"
#include "test_client.hpp"

namespace stagegate::test {

// Model "m": stable v1, candidate v2 with `candidate_bp` basis points, sticky on X-User and
// cookie "user", forcing allowed; listener on 127.0.0.1:0.
inline config::gateway stack_config(std::uint16_t v1_port, std::uint16_t v2_port,
                                    std::uint32_t candidate_bp, std::uint32_t workers = 1) {
    std::string text = R"({
      "listeners": [{"address": "127.0.0.1", "port": 0}],
      "admin": {"address": "127.0.0.1", "port": 0},
      "workers": )" + std::to_string(workers) +
                       R"(,
      "client_timeouts": {"drain_ms": 5000},
      "models": [{
        "name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" +
                       std::to_string(v1_port) + R"("]},
                     {"name": "v2", "endpoints": ["127.0.0.1:)" +
                       std::to_string(v2_port) + R"("]}],
        "traffic": {"weights": {"v1": )" +
                       std::to_string(10000 - candidate_bp) + R"(, "v2": )" +
                       std::to_string(candidate_bp) + R"(},
                    "stage": "canary", "sticky": {"header": "X-User", "cookie": "user"},
                    "allow_force_version": true},
        "timeouts": {"connect_ms": 1000, "first_byte_ms": 5000, "total_ms": 10000}
      }]
    })";
    auto cfg = config::parse(text);
    EXPECT_TRUE(cfg) << cfg.error().describe();
    return *cfg;
}

// The same with both versions reached over HTTP/2 cleartext (h2c).
inline config::gateway h2c_stack_config(std::uint16_t v1_port, std::uint16_t v2_port,
                                        std::uint32_t candidate_bp) {
    auto cfg = stack_config(v1_port, v2_port, candidate_bp);
    for (auto& v : cfg.models[0].versions) {
        v.protocol = config::upstream_protocol::h2c;
    }
    return cfg;
}

inline std::unique_ptr<mockmodel::server> start_mock(const std::string& version,
                                                     mockmodel::options o = {}) {
    o.version = version;
    auto m = std::make_unique<mockmodel::server>(o);
    auto started = m->start();
    EXPECT_TRUE(started) << started.error().describe();
    return m;
}

struct stack {
    std::unique_ptr<mockmodel::server> v1;
    std::unique_ptr<mockmodel::server> v2;
    std::unique_ptr<app::gateway> gateway;
    std::uint16_t port = 0;

    // `tweak` may edit the config before the gateway starts.
    template <class Tweak>
    static stack make(std::uint32_t candidate_bp, std::uint32_t workers, Tweak&& tweak,
                      mockmodel::options v2_options = {}, mockmodel::options v1_options = {}) {
        stack s;
        s.v1 = start_mock("v1", v1_options);
        s.v2 = start_mock("v2", v2_options);
        auto cfg = stack_config(s.v1->port(), s.v2->port(), candidate_bp, workers);
        tweak(cfg);
        s.gateway = std::make_unique<app::gateway>(std::move(cfg));
        auto started = s.gateway->start();
        EXPECT_TRUE(started) << started.error().describe();
        s.port = s.gateway->ports().empty() ? 0 : s.gateway->ports()[0];
        return s;
    }
    static stack make(std::uint32_t candidate_bp = 0, std::uint32_t workers = 1) {
        return make(candidate_bp, workers, [](config::gateway&) {});
    }

    // The gauge of idle upstream connections to one of model m's versions, read from the admin
    // listener: -1 when it shows none.
    int idle_upstream_connections(const std::string& version = "v1") const {
        auto m = request(gateway->admin_port(), "GET", "/metrics");
        const std::string key = R"(stagegate_upstream_connections{model="m",version=")" + version +
                                R"(",state="idle"} )";
        auto at = m.body.find(key);
        return at == std::string::npos ? -1 : std::stoi(m.body.substr(at + key.size()));
    }
};

}  // namespace stagegate::test
