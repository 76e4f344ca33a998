// Test support: a stack whose admin API has tokens and a rollout, and helpers to call it.
#pragma once

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

namespace stagegate::test {

using namespace std::chrono_literals;

inline const std::string operator_token = "operator-secret-0123456789";
inline const std::string viewer_token = "viewer-secret-0123456789";

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

inline reply api(std::uint16_t port, const std::string& method, const std::string& target,
                 const std::string& body = "", const std::string& token = operator_token) {
    header_list h;
    if (!token.empty()) {
        h.emplace_back("Authorization", "Bearer " + token);
    }
    if (!body.empty()) {
        h.emplace_back("Content-Type", "application/json");
    }
    return request(port, method, target, body, h);
}

inline nlohmann::json body_of(const reply& r) {
    return nlohmann::json::parse(r.body, nullptr, false);
}

inline std::string code_of(const reply& r) {
    auto j = body_of(r);
    return j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
}

inline std::string path_of(const reply& r) {
    auto j = body_of(r);
    return j.is_object() && j.contains("error") ? j["error"].value("path", "") : "";
}

inline config::rollout_stage stage(std::uint32_t bp) {
    config::rollout_stage s;
    s.weight = bp;
    s.name = "canary-" + std::to_string(bp / 100);
    s.min_bake = std::chrono::hours(1);  // nothing advances on its own in these tests
    return s;
}

inline config::rollout three_stages() {
    config::rollout r;
    r.candidate = "v2";
    r.stages = {stage(500), stage(2500), stage(5000)};
    r.interval = 100ms;
    return r;
}

// A stack whose admin API has an operator and a viewer token, state in `dir`, and (when
// asked) a rollout of v2 through 5, 25 and 50 %.
struct admin_stack {
    temp_dir dir;
    stack s;
    std::uint16_t admin = 0;

    explicit admin_stack(bool with_rollout = true,
                         const std::function<void(config::gateway&)>& tweak = {}) {
        write_file(dir.path + "/operator.token", operator_token + "\n");
        write_file(dir.path + "/viewer.token", viewer_token);
        s = stack::make(0, 1, [&](config::gateway& c) {
            c.state_dir = dir.path + "/state";
            c.admin_listener.tokens = {
                {"alice", config::admin_role::operator_, dir.path + "/operator.token"},
                {"victor", config::admin_role::viewer, dir.path + "/viewer.token"}};
            c.admin_listener.max_body_bytes = 4096;
            if (with_rollout) {
                c.models[0].rollout_spec = three_stages();
                c.models[0].split.weights = {{"v1", 10000}};
            }
            if (tweak) {
                tweak(c);
            }
        });
        admin = s.gateway->admin_port();
    }
};

}  // namespace stagegate::test
