// The admin API's errors: each has one HTTP status and one wire code, the statuses clients
// depend on stay as they are, and a code no case knows is a 500, never a guessed 400.
#include "admin/admin_error.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace stagegate::admin {
namespace {

// The contract with clients (stagegatectl, scripts): these codes answer these statuses.
TEST(AdminErrors, CodesKeepTheirStatuses) {
    const std::vector<std::pair<std::string, unsigned>> contract = {
        {"bad_request", 400},          {"bad_path", 400},
        {"bad_query", 400},            {"invalid_json", 400},
        {"invalid_argument", 400},     {"invalid_config", 400},
        {"invalid_rollout", 400},      {"invalid_weights", 400},
        {"invalid_mirror", 400},       {"unknown_version", 400},
        {"bad_webhook", 400},          {"webhook_secret_unreadable", 400},
        {"missing_token", 401},        {"invalid_token", 401},
        {"forbidden", 403},            {"not_found", 404},
        {"unknown_model", 404},        {"unknown_rollout", 404},
        {"method_not_allowed", 405},   {"invalid_state", 409},
        {"rollout_active", 409},       {"no_config_file", 409},
        {"feedback_not_enabled", 409}, {"payload_too_large", 413},
        {"header_too_large", 431},     {"config_unreadable", 500},
        {"reload_incomplete", 500},    {"not_started", 500},
        {"draining", 503},             {"state_io_failed", 503},
        {"state_corrupt", 503},        {"not_leader", 503},
        {"no_leader", 503},            {"not_durable", 507},
    };
    for (const auto& [code, status] : contract) {
        const auto e = classify(code);
        EXPECT_NE(e, admin_error::internal) << code;
        EXPECT_EQ(wire_code(e), code);
        EXPECT_EQ(static_cast<unsigned>(http_status(e)), status) << code;
    }
    // One code, two causes: the leader could not be named (503) or did not answer (502).
    EXPECT_EQ(wire_code(admin_error::leader_unaddressable), "leader_unreachable");
    EXPECT_EQ(static_cast<unsigned>(http_status(admin_error::leader_unaddressable)), 503u);
    EXPECT_EQ(wire_code(admin_error::leader_unreachable), "leader_unreachable");
    EXPECT_EQ(static_cast<unsigned>(http_status(admin_error::leader_unreachable)), 502u);
}

TEST(AdminErrors, AnUnknownCodeIsAnInternalError) {
    EXPECT_EQ(classify("no_such_code"), admin_error::internal);
    EXPECT_EQ(classify(""), admin_error::internal);
    EXPECT_EQ(classify("internal_error"), admin_error::internal);
    EXPECT_EQ(static_cast<unsigned>(http_status(admin_error::internal)), 500u);
}

TEST(AdminErrors, MadeErrorsCarryTheirCode) {
    auto e = make_error(admin_error::invalid_argument, "bad", {{"/x", "wrong"}});
    EXPECT_EQ(e.code, "invalid_argument");
    EXPECT_EQ(classify(e.code), admin_error::invalid_argument);
    ASSERT_EQ(e.problems.size(), 1u);
    EXPECT_EQ(e.problems[0].path, "/x");
}

}  // namespace
}  // namespace stagegate::admin
