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

}  // namespace
}  // namespace stagegate::rollout
