#include "stagegate/rollout/gates.hpp"

#include <gtest/gtest.h>

namespace stagegate::rollout {
namespace {

// `n` requests, `errors` of them 503, all with latency `micros`.
metrics::series_counts counts(std::uint64_t n, std::uint64_t errors, std::uint64_t micros) {
    metrics::series_counts c;
    c.codes[metrics::code_slot(200)] = n - errors;
    c.codes[metrics::code_slot(503)] = errors;
    for (std::uint64_t i = 0; i < n; ++i) {
        c.latency.record(micros);
    }
    return c;
}

const gate_result& gate(const evaluation& e, const std::string& name) {
    for (const auto& g : e.gates) {
        if (g.gate == name) {
            return g;
        }
    }
    static gate_result none;
    ADD_FAILURE() << "no gate " << name;
    return none;
}

TEST(Gates, TooLittleDataIsInconclusiveNeverPassOrFail) {
    gate_config cfg;
    cfg.min_requests = 100;
    cfg.max_error_rate = 0.01;
    cfg.max_latency = {{0.99, 0.5}};
    cfg.max_error_rate_delta = 0.01;
    auto e = evaluate(cfg, counts(50, 0, 1000), counts(1000, 0, 1000), 0.05);
    for (const auto& g : e.gates) {
        EXPECT_EQ(g.outcome, verdict::inconclusive) << g.gate << ": " << g.explanation;
    }
    EXPECT_FALSE(e.all_pass());
    EXPECT_FALSE(e.any_fail());
    EXPECT_NE(gate(e, "error_rate").explanation.find("too little data"), std::string::npos);
}

TEST(Gates, AbsoluteLimits) {
    gate_config cfg;
    cfg.max_error_rate = 0.02;
    cfg.max_latency = {{0.99, 0.050}};
    cfg.sequential_errors = false;
    cfg.sequential_latency = false;
    auto good = evaluate(cfg, counts(1000, 10, 20000), counts(1000, 10, 20000), 0.5);
    EXPECT_TRUE(good.all_pass());
    auto bad = evaluate(cfg, counts(1000, 50, 80000), counts(1000, 10, 20000), 0.5);
    EXPECT_EQ(gate(bad, "error_rate").outcome, verdict::fail);
    EXPECT_EQ(gate(bad, "p99_latency").outcome, verdict::fail);
    EXPECT_NE(gate(bad, "error_rate").explanation.find("5.00 %"), std::string::npos)
        << gate(bad, "error_rate").explanation;
    EXPECT_NE(gate(bad, "p99_latency").explanation.find("50.0 ms"), std::string::npos);
}

TEST(Gates, RelativeToStableExplainsItself) {
    gate_config cfg;
    cfg.max_error_rate_delta = 0.005;
    cfg.max_error_rate_ratio = 2.0;
    cfg.max_latency_ratio = {{0.99, 1.2}};
    cfg.sequential_errors = false;
    cfg.sequential_latency = false;
    auto e = evaluate(cfg, counts(812, 33, 30000), counts(15440, 46, 20000), 0.05);
    const auto& err = gate(e, "error_rate_vs_stable");
    EXPECT_EQ(err.outcome, verdict::fail);
    EXPECT_EQ(err.candidate_requests, 812u);
    EXPECT_EQ(err.stable_requests, 15440u);
    EXPECT_NE(err.explanation.find("error rate 4.06 % vs stable 0.30 % over 812 candidate vs "
                                   "15440 stable requests"),
              std::string::npos)
        << err.explanation;
    EXPECT_EQ(gate(e, "p99_latency_vs_stable").outcome, verdict::fail);  // 1.5x
    // Lenient of the two allowances: stable 0.3 % -> max(0.8 %, 0.6 %) = 0.8 %.
    auto ok = evaluate(cfg, counts(1000, 7, 20000), counts(15440, 46, 20000), 0.05);
    EXPECT_EQ(gate(ok, "error_rate_vs_stable").outcome, verdict::pass);
    EXPECT_NEAR(gate(ok, "error_rate_vs_stable").limit, 0.00298 + 0.005, 1e-4);
}

TEST(Gates, SequentialTestFailsEarlyButPassesOnlyWithEnoughData) {
    gate_config cfg;
    cfg.min_requests = 1000;
    cfg.sequential_latency = false;
    // 60 requests on the candidate, 30 of them failing, vs a clean stable: a failure is valid
    // at any sample size.
    auto broken = evaluate(cfg, counts(60, 30, 1000), counts(1140, 1, 1000), 0.05);
    EXPECT_EQ(gate(broken, "sequential_error_rate").outcome, verdict::fail);
    EXPECT_NE(gate(broken, "sequential_error_rate").explanation.find("p < 0.001"),
              std::string::npos)
        << gate(broken, "sequential_error_rate").explanation;
    auto healthy_small = evaluate(cfg, counts(60, 0, 1000), counts(1140, 1, 1000), 0.05);
    EXPECT_EQ(gate(healthy_small, "sequential_error_rate").outcome, verdict::inconclusive);
    auto healthy = evaluate(cfg, counts(1200, 2, 1000), counts(22800, 40, 1000), 0.05);
    EXPECT_EQ(gate(healthy, "sequential_error_rate").outcome, verdict::pass);
}

TEST(Gates, WhatCountsAsAnErrorIsConfigurable) {
    metrics::series_counts c;
    c.codes[metrics::code_slot(200)] = 900;
    c.codes[metrics::code_slot(429)] = 100;
    gate_config cfg;
    cfg.max_error_rate = 0.05;
    cfg.sequential_errors = false;
    cfg.sequential_latency = false;
    // By default 4xx are the client's doing, not the candidate's.
    EXPECT_EQ(gate(evaluate(cfg, c, c, 0.5), "error_rate").outcome, verdict::pass);
    cfg.error_slots = error_slots_for({"5xx", "429"});
    EXPECT_EQ(gate(evaluate(cfg, c, c, 0.5), "error_rate").outcome, verdict::fail);
    auto four = error_slots_for({"4xx"});
    EXPECT_EQ(four.size(), 4u);  // 400, 404, 429 and the 4xx class
}

// --- Model quality ---------------------------------------------------------------------------

gate_config quality_only() {
    gate_config cfg;
    cfg.sequential_errors = false;
    cfg.sequential_latency = false;
    cfg.min_samples = 200;
    cfg.value_bins = 10;
    return cfg;
}

metrics::series_counts mirrored(std::uint64_t compared, std::uint64_t agreed) {
    metrics::series_counts c = counts(compared, 0, 1000);
    c.predictions.compared_labels = compared;
    c.predictions.agreed_labels = agreed;
    return c;
}

TEST(QualityGates, AgreementFailsWhenTheFloorIsOutOfReachAndPassesWhenSurelyMet) {
    auto cfg = quality_only();
    cfg.min_agreement = 0.95;
    const auto live = counts(1000, 0, 1000);
    auto e = evaluate(cfg, live, live, 0.5, nullptr);
    EXPECT_TRUE(e.gates.empty());  // no mirror in this stage: the gate is not judged here
    auto m = mirrored(100, 100);
    EXPECT_EQ(gate(evaluate(cfg, live, live, 0.5, &m), "prediction_agreement").outcome,
              verdict::inconclusive);  // too few
    m = mirrored(3000, 3000);
    EXPECT_EQ(gate(evaluate(cfg, live, live, 0.5, &m), "prediction_agreement").outcome,
              verdict::pass);
    m = mirrored(3000, 2700);  // 90 %
    auto g = gate(evaluate(cfg, live, live, 0.5, &m), "prediction_agreement");
    EXPECT_EQ(g.outcome, verdict::fail);
    EXPECT_NE(g.explanation.find("below the floor 95.00 %"), std::string::npos) << g.explanation;
    m = mirrored(3000, 2850);  // exactly at the floor: never sure either way
    EXPECT_EQ(gate(evaluate(cfg, live, live, 0.5, &m), "prediction_agreement").outcome,
              verdict::inconclusive);
}

metrics::series_counts valued(std::vector<std::uint64_t> bins) {
    metrics::series_counts c = counts(1000, 0, 1000);
    for (std::size_t i = 0; i < bins.size(); ++i) {
        c.predictions.value_bins[i] = bins[i];
        c.predictions.values += bins[i];
    }
    return c;
}

TEST(QualityGates, DriftFailsOnlyBeyondNoise) {
    auto cfg = quality_only();
    cfg.max_psi = 0.1;
    cfg.max_ks = 0.1;
    auto stable = valued({50, 100, 200, 300, 200, 100, 50, 0, 0, 0});
    auto same = valued({51, 98, 203, 297, 201, 99, 51, 0, 0, 0});
    auto shifted = valued({0, 0, 50, 100, 200, 300, 200, 100, 50, 0});
    auto e = evaluate(cfg, same, stable, 0.5);
    EXPECT_EQ(gate(e, "prediction_psi").outcome, verdict::pass);
    EXPECT_EQ(gate(e, "prediction_ks").outcome, verdict::pass);
    e = evaluate(cfg, shifted, stable, 0.5);
    EXPECT_EQ(gate(e, "prediction_psi").outcome, verdict::fail) << gate(e, "prediction_psi").explanation;
    EXPECT_EQ(gate(e, "prediction_ks").outcome, verdict::fail);
    // The same shift seen on 10 predictions is not evidence of anything yet.
    e = evaluate(cfg, valued({0, 0, 0, 1, 2, 3, 2, 1, 1, 0}), stable, 0.5);
    EXPECT_EQ(gate(e, "prediction_psi").outcome, verdict::inconclusive);
}

TEST(QualityGates, AccuracyComparesWithStableAndWaitsForLabels) {
    auto cfg = quality_only();
    cfg.max_accuracy_drop = 0.01;
    auto labelled = [](std::uint64_t n, std::uint64_t correct) {
        auto c = counts(n, 0, 1000);
        c.predictions.feedback = n;
        c.predictions.correct = correct;
        return c;
    };
    EXPECT_EQ(gate(evaluate(cfg, labelled(100, 80), labelled(100, 90), 0.5), "accuracy_vs_stable")
                  .outcome,
              verdict::inconclusive);
    EXPECT_EQ(gate(evaluate(cfg, labelled(20000, 17000), labelled(20000, 18000), 0.5),
                   "accuracy_vs_stable")
                  .outcome,
              verdict::fail);
    EXPECT_EQ(gate(evaluate(cfg, labelled(5000, 4500), labelled(5000, 4510), 0.5),
                   "accuracy_vs_stable")
                  .outcome,
              verdict::pass);
    cfg.candidate_serves_clients = false;  // a mirror-only stage: no labels can come back
    EXPECT_TRUE(evaluate(cfg, labelled(100, 80), labelled(100, 90), 0.5).gates.empty());
}

TEST(QualityGates, CandidateAgeNeedsTrainedAt) {
    auto cfg = quality_only();
    cfg.max_candidate_age_seconds = 3600;
    const auto c = counts(10, 0, 1000);
    EXPECT_EQ(gate(evaluate(cfg, c, c, 0.5), "candidate_age").outcome, verdict::fail);
    cfg.candidate_age_seconds = 60;
    EXPECT_EQ(gate(evaluate(cfg, c, c, 0.5), "candidate_age").outcome, verdict::pass);
    cfg.candidate_age_seconds = 7200;
    EXPECT_EQ(gate(evaluate(cfg, c, c, 0.5), "candidate_age").outcome, verdict::fail);
}

}  // namespace
}  // namespace stagegate::rollout
