#include "stagegate/rollout/evidence.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace stagegate::rollout::evidence {
namespace {

TEST(RateBounds, BracketTheEstimateAndNarrowWithData) {
    EXPECT_EQ(rate_lower(0, 0, 0.01), 0);
    EXPECT_EQ(rate_upper(0, 0, 0.01), 1);
    double previous_width = 1;
    for (double n : {100.0, 1000.0, 10000.0, 100000.0}) {
        const double events = n * 0.01;
        const double low = rate_lower(events, n, 0.01);
        const double high = rate_upper(events, n, 0.05);
        EXPECT_LT(low, 0.01) << n;
        EXPECT_GT(high, 0.01) << n;
        EXPECT_LT(high - low, previous_width) << n;
        previous_width = high - low;
    }
    // 1 % over 100,000 requests: within 0.15 points either way, even at every look.
    EXPECT_GT(rate_lower(1000, 100000, 0.005), 0.0085);
    EXPECT_LT(rate_upper(1000, 100000, 0.025), 0.0115);
    // No event at all still bounds the rate from above.
    EXPECT_LT(rate_upper(0, 5000, 0.025), 0.0015);
    EXPECT_EQ(rate_lower(0, 5000, 0.005), 0);
}

TEST(RateBounds, MoreEventsNeverLowerTheBounds) {
    double low = 0;
    double high = 0;
    for (double events = 0; events <= 200; events += 5) {
        const double l = rate_lower(events, 2000, 0.01);
        const double h = rate_upper(events, 2000, 0.01);
        EXPECT_GE(l, low) << events;
        EXPECT_GE(h, high) << events;
        low = l;
        high = h;
    }
}

// The guarantee behind every gate: the evidence against the true rate reaches 1/level in at
// most `level` of the runs, however often it is looked at. 1,000 runs of 20,000 Bernoulli
// trials each, looked at after every 100 (200 looks): the crossing count is Binomial(1000, p)
// with p <= 0.05, so more than 50 + 5.3 standard deviations (86) happens with probability
// below 1e-6 for a correct bound; the seed is fixed, so the test is also deterministic.
TEST(RateBounds, TrueRateIsExcludedAtMostLevelOfTheTimeHoweverOftenWeLook) {
    const double level = 0.05;
    const double threshold = std::log(1 / level);
    for (double p : {0.005, 0.2}) {
        std::mt19937_64 rng(11);
        std::bernoulli_distribution event(p);
        int excluded_above = 0;
        int excluded_below = 0;
        const int runs = 1000;
        for (int run = 0; run < runs; ++run) {
            double events = 0;
            bool above = false;
            bool below = false;
            for (int n = 1; n <= 20000; ++n) {
                events += event(rng) ? 1 : 0;
                if (n % 100 == 0) {
                    above = above || log_evidence_above(events, n, p) >= threshold;
                    below = below || log_evidence_below(events, n, p) >= threshold;
                }
            }
            excluded_above += above;
            excluded_below += below;
        }
        EXPECT_LE(excluded_above, 86) << "p " << p;
        EXPECT_LE(excluded_below, 86) << "p " << p;
        // Not vacuous: some runs do come close to the level.
        EXPECT_GT(excluded_above + excluded_below, 0) << "p " << p;
    }
}

TEST(RatioBounds, BracketTheTrueRatioSegmentBySegment) {
    EXPECT_EQ(ratio_lower({}, 0.01), 0);
    EXPECT_TRUE(std::isinf(ratio_upper({}, 0.01)));
    // Stable failed 0.2 % in the first segment and 2 % in the second; the candidate, at 1.5x
    // stable's rate throughout, served 5 % then 50 % of the traffic. Pooled, the candidate's
    // rate (2.8 %) is 2.5x stable's (1.1 %): segment by segment the ratio is 1.5.
    const std::vector<rate_split> drifting = {{15, 5000, 190, 95000}, {1500, 50000, 1000, 50000}};
    EXPECT_LT(ratio_lower(drifting, 0.01), 1.5);
    EXPECT_GT(ratio_upper(drifting, 0.05), 1.5);
    EXPECT_GT(ratio_lower(drifting, 0.01), 1.3);
    EXPECT_LT(ratio_upper(drifting, 0.05), 1.7);
    // A segment in which stable served nothing (a 100 % stage) says nothing about the ratio.
    auto with_full = drifting;
    with_full.push_back({900, 30000, 0, 0});
    EXPECT_EQ(ratio_lower(with_full, 0.01), ratio_lower(drifting, 0.01));
    // No candidate error at all still bounds the ratio from above.
    EXPECT_LT(ratio_upper({{0, 20000, 100, 20000}}, 0.05), 0.2);
    EXPECT_EQ(ratio_lower({{0, 20000, 100, 20000}}, 0.01), 0);
}

// The test behind the relative error gates: with the candidate's rate exactly at ratio x
// stable's, the evidence that it is above (below) reaches 1/level in at most `level` of the
// runs, however often it is looked at, while stable's rate drifts and the split changes. 1,000
// runs, 100 looks each: crossings are Binomial(1000, p <= 0.05), so more than 86 has
// probability below 1e-6 for a correct test; the seed is fixed. It also shows the test is not
// vacuous: it does reach the level in some runs. The pass test that favours "as good as
// stable" (log_evidence_ratio_within) is held to the same bound.
TEST(RatioBounds, TheTrueRatioIsExcludedAtMostLevelOfTheTimeHoweverOftenWeLook) {
    const double level = 0.05;
    const double threshold = std::log(1 / level);
    const double ratio = 1.5;
    std::mt19937_64 rng(23);
    int excluded_above = 0;
    int excluded_below = 0;
    int shown_within = 0;
    const int runs = 1000;
    for (int run = 0; run < runs; ++run) {
        // 50 looks at a 5 % split with stable at 0.5 %, then 50 at 50 % with stable at 1 %.
        std::vector<rate_split> seen(2);
        bool above = false;
        bool below = false;
        bool within = false;
        for (int look = 0; look < 100; ++look) {
            const std::size_t k = look < 50 ? 0 : 1;
            const double share = k == 0 ? 0.05 : 0.5;
            const double stable_rate = k == 0 ? 0.005 : 0.01;
            std::binomial_distribution<int> to_candidate(400, share);
            const int c_trials = to_candidate(rng);
            const int s_trials = 400 - c_trials;
            std::binomial_distribution<int> c_events(c_trials, ratio * stable_rate);
            std::binomial_distribution<int> s_events(s_trials, stable_rate);
            seen[k].candidate_trials += c_trials;
            seen[k].stable_trials += s_trials;
            seen[k].candidate_events += c_events(rng);
            seen[k].stable_events += s_events(rng);
            above = above || log_evidence_ratio_above(seen, ratio) >= threshold;
            below = below || log_evidence_ratio_below(seen, ratio) >= threshold;
            within = within || log_evidence_ratio_within(seen, ratio) >= threshold;
        }
        excluded_above += above;
        excluded_below += below;
        shown_within += within;
    }
    EXPECT_LE(excluded_above, 86);
    EXPECT_LE(excluded_below, 86);
    EXPECT_LE(shown_within, 86);
    EXPECT_GT(excluded_above + excluded_below, 0);
}

// Proving a x1.5 tolerance met for a candidate exactly as good as stable: 120 errors each
// over equal traffic. The spread mixture pays ln 20 for the shift that matters and is not
// there yet at the pass level 0.025; the test that favours "as good as stable" pays ln 2 and is.
TEST(RatioBounds, ProvingWithinATolerancePaysLittleForAsGoodAsStable) {
    const std::vector<rate_split> same = {{120, 30000, 120, 30000}};
    const double needed = std::log(1 / 0.025);
    EXPECT_LT(log_evidence_ratio_below(same, 1.5), needed);
    EXPECT_GE(log_evidence_ratio_within(same, 1.5), needed);
    // Never much less than the plain mixture: at most ln 2 below it.
    for (double c : {0.0, 100.0, 200.0, 400.0}) {
        const std::vector<rate_split> seen = {{c, 30000, 150, 30000}};
        EXPECT_GE(log_evidence_ratio_within(seen, 1.5),
                  log_evidence_ratio_below(seen, 1.5) - std::log(2.0) - 1e-9)
            << c;
    }
}

latency_sample lognormal(std::size_t n, double median_ms, double sigma, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::lognormal_distribution<double> d(std::log(median_ms * 1000), sigma);
    metrics::latency_histogram h;
    for (std::size_t i = 0; i < n; ++i) {
        h.record(static_cast<std::uint64_t>(d(rng)));
    }
    return latency_sample::of(h);
}

TEST(QuantileBounds, BracketTheTrueQuantileAndNeedTheSamplesAQuantileNeeds) {
    const double p99 = 20.0 * std::exp(0.5 * 2.3263) * 1000;  // µs
    const double p50 = 20000;
    auto small = lognormal(200, 20, 0.5, 1);
    EXPECT_TRUE(std::isinf(quantile_upper(small, 0.99, 0.05)));  // 200 samples: no p99 bound
    EXPECT_LT(quantile_upper(small, 0.5, 0.05), 2 * p50);
    auto large = lognormal(50000, 20, 0.5, 2);
    for (double q : {0.5, 0.9, 0.99}) {
        const double truth = 20000 * std::exp(0.5 * (q == 0.5 ? 0 : q == 0.9 ? 1.2816 : 2.3263));
        EXPECT_LT(quantile_lower(large, q, 0.01), truth) << q;
        EXPECT_GT(quantile_upper(large, q, 0.01), truth) << q;
    }
    // 50,000 samples pin the p99 within 10 % and the median within 4 %.
    EXPECT_GT(quantile_lower(large, 0.99, 0.01), 0.9 * p99);
    EXPECT_LT(quantile_upper(large, 0.99, 0.01), 1.1 * p99);
    EXPECT_GT(quantile_lower(large, 0.5, 0.01), 0.96 * p50);
    EXPECT_LT(quantile_upper(large, 0.5, 0.01), 1.04 * p50);
}

segment_counts segment(double requests, double errors, double latency_ms) {
    segment_counts s;
    s.requests = requests;
    s.errors = errors;
    metrics::latency_histogram h;
    for (int i = 0; i < static_cast<int>(requests - errors); ++i) {
        h.record(static_cast<std::uint64_t>(latency_ms * 1000));
    }
    s.latency = latency_sample::of(h);
    return s;
}

TEST(StableReference, WeightsEachSegmentByTheCandidatesTrafficInIt) {
    // Stable failed 0.2 % in the first segment and 2 % in the second; the candidate served
    // 10 times more in the second. Pooled, stable would look like 1.1 %; period for period
    // the candidate should be compared with 0.2 x 1/11 + 2 x 10/11 = 1.84 %.
    std::vector<segment_counts> c = {segment(100, 0, 10), segment(1000, 20, 30)};
    std::vector<segment_counts> s = {segment(9900, 20, 10), segment(9000, 180, 30)};
    const auto ref = stable_reference(c, s);
    EXPECT_NEAR(ref.errors / ref.requests, 20.0 / 9900 / 11 + 180.0 / 9000 * 10 / 11, 1e-9);
    // Its latency is the same mixture: mostly the second segment's 30 ms.
    EXPECT_NEAR(ref.latency.quantile_micros(0.5), 30000, 30000 * 0.02);
    EXPECT_NEAR(ref.latency.quantile_micros(0.05), 10000, 10000 * 0.02);
    // Effective size: 1 / (w1^2/n1 + w2^2/n2), below stable's pooled count.
    EXPECT_NEAR(ref.requests, 1 / (1.0 / 121 / 9900 + 100.0 / 121 / 9000), 1e-6);
    EXPECT_LT(ref.requests, 18900);
}

TEST(StableReference, AHundredPercentSegmentBorrowsStablesEarlierFigures) {
    std::vector<segment_counts> c = {segment(500, 5, 10), segment(5000, 50, 10)};
    std::vector<segment_counts> s = {segment(9500, 95, 12), segment(0, 0, 0)};
    const auto ref = stable_reference(c, s);
    EXPECT_NEAR(ref.errors / ref.requests, 0.01, 1e-9);
    EXPECT_NEAR(ref.latency.quantile_micros(0.5), 12000, 12000 * 0.02);
}

// Buckets whose rates spread as independent requests make them keep every request; a heavy
// bucket (one user with flaky inputs) whose rate stands out keeps about one ordinary bucket's
// worth, so the weighed rate is the units' rate, not the heavy user's.
TEST(UnitWeighting, AHeavyUnitCountsAsOneUnitNotAsAllItsRequests) {
    std::vector<double> n(64, 1000);
    std::vector<double> e(64, 10);
    auto even = weigh_units(n, e);
    for (double scale : even.scale) {
        EXPECT_EQ(scale, 1.0);
    }
    EXPECT_EQ(even.dispersion, 1.0);

    n[0] = 64000;  // as many requests as all the others together, failing 5 %
    e[0] = 3200;
    auto heavy = weigh_units(n, e);
    EXPECT_LT(heavy.scale[0] * n[0], 2 * heavy.scale[1] * n[1]);
    double weighed_n = 0;
    double weighed_e = 0;
    for (std::size_t b = 0; b < n.size(); ++b) {
        weighed_n += heavy.scale[b] * n[b];
        weighed_e += heavy.scale[b] * e[b];
    }
    EXPECT_LT(weighed_e / weighed_n, 0.012);  // per request: (3200 + 630) / 127000 = 3 %
    EXPECT_LT(heavy.dispersion, 1.5);

    // A version seen mostly through one heavy user failing 2.5 %: the light buckets carry too
    // few requests to contradict it, so its own buckets show no spread beyond chance. Weighed
    // by the spread of units that both versions show together (lognormal users, sigma 1:
    // e - 1), the heavy user counts for a few dozen requests, not 5,000.
    std::vector<double> few_n(21, 15);
    std::vector<double> few_e(21, 0);
    few_n[0] = 5000;
    few_e[0] = 125;
    EXPECT_EQ(weigh_units(few_n, few_e).scale[0], 1.0);
    const auto given = weigh_units(few_n, few_e, std::exp(1.0) - 1);
    EXPECT_LT(given.scale[0] * few_n[0], 50);
    EXPECT_GT(given.scale[1], 0.5);  // light buckets keep most of theirs

    // One bucket in use: nothing says its requests are independent.
    auto one = weigh_units({0, 5000, 0}, {0, 50, 0});
    EXPECT_NEAR(one.scale[1] * 5000, 1, 1e-9);
}

// The users' spread, estimated from both versions' buckets at once: a version that cannot show
// it (one bucket in use, or no events) adds nothing, so the other's estimate stands; two
// versions that show the same spread give it back; buckets that vary as chance alone makes
// them give 0.
TEST(UnitWeighting, ThePooledSpreadOfUnitsIsBothVersionsTogether) {
    // Rates alternating 0.5 % and 1.5 % over buckets of 10,000: a relative variance of
    // 0.25 beyond the binomial's.
    std::vector<double> n(64, 10000);
    std::vector<double> e(64);
    for (std::size_t b = 0; b < e.size(); ++b) {
        e[b] = b % 2 == 0 ? 50 : 150;
    }
    const double own = weigh_units(n, e).relative_between;
    EXPECT_NEAR(own, 0.25, 0.05);
    EXPECT_DOUBLE_EQ(pooled_relative_between(n, e, {0, 300, 0}, {0, 3, 0}), own);
    EXPECT_DOUBLE_EQ(pooled_relative_between({0, 300, 0}, {0, 0, 0}, n, e), own);
    EXPECT_NEAR(pooled_relative_between(n, e, n, e), own, 1e-12);

    // Every bucket exactly at the version's rate: less spread than chance, estimated as none.
    std::vector<double> flat(64, 100);
    EXPECT_EQ(pooled_relative_between(n, flat, n, flat), 0.0);
}

}  // namespace
}  // namespace stagegate::rollout::evidence
