#include "stagegate/rollout/sequential.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <vector>

namespace stagegate::rollout {
namespace {

TEST(BayesFactor, NoEventsNoEvidence) {
    EXPECT_EQ(log_bayes_factor(0, 0, 0.05, 50), 0.0);
    EXPECT_EQ(log_bayes_factor(5, 5, 0.0, 50), 0.0);  // degenerate split: nothing to test
}

TEST(BayesFactor, EvidenceGrowsWithSkewAndVolume) {
    // At the null proportion the evidence stays low; far from it, it grows with the counts.
    EXPECT_LT(log_bayes_factor(5, 95, 0.05, 50), 1.0);
    EXPECT_GT(log_bayes_factor(30, 70, 0.05, 50), std::log(1000.0));
    EXPECT_GT(log_bayes_factor(60, 140, 0.05, 50), log_bayes_factor(30, 70, 0.05, 50));
}

TEST(ErrorRateTest, OnlyAWorseCandidateIsRejected) {
    auto worse = error_rate_test(40, 60, 0.05, 0.01);
    EXPECT_TRUE(worse.reject);
    EXPECT_LT(worse.p_value, 0.01);
    // Equally strong evidence that the candidate is *better* never rolls it back.
    auto better = error_rate_test(0, 400, 0.5, 0.01);
    EXPECT_GT(better.log_bayes_factor, std::log(100.0));
    EXPECT_FALSE(better.reject);
}

// One simulated stage: `looks` checks, each after `per_look` requests routed to the candidate
// with probability rho0. Returns the number of candidate requests until rejection, or -1.
long simulate_errors(std::mt19937_64& rng, double rho0, double p_candidate, double p_stable,
                     int looks, int per_look, double alpha) {
    std::uint64_t ce = 0;
    std::uint64_t se = 0;
    long candidate_requests = 0;
    for (int l = 0; l < looks; ++l) {
        auto nc = std::binomial_distribution<int>(per_look, rho0)(rng);
        candidate_requests += nc;
        ce += static_cast<std::uint64_t>(std::binomial_distribution<int>(nc, p_candidate)(rng));
        se += static_cast<std::uint64_t>(
            std::binomial_distribution<int>(per_look - nc, p_stable)(rng));
        if (error_rate_test(ce, se, rho0, alpha).reject) {
            return candidate_requests;
        }
    }
    return -1;
}

TEST(ErrorRateTest, AaFalseRollbacksStayUnderAlphaHoweverOftenWeLook) {
    // 2,000 A/A stages, each checked 100 times. Ville's inequality bounds the rate by alpha =
    // 5 %: at most 100 expected; the bound below adds 5 binomial sd (p < 1e-6 to flake).
    std::mt19937_64 rng(2026);
    int rollbacks = 0;
    for (int run = 0; run < 2000; ++run) {
        rollbacks += simulate_errors(rng, 0.05, 0.01, 0.01, 100, 400, 0.05) >= 0;
    }
    std::cout << "A/A error-rate stages rolled back: " << rollbacks << " of 2000 (alpha 5 %)\n";
    EXPECT_LE(rollbacks, 100 + 5 * 10);
}

TEST(ErrorRateTest, TenfoldErrorRateIsCaughtQuickly) {
    // 0.5 % -> 5 % at a 5 % canary: every run must reject within 100 looks of 400 requests.
    std::mt19937_64 rng(7);
    std::vector<long> needed;
    for (int run = 0; run < 300; ++run) {
        long n = simulate_errors(rng, 0.05, 0.05, 0.005, 100, 400, 0.01);
        ASSERT_GE(n, 0) << "run " << run << " never rejected";
        needed.push_back(n);
    }
    std::sort(needed.begin(), needed.end());
    std::cout << "0.5 % -> 5 % errors: candidate requests until rollback, median "
              << needed[needed.size() / 2] << ", p95 " << needed[needed.size() * 95 / 100] << "\n";
    EXPECT_LT(needed[needed.size() / 2], 600);  // median candidate requests until rollback
}

TEST(LatencyTest, AaFalseRollbacksStayUnderAlpha) {
    // Same lognormal latency on both arms; 400 stages of 30 looks. Expected <= 5 % = 20; bound
    // +5 sd (sd 4.4).
    std::mt19937_64 rng(11);
    std::lognormal_distribution<double> lat(std::log(20000.0), 0.5);
    int rollbacks = 0;
    for (int run = 0; run < 400; ++run) {
        metrics::latency_histogram c;
        metrics::latency_histogram s;
        for (int look = 0; look < 30; ++look) {
            for (int i = 0; i < 200; ++i) {
                auto& h = std::bernoulli_distribution(0.1)(rng) ? c : s;
                h.record(static_cast<std::uint64_t>(lat(rng)));
            }
            if (latency_test(c, s, 0.1, 0.05).reject) {
                ++rollbacks;
                break;
            }
        }
    }
    std::cout << "A/A latency stages rolled back: " << rollbacks << " of 400 (alpha 5 %)\n";
    EXPECT_LE(rollbacks, 20 + 22);
}

TEST(LatencyTest, SlowerCandidateIsRejectedFasterOneIsNot) {
    std::mt19937_64 rng(5);
    std::lognormal_distribution<double> lat(std::log(20000.0), 0.3);
    metrics::latency_histogram slow;
    metrics::latency_histogram fast;
    metrics::latency_histogram stable;
    for (int i = 0; i < 4000; ++i) {
        stable.record(static_cast<std::uint64_t>(lat(rng)));
    }
    for (int i = 0; i < 400; ++i) {
        slow.record(static_cast<std::uint64_t>(lat(rng) * 1.3));
        fast.record(static_cast<std::uint64_t>(lat(rng) / 1.3));
    }
    EXPECT_TRUE(latency_test(slow, stable, 400.0 / 4400.0, 0.01).reject);
    auto f = latency_test(fast, stable, 400.0 / 4400.0, 0.01);
    EXPECT_GT(f.log_bayes_factor, std::log(100.0));  // clearly different ...
    EXPECT_FALSE(f.reject);                           // ... but better: no rollback
}

}  // namespace
}  // namespace stagegate::rollout
