// A rollout's report assembled from its events: stages in order with their own requests, the
// gates as last judged in each, the decision that ended each; a pause does not split a stage;
// an earlier rollout's events and a restart after the end change nothing; a history that no
// longer reaches the start says so; the live stage comes last.
#include "stagegate/rollout/report.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace stagegate::rollout {
namespace {

using json = nlohmann::json;

constexpr std::int64_t t0 = 1'700'000'000'000;

json summary(const std::string& stage, std::size_t index, std::uint32_t weight,
             std::int64_t started_ms, std::uint64_t candidate, std::uint64_t stable,
             json gates = json::array(), std::string phase = "progressing") {
    stage_facts f;
    f.name = stage;
    f.index = index;
    f.weight_bp = weight;
    f.candidate_weight_bp = weight;
    f.phase = std::move(phase);
    f.started_ms = started_ms;
    f.candidate_requests = candidate;
    f.stable_requests = stable;
    auto s = stage_summary(f);
    if (!gates.empty()) {
        s["gates"] = std::move(gates);
        s["judged_ms"] = started_ms + 500;
    }
    return s;
}

json event(std::uint64_t id, std::int64_t time_ms, const std::string& type,
           const std::string& phase, const std::string& stage, json more = json::object()) {
    json e = {{"id", id},          {"time_ms", time_ms}, {"model", "m"},
              {"type", type},      {"phase", phase},     {"stage", stage},
              {"candidate", "v2"}, {"stable", "v1"},     {"text", type + " at " + stage}};
    for (auto& [k, v] : more.items()) {
        e[k] = v;
    }
    return e;
}

json one_gate(const std::string& verdict, double candidate) {
    return json::array({{{"gate", "error_rate_vs_stable"},
                         {"verdict", verdict},
                         {"candidate", candidate},
                         {"stable", 0.01},
                         {"explanation", "error rate ..."}}});
}

TEST(RolloutReport, TellsEachStageWithItsOwnRequestsGatesAndDecision) {
    const std::vector<json> events = {
        event(1, t0, "started", "progressing", "canary-5"),
        // A pause and a resume end stretches of canary-5, not the stage.
        event(2, t0 + 4000, "command", "paused", "canary-5",
              {{"command", "pause"},
               {"actor", "alice"},
               {"stage_summary",
                summary("canary-5", 0, 500, t0, 100, 1900, one_gate("inconclusive", 0.03))}}),
        event(3, t0 + 6000, "command", "progressing", "canary-5",
              {{"command", "resume"},
               {"actor", "alice"},
               {"stage_summary",
                summary("canary-5", 0, 500, t0 + 4000, 0, 0, json::array(), "paused")}}),
        event(4, t0 + 10000, "promoted", "progressing", "canary-25",
              {{"stage_summary",
                summary("canary-5", 0, 500, t0 + 6000, 150, 2850, one_gate("pass", 0.011))}}),
        event(5, t0 + 25000, "completed", "completed", "stable",
              {{"stage_summary",
                summary("canary-25", 1, 2500, t0 + 10000, 400, 1200, one_gate("pass", 0.0105))}}),
    };
    const auto r = assemble_report("m", events, std::nullopt, t0 + 99000);
    EXPECT_EQ(r["model"], "m");
    EXPECT_EQ(r["candidate"], "v2");
    EXPECT_EQ(r["stable"], "v1");
    EXPECT_EQ(r["phase"], "completed");
    EXPECT_EQ(r["started_ms"], t0);
    EXPECT_EQ(r["ended_ms"], t0 + 25000);
    EXPECT_EQ(r["complete_history"], true);
    const auto& stages = r["stages"];
    ASSERT_EQ(stages.size(), 2u) << r.dump(2);

    const auto& first = stages[0];
    EXPECT_EQ(first["name"], "canary-5");
    EXPECT_EQ(first["index"], 0);
    EXPECT_EQ(first["weight_bp"], 500);
    EXPECT_EQ(first["started_ms"], t0);
    EXPECT_EQ(first["ended_ms"], t0 + 10000);
    EXPECT_DOUBLE_EQ(first["seconds"].get<double>(), 10.0);
    EXPECT_EQ(first["current"], false);
    EXPECT_EQ(first["candidate_requests"], 250);  // both serving stretches
    EXPECT_EQ(first["stable_requests"], 4750);
    EXPECT_EQ(first["gates"], one_gate("pass", 0.011));  // the last judged, not the paused one's
    EXPECT_EQ(first["judged_ms"], t0 + 6500);
    EXPECT_EQ(first["decision"]["type"], "promoted");
    EXPECT_EQ(first["decision"]["next_stage"], "canary-25");
    EXPECT_EQ(first["decision"]["id"], 4);
    ASSERT_EQ(first["events"].size(), 2u);
    EXPECT_EQ(first["events"][0]["type"], "command");
    EXPECT_EQ(first["events"][0]["id"], 2);
    EXPECT_EQ(first["events"][1]["id"], 3);

    const auto& second = stages[1];
    EXPECT_EQ(second["name"], "canary-25");
    EXPECT_EQ(second["index"], 1);
    EXPECT_EQ(second["candidate_requests"], 400);
    EXPECT_DOUBLE_EQ(second["seconds"].get<double>(), 15.0);
    EXPECT_EQ(second["decision"]["type"], "completed");
    EXPECT_EQ(second["decision"]["next_stage"], nullptr);
    EXPECT_EQ(second["gates"][0]["verdict"], "pass");
}

TEST(RolloutReport, AnEarlierRolloutAndARestartAfterTheEndChangeNothing) {
    std::vector<json> events = {
        event(1, t0 - 9000, "started", "progressing", "canary-5"),
        event(2, t0 - 8000, "rolled_back", "rolled_back", "rolled-back",
              {{"stage_summary", summary("canary-5", 0, 500, t0 - 9000, 7, 70)}}),
        event(3, t0, "started", "progressing", "canary-5"),
        event(4, t0 + 1000, "rolled_back", "rolled_back", "rolled-back",
              {{"stage_summary", summary("canary-5", 0, 500, t0, 30, 300, one_gate("fail", 0.2))}}),
    };
    const auto before = assemble_report("m", events, std::nullopt, t0 + 5000);
    ASSERT_EQ(before["stages"].size(), 1u) << before.dump(2);
    EXPECT_EQ(before["stages"][0]["candidate_requests"], 30);
    EXPECT_EQ(before["stages"][0]["decision"]["type"], "rolled_back");
    EXPECT_EQ(before["phase"], "rolled_back");
    EXPECT_EQ(before["started_ms"], t0);
    EXPECT_EQ(before["ended_ms"], t0 + 1000);
    // The gateway restarted (it tells the rollout "resumed", rolled back as it was), later.
    events.push_back(event(5, t0 + 60000, "resumed", "rolled_back", "rolled-back"));
    EXPECT_EQ(assemble_report("m", events, std::nullopt, t0 + 90000), before);
}

TEST(RolloutReport, AHistoryThatNoLongerReachesTheStartSaysSo) {
    const std::vector<json> events = {
        event(8, t0 + 1000, "promoted", "progressing", "canary-25",
              {{"stage_summary", summary("canary-5", 0, 500, t0, 10, 90)}}),
    };
    const auto r = assemble_report("m", events, std::nullopt, t0 + 5000);
    EXPECT_EQ(r["complete_history"], false);
    EXPECT_EQ(r["started_ms"], nullptr);
    ASSERT_EQ(r["stages"].size(), 2u) << r.dump(2);
    EXPECT_EQ(r["stages"][0]["name"], "canary-5");
    EXPECT_EQ(r["stages"][0]["started_ms"], t0);  // from the summary itself
    EXPECT_EQ(r["stages"][1]["name"], "canary-25");
    EXPECT_EQ(r["stages"][1]["current"], true);
}

TEST(RolloutReport, TheStageRunningNowComesLastWithItsLiveFigures) {
    const std::vector<json> events = {
        event(1, t0, "started", "progressing", "canary-5"),
        event(2, t0 + 1000, "promoted", "progressing", "canary-25",
              {{"stage_summary", summary("canary-5", 0, 500, t0, 10, 90)}}),
        event(3, t0 + 2000, "check_failed", "", "canary-25"),
    };
    const auto running =
        summary("canary-25", 1, 2500, t0 + 1000, 40, 120, one_gate("inconclusive", 0.02));
    const auto r = assemble_report("m", events, running, t0 + 4000);
    ASSERT_EQ(r["stages"].size(), 2u) << r.dump(2);
    const auto& now = r["stages"][1];
    EXPECT_EQ(now["name"], "canary-25");
    EXPECT_EQ(now["current"], true);
    EXPECT_EQ(now["ended_ms"], nullptr);
    EXPECT_EQ(now["decision"], nullptr);
    EXPECT_DOUBLE_EQ(now["seconds"].get<double>(), 3.0);
    EXPECT_EQ(now["candidate_requests"], 40);
    EXPECT_EQ(now["gates"][0]["verdict"], "inconclusive");
    ASSERT_EQ(now["events"].size(), 1u);
    EXPECT_EQ(now["events"][0]["type"], "check_failed");
    EXPECT_EQ(r["ended_ms"], nullptr);
    EXPECT_EQ(r["phase"], "progressing");
}

TEST(RolloutReport, GatesCarryTheirEffectAgainstStable) {
    evaluation e;
    e.gates.push_back({"p99_latency_vs_stable", verdict::pass, 0.024, 0.020, 0.026, 0.021,
                       std::numeric_limits<double>::infinity(), 300, 3000, "p99 ..."});
    e.gates.push_back({"error_rate", verdict::pass, 0.01, 0, 0.05, 0.001, 0.03, 300, 3000, "..."});
    e.gates.push_back(
        {"error_rate_vs_stable", verdict::inconclusive, 0.01, 0, 0.005, 0, 0.03, 300, 3000, "..."});
    const auto j = gates_json(e);
    ASSERT_EQ(j.size(), 3u);
    EXPECT_NEAR(j[0]["ratio"].get<double>(), 1.2, 1e-12);
    EXPECT_NEAR(j[0]["difference"].get<double>(), 0.004, 1e-12);
    EXPECT_EQ(j[0]["candidate_high"], nullptr);  // not yet bounded
    EXPECT_EQ(j[0]["candidate_low"], 0.021);
    EXPECT_EQ(j[1]["ratio"], nullptr);  // against a fixed limit: no effect
    EXPECT_EQ(j[1]["difference"], nullptr);
    EXPECT_EQ(j[2]["ratio"], nullptr);  // stable's is 0
    EXPECT_NEAR(j[2]["difference"].get<double>(), 0.01, 1e-12);
}

}  // namespace
}  // namespace stagegate::rollout
