#include "stagegate/rollout/controller.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace stagegate::rollout {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

struct applied_route {
    std::string stable;
    std::string candidate;
    std::uint32_t candidate_bp = 0;
    std::string stage;
};

class fake_environment : public environment {
public:
    std::map<std::tuple<std::string, std::string, std::string>, metrics::series_counts> counts;
    std::map<std::string, applied_route> routes;
    int resets = 0;

    metrics::series_counts stage_counts(const std::string& m, const std::string& v,
                                        const std::string& s) override {
        return counts[{m, v, s}];
    }
    void reset_stage(const std::string& m, const std::string& v, const std::string& s) override {
        counts[{m, v, s}] = {};
        ++resets;
    }
    result<void> apply(const std::string& m, const std::string& stable,
                       const std::string& candidate, std::uint32_t bp,
                       const std::string& stage, std::uint32_t, mirror_settings mirror) override {
        routes[m] = {stable, candidate, bp, stage};
        mirrors[m] = mirror.bp;
        return {};
    }
    std::map<std::string, std::uint32_t> mirrors;
    std::optional<config::predictions> predictions;
    std::optional<double> age;
    std::optional<config::predictions> predictions_of(const std::string&) override {
        return predictions;
    }
    std::optional<double> version_age_seconds(const std::string&, const std::string&) override {
        return age;
    }
    std::int64_t now_ms = 1'700'000'000'000;
    std::int64_t wall_ms() override { return now_ms; }
    // Checks wait here until the test answers them.
    struct pending_checks {
        std::vector<config::http_check> checks;
        nlohmann::json payload;
        std::function<void(std::vector<notify::check_result>)> done;
    };
    std::vector<pending_checks> checks_called;
    void run_checks(const std::vector<config::http_check>& c, const nlohmann::json& payload,
                    std::function<void(std::vector<notify::check_result>)> done) override {
        checks_called.push_back({c, payload, std::move(done)});
    }
    // Answers the oldest pending call: every check with `status`.
    void answer_checks(unsigned status) {
        auto call = std::move(checks_called.front());
        checks_called.erase(checks_called.begin());
        std::vector<notify::check_result> results;
        for (const auto& c : call.checks) {
            notify::check_result r;
            r.url = c.url;
            r.status = status;
            r.passed = status >= 200 && status < 300;
            r.rollback_on_failure = c.rollback_on_failure;
            r.detail = status >= 300 ? "not yet" : "ok";
            results.push_back(r);
        }
        call.done(std::move(results));
    }

    // n requests on a version in a stage, `errors` of them 503, all at `micros`.
    void traffic(const std::string& v, const std::string& stage, std::uint64_t n,
                 std::uint64_t errors, std::uint64_t micros = 20000) {
        auto& c = counts[{"m", v, stage}];
        c.codes[metrics::code_slot(200)] += n - errors;
        c.codes[metrics::code_slot(503)] += errors;
        for (std::uint64_t i = 0; i < n; ++i) {
            c.latency.record(micros);
            if (i >= errors) {
                c.success_latency.record(micros);
            }
        }
    }
};

config::gateway rollout_config() {
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:1"]},
                     {"name": "v2", "endpoints": ["127.0.0.1:2"]}],
        "rollout": {"candidate": "v2", "interval_ms": 1000,
          "stages": [{"weight_bp": 500, "min_bake_ms": 10000, "min_requests": 200},
                     {"weight_bp": 2500, "min_bake_ms": 10000, "min_requests": 200}],
          "gates": {"min_requests": 100, "max_error_rate": 0.02, "max_error_rate_delta": 0.01}}}]
    })");
    EXPECT_TRUE(cfg) << cfg.error().describe();
    return *cfg;
}

struct fixture {
    test::temp_dir tmp;
    std::string dir = tmp.path;
    fake_environment env;
    std::optional<state_store> store;
    std::unique_ptr<controller> ctl;
    clock::time_point t0 = clock::time_point{} + 1000s;

    explicit fixture(const std::function<void(config::rollout&)>& tweak = {}) {
        store.emplace(*state_store::open(dir));
        ctl = std::make_unique<controller>(env, &*store);
        auto cfg = rollout_config();
        if (tweak) {
            tweak(*cfg.models[0].rollout_spec);
        }
        auto ok = ctl->init(cfg, t0);
        EXPECT_TRUE(ok) << ok.error().describe();
    }
    // Healthy traffic on both versions in `stage`, enough for every gate to pass (its bounds
    // within the tolerances) and for the stage minimum.
    void healthy(const std::string& stage) {
        env.traffic("v2", stage, 2000, 2);
        env.traffic("v1", stage, 38000, 40);
    }
    json persisted() {
        std::ifstream in(dir + "/rollout-m.json");
        return json::parse(in);
    }
    std::vector<json> events() { return store->recent_events(100, "m"); }
};

// Widening asks only for no hint of harm: a promotion on gates that are on track but not yet
// proven says so, instead of "all gates passed".
TEST(Controller, APromotionOnGatesNotYetProvenSaysWhichHeld) {
    fixture f;
    f.env.traffic("v2", "canary-5", 300, 1);
    f.env.traffic("v1", "canary-5", 5700, 19);
    f.ctl->on_tick(f.t0 + 11s);
    ASSERT_EQ(f.env.routes["m"].stage, "canary-25");
    const auto text = f.events().back()["text"].get<std::string>();
    EXPECT_EQ(text.find("all gates passed"), std::string::npos) << text;
    EXPECT_NE(text.find(": no gate shows harm ("), std::string::npos) << text;
    EXPECT_NE(text.find(" passed, the others still open) over 300 candidate requests"),
              std::string::npos)
        << text;
}

TEST(Controller, StartsAtTheFirstStageAndPersistsIt) {
    fixture f;
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 500u);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");
    EXPECT_EQ(f.env.routes["m"].stable, "v1");
    EXPECT_EQ(f.persisted()["phase"], "progressing");
    EXPECT_EQ(f.persisted()["stage_index"], 0);
    ASSERT_EQ(f.events().size(), 1u);
    EXPECT_EQ(f.events()[0]["type"], "started");
}

TEST(Controller, HoldsUntilBakedAndSampledThenPromotesThenCompletes) {
    fixture f;
    f.healthy("canary-5");
    f.ctl->on_tick(f.t0 + 5s);  // gates pass but bake time (10 s) not met
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");
    f.ctl->on_tick(f.t0 + 11s);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-25");
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 2500u);
    EXPECT_EQ(f.persisted()["stage_index"], 1);
    auto e = f.events().back();
    EXPECT_EQ(e["type"], "promoted");
    EXPECT_NE(e["text"].get<std::string>().find("promoted m v2 at canary-5 (5 %) to canary-25"),
              std::string::npos)
        << e["text"];
    EXPECT_NE(e["text"].get<std::string>().find(": all gates passed over"), std::string::npos)
        << e["text"];
    // The new stage's own minimum starts from zero: without new traffic, nothing happens
    // (although the evidence from the first stage still counts).
    f.ctl->on_tick(f.t0 + 30s);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-25");
    f.env.traffic("v2", "canary-25", 400, 0);
    f.env.traffic("v1", "canary-25", 1200, 1);
    f.ctl->on_tick(f.t0 + 31s);
    EXPECT_EQ(f.env.routes["m"].stage, "stable");
    EXPECT_EQ(f.env.routes["m"].stable, "v2");
    EXPECT_EQ(f.persisted()["phase"], "completed");
    EXPECT_EQ(f.ctl->status("m", f.t0)["stable"], "v2");
}

// The report is told from the events: each decision that ends a stage carries what the stage
// saw (rollout/report), and the stage running now comes from the controller.
TEST(Controller, EventsCarryEachStagesSummaryForTheReport) {
    fixture f;
    f.healthy("canary-5");
    f.env.now_ms += 5000;
    f.ctl->on_tick(f.t0 + 5s);  // judged, held: bake time not met
    ASSERT_TRUE(f.ctl->command("m", "pause", {}, "alice", "a look", f.t0 + 6s));
    f.env.now_ms += 2000;
    ASSERT_TRUE(f.ctl->command("m", "resume", {}, "alice", "", f.t0 + 7s));
    f.healthy("canary-5");
    f.env.now_ms += 11000;
    f.ctl->on_tick(f.t0 + 18s);
    ASSERT_EQ(f.env.routes["m"].stage, "canary-25");
    f.env.traffic("v2", "canary-25", 400, 0);
    f.env.traffic("v1", "canary-25", 1200, 1);
    const auto running = f.ctl->running_stage("m");
    ASSERT_TRUE(running);
    EXPECT_EQ((*running)["stage"], "canary-25");
    EXPECT_EQ((*running)["candidate_requests"], 400);
    EXPECT_EQ((*running)["judged_ms"], nullptr);  // not judged in this stage yet
    const auto live = assemble_report("m", f.events(), running, f.env.now_ms + 1000);
    ASSERT_EQ(live["stages"].size(), 2u) << live.dump(2);
    EXPECT_EQ(live["stages"][1]["current"], true);

    f.env.now_ms += 13000;
    f.ctl->on_tick(f.t0 + 31s);
    ASSERT_EQ(f.persisted()["phase"], "completed");
    EXPECT_FALSE(f.ctl->running_stage("m"));
    const auto events = f.events();
    ASSERT_TRUE(events.back().contains("stage_summary")) << events.back().dump(2);
    const auto r = assemble_report("m", events, std::nullopt, f.env.now_ms);
    ASSERT_EQ(r["stages"].size(), 2u) << r.dump(2);
    const auto& first = r["stages"][0];
    EXPECT_EQ(first["name"], "canary-5");
    EXPECT_EQ(first["candidate_requests"], 4000);  // before and after the pause
    EXPECT_EQ(first["stable_requests"], 76000);
    EXPECT_DOUBLE_EQ(first["seconds"].get<double>(), 18.0);
    EXPECT_EQ(first["decision"]["type"], "promoted");
    EXPECT_EQ(first["decision"]["next_stage"], "canary-25");
    ASSERT_EQ(first["events"].size(), 2u);  // the pause and the resume
    EXPECT_EQ(first["events"][0]["type"], "command");
    ASSERT_FALSE(first["gates"].empty());
    for (const auto& g : first["gates"]) {
        EXPECT_EQ(g["verdict"], "pass") << g.dump();
    }
    const auto& second = r["stages"][1];
    EXPECT_EQ(second["name"], "canary-25");
    EXPECT_EQ(second["candidate_requests"], 400);
    EXPECT_EQ(second["stable_requests"], 1200);
    EXPECT_EQ(second["decision"]["type"], "completed");
    EXPECT_FALSE(second["gates"].empty());
    EXPECT_EQ(r["phase"], "completed");
    EXPECT_EQ(r["complete_history"], true);
}

TEST(Controller, FailingGateRollsBackWithAnExplanation) {
    fixture f;
    f.env.traffic("v2", "canary-5", 812, 33);
    f.env.traffic("v1", "canary-5", 15440, 46);
    f.ctl->on_tick(f.t0 + 2s);  // no need to wait for bake time
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 0u);
    EXPECT_EQ(f.env.routes["m"].stage, "rolled-back");
    EXPECT_EQ(f.persisted()["phase"], "rolled_back");
    auto text = f.events().back()["text"].get<std::string>();
    EXPECT_NE(text.find("rolled back m v2 at canary-5 (5 %)"), std::string::npos) << text;
    EXPECT_NE(text.find("4.06 %"), std::string::npos) << text;
    EXPECT_FALSE(f.events().back()["gates"].empty());
}

TEST(Controller, PausedHoldsButStillRollsBack) {
    fixture f;
    ASSERT_TRUE(f.ctl->command("m", "pause", {}, "alice", "investigating", f.t0));
    f.env.traffic("v2", "canary-5", 300, 0);
    f.env.traffic("v1", "canary-5", 5700, 0);
    f.ctl->on_tick(f.t0 + 20s);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");  // held
    f.env.traffic("v2", "canary-5", 300, 100);
    f.ctl->on_tick(f.t0 + 22s);
    EXPECT_EQ(f.env.routes["m"].stage, "rolled-back");
}

TEST(Controller, OperatorCommandsAndTheirLimits) {
    fixture f;
    auto w = f.ctl->command("m", "set_weight", {{"weight_bp", 1000}}, "bob", "", f.t0);
    ASSERT_TRUE(w) << w.error().describe();
    EXPECT_EQ((*w)["phase"], "paused");
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 1000u);
    EXPECT_EQ(f.persisted()["manual_weight_bp"], 1000);
    auto bad = f.ctl->command("m", "set_weight", {{"weight_bp", 20000}}, "bob", "", f.t0);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, "invalid_argument");
    ASSERT_TRUE(f.ctl->command("m", "resume", {}, "bob", "", f.t0));
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 500u);
    ASSERT_TRUE(f.ctl->command("m", "promote", {}, "bob", "", f.t0));
    EXPECT_EQ(f.env.routes["m"].stage, "canary-25");
    ASSERT_TRUE(f.ctl->command("m", "rollback", {}, "bob", "bad", f.t0));
    auto again = f.ctl->command("m", "promote", {}, "bob", "", f.t0);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, "invalid_state");
    ASSERT_TRUE(f.ctl->command("m", "restart", {}, "bob", "", f.t0));
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");
    auto full = f.ctl->command("m", "promote", {{"full", true}}, "bob", "", f.t0);
    ASSERT_TRUE(full);
    EXPECT_EQ((*full)["phase"], "completed");
    EXPECT_EQ(f.env.routes["m"].stable, "v2");
    auto unknown = f.ctl->command("nope", "pause", {}, "bob", "", f.t0);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, "unknown_rollout");
    // Every command is in the event log with who did it.
    int commands = 0;
    for (const auto& e : f.events()) {
        if (e["type"] == "command") {
            ++commands;
            EXPECT_EQ(e["actor"], "bob");
        }
    }
    EXPECT_EQ(commands, 6);
}

TEST(Controller, ResumesPersistedStageAfterRestart) {
    fixture f;
    ASSERT_TRUE(f.ctl->command("m", "promote", {}, "ops", "", f.t0));
    fake_environment env2;
    controller ctl2(env2, &*f.store);
    ASSERT_TRUE(ctl2.init(rollout_config(), f.t0 + 100s));
    EXPECT_EQ(env2.routes["m"].stage, "canary-25");
    EXPECT_EQ(env2.routes["m"].candidate_bp, 2500u);
    EXPECT_EQ(f.events().back()["type"], "resumed");
}

// A cluster replica that rolled back while it led without etcd: a stored state that still
// gives the candidate traffic (what the next leader routes by) does not undo it, nor does
// leading again (init after adopt, as plane::lead does); the next tick records it.
TEST(Controller, AnUnrecordedRollbackIsNotUndoneByTheStoredStateOrByLeadingAgain) {
    fixture f;
    auto stored = f.store->load_all();  // progressing at canary-5
    ASSERT_TRUE(stored);
    ASSERT_TRUE(stored->count("m"));
    std::filesystem::remove_all(f.dir);
    auto rolled = f.ctl->command("m", "rollback", {}, "ops", "", f.t0);
    ASSERT_FALSE(rolled);
    ASSERT_EQ(rolled.error().code, "not_durable");
    auto adopted = f.ctl->adopt("m", stored->at("m"), nullptr, f.t0 + 1s);
    ASSERT_TRUE(adopted) << adopted.error().describe();
    EXPECT_FALSE(*adopted);
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 0u);
    ASSERT_EQ(f.ctl->unrecorded_rollbacks().size(), 1u);
    EXPECT_EQ(f.ctl->unrecorded_rollbacks()[0].candidate, "v2");

    std::filesystem::create_directories(f.dir);
    ASSERT_TRUE(f.ctl->init(rollout_config(), f.t0 + 2s));
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 0u);
    f.ctl->on_tick(f.t0 + 10s);
    EXPECT_TRUE(f.ctl->find("m")->durable);
    EXPECT_EQ(f.ctl->status("m", f.t0 + 10s)["phase"], "rolled_back");
    EXPECT_TRUE(f.ctl->unrecorded_rollbacks().empty());
}

TEST(Controller, UnwritableStateRefusesCommandsAndKeepsState) {
    fixture f;
    std::filesystem::remove_all(f.dir);  // the state directory is gone
    auto r = f.ctl->command("m", "promote", {}, "ops", "", f.t0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, "state_io_failed");
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");  // nothing half-applied
    EXPECT_EQ(f.ctl->status("m", f.t0)["stage"], "canary-5");
    // A rollback still takes effect (less exposure is always the safe side), but says it is
    // not durable, and nothing else is recorded before it is.
    auto rolled = f.ctl->command("m", "rollback", {}, "ops", "", f.t0);
    ASSERT_FALSE(rolled);
    EXPECT_EQ(rolled.error().code, "not_durable");
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 0u);
    EXPECT_EQ(f.ctl->status("m", f.t0)["phase"], "rolled_back");
    EXPECT_EQ(f.ctl->status("m", f.t0)["durable"], false);
    EXPECT_FALSE(f.ctl->find("m")->durable);
    auto restart = f.ctl->command("m", "restart", {}, "ops", "", f.t0);
    ASSERT_FALSE(restart);
    EXPECT_EQ(restart.error().code, "state_io_failed");
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 0u);
    // The directory is back: the next tick records the rollback, and a restart resumes it.
    std::filesystem::create_directories(f.dir);
    f.ctl->on_tick(f.t0 + 10s);
    EXPECT_TRUE(f.ctl->find("m")->durable);
    EXPECT_EQ(f.events().back()["command"], "rollback");
    EXPECT_EQ(f.events().back()["state"]["phase"], "rolled_back");
    fake_environment env2;
    controller ctl2(env2, &*f.store);
    ASSERT_TRUE(ctl2.init(rollout_config(), f.t0 + 20s));
    EXPECT_EQ(ctl2.status("m", f.t0 + 20s)["phase"], "rolled_back");
    EXPECT_EQ(env2.routes["m"].candidate_bp, 0u);
}

TEST(Controller, MaximumStageDurationHoldsOrRollsBack) {
    const auto t0 = clock::time_point{} + 1000s;
    for (bool rollback : {false, true}) {
        auto cfg = rollout_config();
        cfg.models[0].rollout_spec->stages[0].max_duration = std::chrono::milliseconds(30000);
        cfg.models[0].rollout_spec->stages[0].rollback_on_max_duration = rollback;
        test::temp_dir other;
        auto store = state_store::open(other.path);
        fake_environment env;
        controller ctl(env, &*store);
        ASSERT_TRUE(ctl.init(cfg, t0));
        env.traffic("v2", "canary-5", 20, 0);  // never enough to promote (min 200)
        ctl.on_tick(t0 + 20s);
        EXPECT_EQ(env.routes["m"].stage, "canary-5");
        ctl.on_tick(t0 + 31s);
        EXPECT_EQ(env.routes["m"].stage, rollback ? "rolled-back" : "canary-5");
        auto last = store->recent_events(10, "m").back();
        EXPECT_EQ(last["type"], rollback ? "rolled_back" : "stuck");
        EXPECT_NE(last["text"].get<std::string>().find("maximum duration"), std::string::npos)
            << last["text"];
    }
}

TEST(Controller, BrokenCandidateIsRolledBackAtOnce) {
    fixture f;
    f.ctl->on_version_broken("m", "v1", 20, f.t0);  // the stable version: not ours to judge
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");
    f.ctl->on_version_broken("m", "v2", 20, f.t0);
    EXPECT_EQ(f.env.routes["m"].stage, "rolled-back");
    EXPECT_NE(f.events().back()["text"].get<std::string>().find("last 20 requests all failed"),
              std::string::npos);
}

}  // namespace
}  // namespace stagegate::rollout

namespace stagegate::rollout {
namespace {

config::http_check check(const std::string& url, bool rollback = false) {
    config::http_check c;
    c.url = url;
    c.rollback_on_failure = rollback;
    return c;
}

TEST(ControllerApproval, HoldsUntilPromotedAndRecordsTheApprover) {
    fixture f([](config::rollout& r) { r.stages[0].approval = true; });
    f.healthy("canary-5");
    f.ctl->on_tick(f.t0 + 11s);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");  // ready, but waits for approval
    EXPECT_EQ(f.events().back()["type"], "approval_pending");
    EXPECT_TRUE(f.ctl->status("m", f.t0 + 11s)["pending_approval"]);
    f.ctl->on_tick(f.t0 + 13s);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");
    EXPECT_EQ(f.events().size(), 2u);  // pending is logged once
    ASSERT_TRUE(f.ctl->command("m", "promote", {}, "carol", "reviewed", f.t0 + 14s));
    EXPECT_EQ(f.env.routes["m"].stage, "canary-25");
    auto e = f.events().back();
    EXPECT_EQ(e["actor"], "carol");
    EXPECT_EQ(e["approved"], true);
    EXPECT_FALSE(f.ctl->status("m", f.t0 + 14s)["pending_approval"]);
}

TEST(ControllerApproval, AFailingCandidateIsStillRolledBackWhileWaiting) {
    fixture f([](config::rollout& r) { r.stages[0].approval = true; });
    f.healthy("canary-5");
    f.ctl->on_tick(f.t0 + 11s);
    ASSERT_TRUE(f.ctl->status("m", f.t0 + 11s)["pending_approval"]);
    f.env.traffic("v2", "canary-5", 300, 60);
    f.ctl->on_tick(f.t0 + 13s);
    EXPECT_EQ(f.env.routes["m"].stage, "rolled-back");
}

TEST(ControllerChecks, StageChecksHoldOnFailureAndWidenOnSuccess) {
    fixture f([](config::rollout& r) { r.stages[0].checks = {check("http://eval/smoke")}; });
    f.healthy("canary-5");
    f.ctl->on_tick(f.t0 + 11s);
    ASSERT_EQ(f.env.checks_called.size(), 1u);
    const auto& payload = f.env.checks_called[0].payload;
    EXPECT_EQ(payload["kind"], "stage");
    EXPECT_EQ(payload["next_stage"], "canary-25");
    EXPECT_EQ(payload["metrics"]["candidate"]["requests"], 2000);
    f.ctl->on_tick(f.t0 + 12s);  // one call at a time
    EXPECT_EQ(f.env.checks_called.size(), 1u);
    f.env.answer_checks(500);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");  // held
    EXPECT_EQ(f.events().back()["type"], "check_failed");
    EXPECT_NE(f.events().back()["text"].get<std::string>().find("answered 500: not yet"),
              std::string::npos);
    f.ctl->on_tick(f.t0 + 13s);  // asks again
    ASSERT_EQ(f.env.checks_called.size(), 1u);
    f.env.answer_checks(200);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");  // widens at the next evaluation
    f.ctl->on_tick(f.t0 + 14s);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-25");
    EXPECT_TRUE(f.env.checks_called.empty());
}

TEST(ControllerChecks, FailureWithRollbackRollsBack) {
    fixture f([](config::rollout& r) {
        r.stages[0].checks = {check("http://eval/ok"), check("http://eval/strict", true)};
    });
    f.healthy("canary-5");
    f.ctl->on_tick(f.t0 + 11s);
    f.env.answer_checks(503);
    EXPECT_EQ(f.env.routes["m"].stage, "rolled-back");
    EXPECT_NE(f.events().back()["text"].get<std::string>().find("stage check failed"),
              std::string::npos);
}

TEST(ControllerChecks, StaleAnswersAreIgnored) {
    fixture f([](config::rollout& r) { r.stages[0].checks = {check("http://eval/smoke")}; });
    f.healthy("canary-5");
    f.ctl->on_tick(f.t0 + 11s);
    ASSERT_TRUE(f.ctl->command("m", "promote", {}, "dave", "", f.t0 + 12s));
    f.env.answer_checks(500);  // about canary-5, which is over
    EXPECT_EQ(f.env.routes["m"].stage, "canary-25");
    EXPECT_EQ(f.events().back()["type"], "command");
}

TEST(ControllerChecks, PreChecksKeepTheCandidateAtZeroUntilTheyPass) {
    fixture f([](config::rollout& r) { r.pre_checks = {check("http://eval/offline")}; });
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 0u);
    EXPECT_EQ(f.env.routes["m"].stage, "pre-checks");
    EXPECT_EQ(f.persisted()["pre_checks_done"], false);
    f.ctl->on_tick(f.t0 + 1s);
    ASSERT_EQ(f.env.checks_called.size(), 1u);
    EXPECT_EQ(f.env.checks_called[0].payload["kind"], "pre");
    f.env.answer_checks(200);
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 500u);
    EXPECT_EQ(f.env.routes["m"].stage, "canary-5");
    EXPECT_EQ(f.persisted()["pre_checks_done"], true);
    EXPECT_EQ(f.events().back()["type"], "checks_passed");
}

TEST(ControllerChecks, PostCheckFailureRollsACompletedRolloutBack) {
    fixture f([](config::rollout& r) {
        r.stages.resize(1);
        r.post_checks = {check("http://eval/after", true)};
    });
    f.healthy("canary-5");
    f.ctl->on_tick(f.t0 + 11s);
    ASSERT_EQ(f.env.routes["m"].stable, "v2");  // completed
    f.ctl->on_tick(f.t0 + 12s);
    ASSERT_EQ(f.env.checks_called.size(), 1u);
    EXPECT_EQ(f.env.checks_called[0].payload["kind"], "post");
    f.env.answer_checks(500);
    EXPECT_EQ(f.env.routes["m"].stable, "v1");
    EXPECT_EQ(f.env.routes["m"].candidate_bp, 0u);
    EXPECT_EQ(f.persisted()["phase"], "rolled_back");
    f.ctl->on_tick(f.t0 + 20s);
    EXPECT_TRUE(f.env.checks_called.empty());  // post-checks run once
}

}  // namespace
}  // namespace stagegate::rollout
