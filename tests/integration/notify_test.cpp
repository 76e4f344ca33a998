// Notifications and external gates over real sockets: event webhooks (order, signatures,
// retries with one idempotency key, a hanging receiver), approval stages and gate checks.
#include "stagegate/ctl/ctl.hpp"
#include "stagegate/notify/notify.hpp"
#include "support/admin.hpp"
#include "support/load.hpp"
#include "support/receiver.hpp"

#include <gtest/gtest.h>

#include <atomic>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

TEST(Hmac, MatchesRfc4231) {
    // RFC 4231, test case 2.
    EXPECT_EQ(notify::hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

config::webhook hook_to(const receiver& r, const std::string& secret_file = "") {
    config::webhook w;
    w.name = "receiver";
    w.url = r.url();
    w.secret_file = secret_file;
    w.backoff = std::chrono::milliseconds(20);
    w.timeout = std::chrono::milliseconds(2000);
    return w;
}

TEST(Webhooks, EventsArriveInOrderWithValidSignatures) {
    receiver r;
    temp_dir secrets;
    const std::string secret = "a-shared-secret-for-hmac";
    write_file(secrets.path + "/hook.secret", secret + "\n");
    admin_stack a(true, [&](config::gateway& c) {
        c.webhooks = {hook_to(r, secrets.path + "/hook.secret")};
    });
    ASSERT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/pause", R"({"reason":"one"})").status, 200);
    ASSERT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/resume").status, 200);
    ASSERT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/pause").status, 200);
    ASSERT_TRUE(wait_until([&] { return r.count() >= 4; }));
    auto got = r.requests();
    ASSERT_EQ(got.size(), 4u);
    std::uint64_t last_id = 0;
    for (const auto& req : got) {
        EXPECT_EQ(req.method, "POST");
        EXPECT_EQ(req.header("content-type"), "application/json");
        EXPECT_EQ(req.header("x-stagegate-signature"),
                  "sha256=" + notify::hmac_sha256_hex(secret, req.body));
        auto e = json::parse(req.body);
        const auto id = e["id"].get<std::uint64_t>();
        EXPECT_GT(id, last_id);
        last_id = id;
        EXPECT_EQ(req.header("x-stagegate-event-id"), std::to_string(id));
        EXPECT_EQ(req.header("idempotency-key"), "stagegate-event-" + std::to_string(id));
    }
    EXPECT_EQ(json::parse(got[0].body)["type"], "started");
    EXPECT_EQ(json::parse(got[1].body)["reason"], "one");
    EXPECT_EQ(json::parse(got[3].body)["command"], "pause");

    // The receiver records a request before it answers, and the gateway counts a delivery
    // when the answer is back: the count can trail what the receiver saw.
    json status;
    EXPECT_TRUE(wait_until([&] {
        status = body_of(api(a.admin, "GET", "/api/v1/webhooks"));
        return status["webhooks"][0]["delivered"] == 4;
    })) << status.dump();
    // The rollout's own status lists the webhooks its events go to.
    auto rollout = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
    ASSERT_EQ(rollout["webhooks"].size(), 1u);
    EXPECT_EQ(rollout["webhooks"][0]["last"]["ok"], true);
    EXPECT_EQ(status["webhooks"][0]["signed"], true);
}

TEST(Webhooks, FailingTwiceThenSucceedingDeliversOnceUnderOneKey) {
    receiver r([](const received&, std::size_t i) { return answer{i < 2 ? 503u : 200u}; });
    admin_stack a(true, [&](config::gateway& c) { c.webhooks = {hook_to(r)}; });
    ASSERT_TRUE(wait_until([&] { return r.count() >= 3; }));
    auto got = r.requests();
    std::set<std::string> keys;
    for (std::size_t i = 0; i < got.size(); ++i) {
        keys.insert(got[i].header("idempotency-key"));
        EXPECT_EQ(got[i].header("x-stagegate-delivery-attempt"), std::to_string(i + 1));
        EXPECT_EQ(got[i].body, got[0].body);
    }
    EXPECT_EQ(keys.size(), 1u);  // a receiver that dedups by key processes it once
    ASSERT_TRUE(wait_until([&] {
        auto s = body_of(api(a.admin, "GET", "/api/v1/webhooks"))["webhooks"][0];
        return s["delivered"] == 1;
    }));
    auto s = body_of(api(a.admin, "GET", "/api/v1/webhooks"))["webhooks"][0];
    EXPECT_EQ(s["failed_attempts"], 2);
    EXPECT_EQ(s["dropped"], 0);
    auto metrics = api(a.admin, "GET", "/metrics").body;
    EXPECT_NE(metrics.find(R"(stagegate_webhook_deliveries_total{webhook="receiver",outcome="failed_attempt"} 2)"),
              std::string::npos);
}

TEST(Webhooks, GivingUpDropsTheEventVisibly) {
    receiver r([](const received&, std::size_t) { return answer{500}; });
    admin_stack a(true, [&](config::gateway& c) {
        c.webhooks = {hook_to(r)};
        c.webhooks[0].max_attempts = 2;
    });
    ASSERT_TRUE(wait_until([&] {
        return body_of(api(a.admin, "GET", "/api/v1/webhooks"))["webhooks"][0]["dropped"] == 1;
    }));
    auto s = body_of(api(a.admin, "GET", "/api/v1/webhooks"))["webhooks"][0];
    EXPECT_EQ(s["last"]["status"], 500);
    EXPECT_EQ(r.count(), 2u);
}

// A webhook receiver that never answers holds up its own queue only: requests keep flowing
// and the controller keeps deciding at its interval.
TEST(Webhooks, AHangingReceiverDelaysNeitherTrafficNorDecisions) {
    receiver r([](const received&, std::size_t) { return answer{200, true}; });
    admin_stack a(true, [&](config::gateway& c) {
        c.webhooks = {hook_to(r)};
        c.webhooks[0].timeout = std::chrono::seconds(30);
        auto& ro = *c.models[0].rollout_spec;
        for (auto& st : ro.stages) {
            st.min_bake = std::chrono::milliseconds(200);
            st.min_requests = 20;
        }
        ro.gates.min_requests = 20;
        ro.gates.sequential_latency = false;  // about webhooks, not latency: no noise from it
    });
    load traffic(a.s.port, 2);
    const auto started = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_until(
        [&] { return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["phase"] == "completed"; },
        std::chrono::seconds(30)));
    const auto took = std::chrono::steady_clock::now() - started;
    traffic.stop();
    const auto ms = [](auto d) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    };
    std::cout << "with a hanging webhook: 3 stages completed in " << ms(took)
              << " ms; slowest of " << traffic.requests() << " requests " << ms(traffic.slowest())
              << " ms\n";
    EXPECT_EQ(traffic.failures(), 0);
    EXPECT_LT(traffic.slowest(), std::chrono::seconds(2));  // the webhook waits 30 s
    // The first event is still in flight: in-order delivery sends nothing after it.
    ASSERT_TRUE(wait_until([&] { return r.count() >= 1; }));
    EXPECT_EQ(r.count(), 1u);
    auto s = body_of(api(a.admin, "GET", "/api/v1/webhooks"))["webhooks"][0];
    EXPECT_GE(s["queued"].get<int>(), 4);  // started, 2 promotions, completed
}

TEST(Approval, HoldsUntilApprovedAndStillRollsBackAFailingCandidate) {
    auto fast = [](config::gateway& c) {
        auto& ro = *c.models[0].rollout_spec;
        for (auto& st : ro.stages) {
            st.min_bake = std::chrono::milliseconds(100);
            st.min_requests = 20;
        }
        ro.stages[0].approval = true;
        ro.gates.min_requests = 20;
        ro.gates.max_error_rate = 0.05;
        ro.gates.sequential_latency = false;  // judged on errors only: no noise from latency
    };
    {
        admin_stack a(true, fast);
        load traffic(a.s.port, 2);
        ASSERT_TRUE(wait_until([&] {
            return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["pending_approval"] == true;
        }));
        // Ten evaluation intervals (100 ms) later it still waits.
        ASSERT_TRUE(wait_until([&] {
            return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["seconds_in_stage"] > 1.0;
        }));
        auto st = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
        EXPECT_EQ(st["stage"], "canary-5");
        std::ostringstream out;
        std::ostringstream err;
        ASSERT_EQ(ctl::run({"--server", "http://127.0.0.1:" + std::to_string(a.admin),
                            "--token-file", a.dir.path + "/viewer.token", "status", "m"},
                           out, err),
                  0)
            << err.str();
        EXPECT_NE(out.str().find("Approval:    PENDING"), std::string::npos) << out.str();
        auto approved = api(a.admin, "POST", "/api/v1/rollouts/m/promote", R"({"reason":"ok'd"})");
        ASSERT_EQ(approved.status, 200);
        EXPECT_EQ(body_of(approved)["stage"], "canary-25");
        auto events = body_of(api(a.admin, "GET", "/api/v1/rollouts/m/events"))["events"];
        EXPECT_EQ(events.back()["approved"], true);
        EXPECT_EQ(events.back()["actor"], "alice");
        bool pending_logged = false;
        for (const auto& e : events) {
            pending_logged = pending_logged || e["type"] == "approval_pending";
        }
        EXPECT_TRUE(pending_logged);
    }
    admin_stack a(true, fast);
    load traffic(a.s.port, 2);
    ASSERT_TRUE(wait_until([&] {
        return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["pending_approval"] == true;
    }));
    traffic.set_headers({{"X-Mock-Status", "500"}});  // now every answer fails
    ASSERT_TRUE(wait_until(
        [&] { return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["phase"] == "rolled_back"; }));
}

TEST(GateChecks, A500HoldsTheRolloutA200LetsItWiden) {
    std::atomic<unsigned> verdict{500};
    receiver r([&](const received&, std::size_t) { return answer{verdict.load(), false, "eval says"}; });
    admin_stack a(true, [&](config::gateway& c) {
        auto& ro = *c.models[0].rollout_spec;
        ro.stages[0].min_bake = std::chrono::milliseconds(100);
        ro.stages[0].min_requests = 20;
        ro.stages[0].checks = {config::http_check{r.url("/smoke"), std::chrono::seconds(2), false}};
        ro.gates.min_requests = 20;
        ro.gates.sequential_latency = false;
    });
    load traffic(a.s.port, 2);
    // Three failed checks on record (each logged once its 500 is back), before the verdict
    // changes: a check the receiver has seen but not yet answered could still get the 200.
    auto failed_checks = [&] {
        auto events = body_of(api(a.admin, "GET", "/api/v1/rollouts/m/events?limit=1000"))["events"];
        int n = 0;
        for (const auto& e : events) {
            n += e["type"] == "check_failed";
        }
        return n;
    };
    ASSERT_TRUE(wait_until([&] { return failed_checks() >= 3; }));
    auto st = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
    EXPECT_EQ(st["stage"], "canary-5");
    EXPECT_EQ(st["last_checks"]["passed"], false);
    EXPECT_EQ(st["last_checks"]["checks"][0]["status"], 500);
    EXPECT_EQ(st["last_checks"]["checks"][0]["detail"], "eval says");
    auto payload = json::parse(r.requests()[0].body);
    EXPECT_EQ(payload["kind"], "stage");
    EXPECT_EQ(payload["model"], "m");
    EXPECT_EQ(payload["next_stage"], "canary-25");
    EXPECT_GE(payload["metrics"]["candidate"]["requests"].get<int>(), 20);

    verdict = 200;
    ASSERT_TRUE(wait_until(
        [&] { return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["stage"] == "canary-25"; }));
    EXPECT_GE(failed_checks(), 3);
}

TEST(GateChecks, CheckConfigRefusesBadUrlsAndMissingSecrets) {
    temp_dir dir;
    write_file(dir.path + "/gw.json", R"({"listeners": [{"port": 8080}],
      "notifications": {"webhooks": [
        {"name": "chat", "url": "ftp://chat.example/hook"},
        {"name": "audit", "url": "http://audit.example/hook", "secret_file": ")" + dir.path +
                                         R"(/missing.secret", "events": ["rolled_back", "nope"]}]},
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
        "rollout": {"candidate": "v2", "stages": [{"weight_bp": 500,
                    "checks": [{"url": "http://:80/x"}]}]}}]})");
    const std::string cmd = std::string(STAGEGATE_BIN_DIR) + "/stagegate --check-config " +
                            dir.path + "/gw.json 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) {
        out.append(buf, n);
    }
    EXPECT_NE(::pclose(p), 0) << out;
    EXPECT_NE(out.find("/notifications/webhooks/0/url"), std::string::npos) << out;
    EXPECT_NE(out.find("/notifications/webhooks/1/events/1"), std::string::npos) << out;
    EXPECT_NE(out.find("/models/0/rollout/stages/0/checks/0/url"), std::string::npos) << out;

    // Shape fixed, the missing secret file is what is left.
    write_file(dir.path + "/gw.json", R"({"listeners": [{"port": 8080}],
      "notifications": {"webhooks": [{"name": "audit", "url": "https://audit.example/hook",
                                      "secret_file": ")" + dir.path + R"(/missing.secret"}]},
      "models": [{"name": "m", "stable": "v1", "versions": [{"name": "v1", "endpoints": ["h:1"]}]}]})");
    p = ::popen(cmd.c_str(), "r");
    out.clear();
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) {
        out.append(buf, n);
    }
    EXPECT_NE(::pclose(p), 0) << out;
    EXPECT_NE(out.find("/notifications/webhooks/0/secret_file"), std::string::npos) << out;
}

}  // namespace
}  // namespace stagegate::test
