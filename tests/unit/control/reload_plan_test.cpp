// control::plan_reload, as a pure function: what a config reload does to each model's traffic
// and rollout, from the running config, the live routes and the rollouts' states.
#include "stagegate/control/reload_plan.hpp"

#include <gtest/gtest.h>

namespace stagegate::control {
namespace {

using rollout::phase;

config::gateway running_config() {
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [
        {"name": "m", "stable": "v1",
         "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]},
                      {"name": "v2", "endpoints": ["127.0.0.1:9002"]},
                      {"name": "v3", "endpoints": ["127.0.0.1:9003"]}]}
      ]
    })");
    EXPECT_TRUE(cfg) << cfg.error().describe();
    return *cfg;
}

config::rollout spec_of(const std::string& candidate, std::size_t stages) {
    config::rollout r;
    r.candidate = candidate;
    for (std::size_t i = 0; i < stages; ++i) {
        config::rollout_stage s;
        s.weight = static_cast<std::uint32_t>(500 * (i + 1));
        s.name = "canary-" + std::to_string(5 * (i + 1));
        r.stages.push_back(s);
    }
    return r;
}

// The running config with a rollout of `candidate` through `stages` stages for m.
config::gateway with_rollout(const std::string& candidate, std::size_t stages = 3) {
    auto cfg = running_config();
    cfg.models[0].rollout_spec = spec_of(candidate, stages);
    return cfg;
}

// m's live route: weights by version (v1, v2, v3), stable v1 unless said otherwise.
routing::route_snapshot routes(std::vector<std::uint32_t> weights, const std::string& stage,
                               std::uint32_t stable = 0) {
    routing::model_route m;
    m.name = "m";
    for (const char* v : {"v1", "v2", "v3"}) {
        routing::version_route r;
        r.name = v;
        m.versions.push_back(r);
    }
    m.weights = std::move(weights);
    m.stable = stable;
    m.stage = stage;
    routing::route_snapshot snap;
    snap.models.push_back(std::move(m));
    return snap;
}

// m's live route while a rollout sends 5 % to v2, watched after 20 failures in a row.
routing::route_snapshot canary_routes() {
    auto snap = routes({9500, 500, 0}, "canary-5");
    snap.models[0].versions[1].trip_after = 20;
    return snap;
}

rollout_states state_of(phase ph, const std::string& candidate, std::size_t stage_index = 0,
                        const std::string& stable = "v1") {
    rollout::controller::summary s{ph, candidate, stable, stage_index, "canary-5", 1, true};
    return {{"m", s}};
}

const model_plan& plan_for(const reload_plan& plan, const std::string& model) {
    for (const auto& m : plan.models) {
        if (m.model == model) {
            return m;
        }
    }
    ADD_FAILURE() << "no plan for " << model;
    static const model_plan none;
    return none;
}

// The plan is refused for exactly one reason.
void expect_refused(const reload_plan& plan, const std::string& path, const std::string& message) {
    const auto problems = plan.problems();
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_EQ(problems[0].path, path);
    EXPECT_EQ(problems[0].message, message);
}

TEST(ReloadPlan, TheSameConfigKeepsAnActiveRolloutsTrafficAndGivesItTheSpecAgain) {
    const auto cfg = with_rollout("v2");
    const auto plan = plan_reload(cfg, canary_routes(), state_of(phase::progressing, "v2"), cfg);
    EXPECT_TRUE(plan.problems().empty());
    ASSERT_EQ(plan.models.size(), 1u);
    const auto& m = plan.models[0];
    ASSERT_TRUE(m.carried);
    EXPECT_EQ(m.carried->weights,
              (std::map<std::string, std::uint32_t>{{"v1", 9500}, {"v2", 500}}));
    EXPECT_EQ(m.carried->stage, "canary-5");
    EXPECT_EQ(m.carried->stable, "v1");
    EXPECT_EQ(m.carried->watched, "v2");
    EXPECT_EQ(m.carried->trip_after, 20u);
    EXPECT_EQ(m.rollout, rollout_step::update_spec);
    ASSERT_TRUE(m.spec);
    EXPECT_EQ(m.spec->candidate, "v2");
    EXPECT_FALSE(m.removed);
    EXPECT_NE(m.why.find("active rollout of v2 keeps its traffic"), std::string::npos) << m.why;
}

TEST(ReloadPlan, AModelWithoutRolloutsFollowsTheConfig) {
    const auto cfg = running_config();
    const auto plan = plan_reload(cfg, routes({10000, 0, 0}, "stable"), {}, cfg);
    EXPECT_TRUE(plan.problems().empty());
    const auto& m = plan_for(plan, "m");
    EXPECT_FALSE(m.carried);
    EXPECT_EQ(m.rollout, rollout_step::none);
    EXPECT_FALSE(m.spec);
}

TEST(ReloadPlan, AnAddedModelFollowsTheConfigAndStartsItsRollout) {
    const auto running = running_config();
    auto next = running;
    auto added = next.models[0];
    added.name = "n";
    added.rollout_spec = spec_of("v3", 2);
    next.models.push_back(added);
    const auto plan = plan_reload(running, routes({10000, 0, 0}, "stable"), {}, next);
    EXPECT_TRUE(plan.problems().empty());
    ASSERT_EQ(plan.models.size(), 2u);
    const auto& n = plan_for(plan, "n");
    EXPECT_FALSE(n.carried);
    EXPECT_EQ(n.rollout, rollout_step::start);
    ASSERT_TRUE(n.spec);
    EXPECT_EQ(n.spec->candidate, "v3");
    EXPECT_EQ(n.spec->stages.size(), 2u);
    EXPECT_EQ(plan_for(plan, "m").rollout, rollout_step::none);
}

TEST(ReloadPlan, RemovingAModelUnderAnActiveRolloutIsRefused) {
    const auto running = with_rollout("v2");
    auto next = running;
    next.models[0].name = "other";
    next.models[0].rollout_spec.reset();
    const auto plan = plan_reload(running, canary_routes(), state_of(phase::paused, "v2"), next);
    expect_refused(plan, "/models",
                   "model m has an active rollout: abort it before removing the model");
    const auto& m = plan_for(plan, "m");
    EXPECT_TRUE(m.removed);
    EXPECT_EQ(m.rollout, rollout_step::none);
}

TEST(ReloadPlan, RemovingAModelWhoseRolloutFinishedKeepsItsRecord) {
    const auto running = with_rollout("v2");
    auto next = running;
    next.models[0].name = "other";
    next.models[0].rollout_spec.reset();
    const auto plan = plan_reload(running, routes({0, 10000, 0}, "stable", 1),
                                  state_of(phase::completed, "v2", 2, "v2"), next);
    EXPECT_TRUE(plan.problems().empty());
    const auto& m = plan_for(plan, "m");
    EXPECT_TRUE(m.removed);
    EXPECT_FALSE(m.carried);
    EXPECT_NE(m.why.find("stays on record"), std::string::npos) << m.why;
}

TEST(ReloadPlan, ANewCandidateUnderAnActiveRolloutIsRefused) {
    const auto plan = plan_reload(with_rollout("v2"), canary_routes(),
                                  state_of(phase::progressing, "v2"), with_rollout("v3"));
    expect_refused(plan, "/models/0/rollout/candidate",
                   "m has an active rollout of v2: abort it before starting one of v3");
    EXPECT_EQ(plan.models[0].rollout, rollout_step::none);
}

TEST(ReloadPlan, ANewCandidateAfterAFinishedRolloutStartsAndTheOutcomeKeepsItsTraffic) {
    // v2 completed: it is stable now, and the new config asks for a rollout of v3.
    const auto plan = plan_reload(with_rollout("v2"), routes({0, 10000, 0}, "stable", 1),
                                  state_of(phase::completed, "v2", 2, "v2"), with_rollout("v3"));
    EXPECT_TRUE(plan.problems().empty());
    const auto& m = plan.models[0];
    ASSERT_TRUE(m.carried);
    EXPECT_EQ(m.carried->weights, (std::map<std::string, std::uint32_t>{{"v2", 10000}}));
    EXPECT_EQ(m.carried->stable, "v2");
    EXPECT_EQ(m.rollout, rollout_step::start);
    EXPECT_EQ(m.spec->candidate, "v3");
}

TEST(ReloadPlan, ASplitOfTheConfigsOwnOverridesAFinishedRolloutsOutcome) {
    auto next = with_rollout("v2");
    next.models[0].split.weights = {{"v1", 9000}, {"v3", 1000}};
    const auto plan = plan_reload(with_rollout("v2"), routes({10000, 0, 0}, "stable"),
                                  state_of(phase::rolled_back, "v2", 1), next);
    EXPECT_TRUE(plan.problems().empty());
    EXPECT_FALSE(plan.models[0].carried);
    // The same candidate: the finished rollout takes the spec (the controller decides what
    // that changes).
    EXPECT_EQ(plan.models[0].rollout, rollout_step::update_spec);
}

TEST(ReloadPlan, ASplitOfTheConfigsOwnDoesNotMoveAnActiveRollout) {
    auto next = with_rollout("v2");
    next.models[0].split.weights = {{"v1", 9000}, {"v3", 1000}};
    const auto plan = plan_reload(with_rollout("v2"), canary_routes(),
                                  state_of(phase::progressing, "v2"), next);
    EXPECT_TRUE(plan.problems().empty());
    ASSERT_TRUE(plan.models[0].carried);
    EXPECT_EQ(plan.models[0].carried->weights.at("v2"), 500u);
}

TEST(ReloadPlan, DroppingAVersionAnActiveRolloutRoutesToIsRefused) {
    auto next = with_rollout("v2");
    next.models[0].versions.erase(next.models[0].versions.begin() + 1);  // v2
    const auto plan = plan_reload(with_rollout("v2"), canary_routes(),
                                  state_of(phase::progressing, "v2"), next);
    expect_refused(plan, "/models/0/versions",
                   "the active rollout of m routes to v1 and v2: keep both versions or abort it "
                   "first");
    EXPECT_FALSE(plan.models[0].carried);
}

TEST(ReloadPlan, AFinishedRolloutsVersionsGoneLeaveTrafficToTheConfig) {
    // v2 completed and is stable; the new config drops it (and names no rollout).
    auto next = running_config();
    next.models[0].versions.erase(next.models[0].versions.begin() + 1);
    const auto plan = plan_reload(with_rollout("v2"), routes({0, 10000, 0}, "stable", 1),
                                  state_of(phase::completed, "v2", 2, "v2"), next);
    EXPECT_TRUE(plan.problems().empty());
    EXPECT_FALSE(plan.models[0].carried);
    EXPECT_EQ(plan.models[0].rollout, rollout_step::none);
}

TEST(ReloadPlan, ChangedStagesUpdateTheSpecWhenTheRolloutsStageSurvives) {
    const auto running = with_rollout("v2", 3);
    const auto state = state_of(phase::progressing, "v2", 1);
    const auto more = plan_reload(running, canary_routes(), state, with_rollout("v2", 4));
    EXPECT_TRUE(more.problems().empty());
    EXPECT_EQ(more.models[0].rollout, rollout_step::update_spec);
    EXPECT_EQ(more.models[0].spec->stages.size(), 4u);
    const auto fewer = plan_reload(running, canary_routes(), state, with_rollout("v2", 2));
    EXPECT_TRUE(fewer.problems().empty());
    EXPECT_EQ(fewer.models[0].rollout, rollout_step::update_spec);
}

TEST(ReloadPlan, FewerStagesThanTheRolloutHasReachedAreRefused) {
    const auto plan = plan_reload(with_rollout("v2", 3), canary_routes(),
                                  state_of(phase::paused, "v2", 2), with_rollout("v2", 2));
    expect_refused(plan, "/models/0/rollout/stages",
                   "the rollout of m is at stage 3: the new spec must keep at least that many "
                   "stages");
    EXPECT_EQ(plan.models[0].rollout, rollout_step::none);
}

TEST(ReloadPlan, AnActiveRolloutGoesOnWhenTheConfigNoLongerNamesIt) {
    const auto plan = plan_reload(with_rollout("v2"), canary_routes(),
                                  state_of(phase::progressing, "v2"), running_config());
    EXPECT_TRUE(plan.problems().empty());
    EXPECT_TRUE(plan.models[0].carried);
    EXPECT_EQ(plan.models[0].rollout, rollout_step::none);
    EXPECT_NE(plan.models[0].why.find("the active rollout goes on"), std::string::npos);
}

TEST(ReloadPlan, AMirroringRolloutCarriesItsMirror) {
    auto snap = routes({10000, 0, 0}, "shadow");
    auto& m = snap.models[0];
    m.mirror_version = 1;
    m.mirror_bp = 2500;
    m.mirror_max_in_flight = 8;
    m.mirror_queue = 16;
    m.versions[1].trip_after = 5;
    const auto plan = plan_reload(with_rollout("v2"), snap, state_of(phase::progressing, "v2"),
                                  with_rollout("v2"));
    ASSERT_TRUE(plan.models[0].carried);
    const auto& c = *plan.models[0].carried;
    EXPECT_EQ(c.weights, (std::map<std::string, std::uint32_t>{{"v1", 10000}}));
    EXPECT_EQ(c.watched, "v2");
    EXPECT_EQ(c.trip_after, 5u);
    EXPECT_EQ(c.mirror.bp, 2500u);
    EXPECT_EQ(c.mirror.max_in_flight, 8u);
    EXPECT_EQ(c.mirror.queue, 16u);
}

TEST(ReloadPlan, WhatNeedsARestartComesFirstAmongTheProblems) {
    auto next = with_rollout("v3");
    next.listeners[0].port = 1;
    const auto plan = plan_reload(with_rollout("v2"), canary_routes(),
                                  state_of(phase::progressing, "v2"), next);
    ASSERT_FALSE(plan.config_problems.empty());
    const auto problems = plan.problems();
    ASSERT_EQ(problems.size(), plan.config_problems.size() + 1);
    EXPECT_EQ(problems.front().path, plan.config_problems.front().path);
    EXPECT_EQ(problems.back().path, "/models/0/rollout/candidate");
}

}  // namespace
}  // namespace stagegate::control
