// The admin dashboard (/ui/): its routes over a real socket (redirects, content types, cache
// validators, 404 for a file it does not have, no way out of its files, whoami), and the page
// itself in a real browser (tests/clients/dashboard.mjs: Debian's chromium, headless, driven
// by puppeteer-core) following a rollout the controller promotes (and its report listing the
// stages), pausing it, and showing a viewer no buttons.
#include "support/shell.hpp"
#include "support/admin.hpp"
#include "support/load.hpp"
#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace stagegate::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

TEST(Dashboard, RootAndUiLeadToThePageWhichNeedsNoToken) {
    admin_stack a;
    for (const char* target : {"/", "/ui", "/?x=1"}) {
        auto r = api(a.admin, "GET", target, "", "");
        EXPECT_EQ(r.status, 302) << target;
        EXPECT_EQ(r.header("location"), "/ui/") << target;
    }
    auto page = api(a.admin, "GET", "/ui/", "", "");
    ASSERT_EQ(page.status, 200) << page.body;
    EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
    EXPECT_NE(page.body.find("<script type=\"module\" src=\"dashboard.js\">"), std::string::npos);
    EXPECT_NE(page.header("content-security-policy").find("default-src 'none'"),
              std::string::npos);
    EXPECT_EQ(page.header("cache-control"), "no-cache");
    EXPECT_EQ(page.header("x-content-type-options"), "nosniff");

    // A browser's cached copy is confirmed, not sent again.
    auto again = request(a.admin, "GET", "/ui/", "", {{"If-None-Match", page.header("etag")}});
    EXPECT_EQ(again.status, 304);
    EXPECT_TRUE(again.body.empty());

    // HEAD: the head a GET would get (read raw: the test client expects a body after it).
    connection c(a.admin);
    ASSERT_TRUE(c.write_raw("HEAD /ui/dashboard.js HTTP/1.1\r\nHost: t\r\n\r\n"));
    const auto head = c.read_until("\r\n\r\n");
    EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK\r\n")) << head;
    EXPECT_NE(head.find("Content-Type: text/javascript; charset=utf-8\r\n"), std::string::npos)
        << head;

    auto post = api(a.admin, "POST", "/ui/");
    EXPECT_EQ(post.status, 405);
    EXPECT_EQ(post.header("allow"), "GET, HEAD");
}

TEST(Dashboard, EachFileHasItsContentType) {
    admin_stack a(false);
    const std::pair<const char*, const char*> files[] = {
        {"/ui/index.html", "text/html; charset=utf-8"},
        {"/ui/dashboard.js", "text/javascript; charset=utf-8"},
        {"/ui/api.js", "text/javascript; charset=utf-8"},
        {"/ui/dashboard.css", "text/css; charset=utf-8"},
        {"/ui/favicon.svg", "image/svg+xml"},
    };
    for (const auto& [target, type] : files) {
        auto r = api(a.admin, "GET", target, "", "");
        EXPECT_EQ(r.status, 200) << target;
        EXPECT_EQ(r.header("content-type"), type) << target;
        EXPECT_FALSE(r.header("etag").empty()) << target;
    }
}

TEST(Dashboard, AFileItDoesNotHaveIs404AndNoPathLeadsOutOfItsFiles) {
    admin_stack a(false);
    auto missing = api(a.admin, "GET", "/ui/nope.js", "", "");
    EXPECT_EQ(missing.status, 404);
    EXPECT_EQ(code_of(missing), "not_found");
    EXPECT_NE(body_of(missing)["error"]["message"].get<std::string>().find("nope.js"),
              std::string::npos);
    // Sent as raw bytes, so no client normalizes the path on the way.
    for (const char* target :
         {"/ui/../CMakeLists.txt", "/ui/..%2fCMakeLists.txt", "/ui/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
          "/ui/..", "/ui/./index.html", "/ui//index.html", "/ui/index.html/x", "/ui/%2findex.html",
          "/ui/index.html%00", "/ui/../api/v1/models", "/ui/%zz"}) {
        connection c(a.admin);
        auto r = c.raw(std::string("GET ") + target + " HTTP/1.1\r\nHost: t\r\n\r\n");
        EXPECT_EQ(r.status, 404) << target << ": " << r.body;
        EXPECT_EQ(r.body.find("<html"), std::string::npos) << target;
        EXPECT_EQ(r.body.find("cmake_minimum_required"), std::string::npos) << target;
    }
}

TEST(Dashboard, WhoamiNamesTheTokenAndItsRole) {
    admin_stack a(false);
    auto op = body_of(api(a.admin, "GET", "/api/v1/whoami"));
    EXPECT_EQ(op, json({{"name", "alice"}, {"role", "operator"}, {"tokens_required", true}}));
    auto viewer = body_of(api(a.admin, "GET", "/api/v1/whoami", "", viewer_token));
    EXPECT_EQ(viewer, json({{"name", "victor"}, {"role", "viewer"}, {"tokens_required", true}}));
    auto none = api(a.admin, "GET", "/api/v1/whoami", "", "");
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(code_of(none), "missing_token");

    // Without tokens (loopback only) everyone is the anonymous operator.
    auto open = stack::make();
    auto anonymous = body_of(api(open.gateway->admin_port(), "GET", "/api/v1/whoami", "", ""));
    EXPECT_EQ(anonymous,
              json({{"name", "anonymous"}, {"role", "operator"}, {"tokens_required", false}}));
}

// The page shows time to first token for a version that streams: the metrics API gives it.
TEST(Dashboard, ModelMetricsGiveTimeToFirstTokenForAVersionThatStreams) {
    mockmodel::options llm;
    llm.ttft_ms = 50;
    llm.answer_tokens = 3;
    auto s = stack::make(0, 1, [](config::gateway&) {}, {}, llm);
    const auto admin = s.gateway->admin_port();
    auto r = request(s.port, "POST", "/v1/chat/completions",
                     R"({"model":"m","stream":true,"messages":[]})");
    ASSERT_EQ(r.status, 200) << r.body;
    // The answer reaches the metrics when the worker's shard is next collected.
    json v1;
    ASSERT_TRUE(wait_until([&] {
        const auto metrics = body_of(api(admin, "GET", "/api/v1/models/m/metrics", "", ""));
        for (const auto& v : metrics["versions"]) {
            if (v["version"] == "v1" && v["window"].contains("streams")) {
                v1 = v;
            }
        }
        return !v1.is_null();
    })) << api(admin, "GET", "/api/v1/models/m/metrics", "", "").body;
    EXPECT_EQ(v1["window"]["streams"], 1) << v1.dump(2);
    EXPECT_GE(v1["window"]["time_to_first_token_seconds"]["p50"].get<double>(), 0.045)
        << v1.dump(2);
    EXPECT_EQ(v1["since_stage_start"]["streams"], 1) << v1.dump(2);
    // A version that answered no stream has no such figure, rather than a zero.
    auto plain = stack::make();
    request(plain.port, "POST", "/v1/models/m:predict", "{}");
    ASSERT_TRUE(wait_until([&] {
        return !body_of(api(plain.gateway->admin_port(), "GET", "/api/v1/models/m/metrics", "",
                            ""))["versions"]
                    .empty();
    }));
    const auto metrics =
        body_of(api(plain.gateway->admin_port(), "GET", "/api/v1/models/m/metrics", "", ""));
    for (const auto& v : metrics["versions"]) {
        EXPECT_FALSE(v["window"].contains("time_to_first_token_seconds")) << v.dump(2);
    }
}

// --- In a real browser ---


std::string find_chromium() {
    for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
        if (::access(path, X_OK) == 0) {
            return path;
        }
    }
    return {};
}

config::rollout_stage timed_stage(std::uint32_t bp, std::chrono::milliseconds bake,
                                  std::uint64_t min_requests) {
    config::rollout_stage s;
    s.weight = bp;
    s.name = "canary-" + std::to_string(bp / 100);
    s.min_bake = bake;
    s.min_requests = min_requests;
    return s;
}

TEST(DashboardInBrowser, FollowsAPromotionPausesAndShowsAViewerNoButtons) {
    const auto chromium = find_chromium();
    ASSERT_FALSE(chromium.empty())
        << "chromium is not installed: scripts/install-deps.sh installs it (apt-get install "
           "chromium)";
    ASSERT_EQ(::access((clients_dir + "/node_modules/puppeteer-core/package.json").c_str(), R_OK),
              0)
        << "the puppeteer-core npm package is missing: scripts/install-deps.sh installs it (npm "
           "ci in tests/clients)";
    // canary-20 promotes once it has seen 30 candidate answers (the traffic starts when the
    // page shows canary-20); canary-50 bakes for an hour, so the page can pause it there.
    admin_stack a(true, [](config::gateway& c) {
        auto& r = *c.models[0].rollout_spec;
        r.stages = {timed_stage(2000, 200ms, 30), timed_stage(5000, 1h, 30)};
        r.gates.min_requests = 30;
        r.gates.max_error_rate = 0.05;
        // Two mock servers on a loaded machine differ in latency for real; this test is
        // about the page, not the latency test.
        r.gates.sequential_latency = false;
    });
    ASSERT_EQ(a.s.gateway->rollout_status("m")["stage"], "canary-20");

    const auto out_dir = std::filesystem::path(STAGEGATE_BIN_DIR) / "test-output";
    std::filesystem::create_directories(out_dir);
    const auto screenshot = out_dir / "dashboard-mid-rollout.png";
    std::filesystem::remove(screenshot);

    // `timeout`: a wedged browser fails the test in a minute instead of holding ctest.
    const std::string cmd = "timeout 60 node " + clients_dir + "/dashboard.mjs http://127.0.0.1:" +
                            std::to_string(a.admin) + " " + operator_token + " " + viewer_token +
                            " " + screenshot.string() + " " + chromium + " 2>&1";
    FILE* script = ::popen(cmd.c_str(), "r");
    ASSERT_NE(script, nullptr);
    std::string output;
    std::string last_line;
    // Client traffic, paced (about 200 requests a second, split at random) so that the gateway
    // and the browser share the machine's cores with it.
    std::unique_ptr<load> traffic;
    char buf[8192];
    while (std::fgets(buf, sizeof buf, script)) {
        output += buf;
        std::string line = buf;
        if (line == "ready\n" && !traffic) {
            traffic = std::make_unique<load>(a.s.port, 1, header_list{}, 5ms);
        } else if (!line.empty() && line != "\n") {
            last_line = line;
        }
    }
    const int status = ::pclose(script);
    traffic.reset();
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
    const auto seen = json::parse(last_line, nullptr, false);
    ASSERT_TRUE(seen.is_object()) << output;

    EXPECT_TRUE(seen["url"].get<std::string>().ends_with("/ui/")) << output;
    EXPECT_EQ(seen["console_errors"], json::array()) << output;
    EXPECT_EQ(seen["feed"], "live") << output;
    EXPECT_GE(seen["gates"].get<int>(), 1) << output;
    // The report panel: the stage the controller promoted from, with its decision, then the
    // current one.
    ASSERT_EQ(seen["report_stages"].size(), 2u) << output;
    EXPECT_EQ(seen["report_stages"][0][0], "canary-20") << output;
    EXPECT_NE(seen["report_stages"][0][1].get<std::string>().find("promoted m v2 at canary-20"),
              std::string::npos)
        << output;
    EXPECT_EQ(seen["report_stages"][1], json({"canary-50", "in progress"})) << output;
    EXPECT_EQ(seen["buttons"], json({"pause", "resume", "promote", "rollback", "set_weight"}))
        << output;
    EXPECT_NE(seen["refusal"].get<std::string>().find("steps of 0.01"), std::string::npos)
        << output;
    EXPECT_EQ(seen["storage"], json({{"session", 1}, {"local", 0}, {"cookie", ""}})) << output;
    EXPECT_EQ(seen["cookies"], 0) << output;
    EXPECT_NE(seen["viewer_identity"].get<std::string>().find("victor (viewer)"),
              std::string::npos)
        << output;
    EXPECT_EQ(seen["viewer_buttons"], 0) << output;
    EXPECT_EQ(seen["viewer_phase"], "paused") << output;

    // The click went through the API as the operator: paused at canary-50, recorded as hers.
    auto rollout = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
    EXPECT_EQ(rollout["phase"], "paused") << rollout.dump(2);
    EXPECT_EQ(rollout["stage"], "canary-50") << rollout.dump(2);
    auto events = body_of(api(a.admin, "GET", "/api/v1/rollouts/m/events"))["events"];
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back()["type"], "command") << events.dump(2);
    EXPECT_EQ(events.back()["command"], "pause") << events.dump(2);
    EXPECT_EQ(events.back()["actor"], "alice") << events.dump(2);
    EXPECT_EQ(events.back()["reason"], "seen in the browser test") << events.dump(2);

    ASSERT_TRUE(std::filesystem::exists(screenshot));
    EXPECT_GT(std::filesystem::file_size(screenshot), 10000u);
    std::cout << "screenshot: " << screenshot.string() << "\n";
}

}  // namespace
}  // namespace stagegate::test
