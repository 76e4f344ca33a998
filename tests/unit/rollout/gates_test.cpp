#include "stagegate/rollout/gates.hpp"
#include "stagegate/rollout/evidence.hpp"

#include <gtest/gtest.h>

#include <regex>

namespace stagegate::rollout {
namespace {

// `n` requests, `errors` of them 503 (answered at once), the others 200 after `micros`.
metrics::series_counts counts(std::uint64_t n, std::uint64_t errors, std::uint64_t micros) {
    metrics::series_counts c;
    c.codes[metrics::code_slot(200)] = n - errors;
    c.codes[metrics::code_slot(503)] = errors;
    for (std::uint64_t i = 0; i < n; ++i) {
        const bool failed = i < errors;
        c.latency.record(failed ? 100 : micros);
        if (!failed) {
            c.success_latency.record(micros);
        }
    }
    return c;
}

// One segment of each version (and the mirror, if any).
evaluation judge(const gate_config& cfg, const metrics::series_counts& candidate,
                 const metrics::series_counts& stable,
                 const metrics::series_counts* mirror = nullptr) {
    return evaluate(cfg, traffic{{candidate}, {stable}, mirror});
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

gate_config errors_only() {
    gate_config cfg;
    cfg.sequential_latency = false;
    cfg.client_errors = false;
    return cfg;
}

TEST(Gates, TooLittleDataIsInconclusiveNeverPassOrFail) {
    gate_config cfg;
    cfg.min_requests = 100;
    cfg.max_error_rate = 0.01;
    cfg.max_latency = {{0.99, 0.5}};
    cfg.max_error_rate_delta = 0.01;
    auto e = judge(cfg, counts(50, 0, 1000), counts(1000, 0, 1000));
    EXPECT_EQ(e.gates.size(), 6u);  // + client errors, p50 and p90 vs stable by default
    for (const auto& g : e.gates) {
        EXPECT_EQ(g.outcome, verdict::inconclusive) << g.gate << ": " << g.explanation;
    }
    EXPECT_FALSE(e.all_pass());
    EXPECT_FALSE(e.any_fail());
    EXPECT_NE(gate(e, "error_rate").explanation.find("too little data"), std::string::npos);
}

TEST(Gates, AbsoluteLimitsAreJudgedByTheirBoundsNotThePointEstimate) {
    gate_config cfg;
    cfg.max_error_rate = 0.02;
    cfg.max_latency = {{0.99, 0.050}};
    cfg.sequential_errors = false;
    cfg.sequential_latency = false;
    // 1 % errors and 20 ms over 10,000 requests: surely within both limits.
    auto good = judge(cfg, counts(10000, 100, 20000), counts(10000, 100, 20000));
    EXPECT_TRUE(good.all_pass()) << gate(good, "error_rate").explanation;
    // 1.5 % over 400 requests: the estimate is within the limit but the data cannot yet say.
    auto unsure = judge(cfg, counts(400, 6, 20000), counts(400, 6, 20000));
    EXPECT_EQ(gate(unsure, "error_rate").outcome, verdict::inconclusive);
    EXPECT_NE(gate(unsure, "error_rate").explanation.find("not yet clearly"), std::string::npos);
    auto bad = judge(cfg, counts(1000, 50, 80000), counts(1000, 10, 20000));
    EXPECT_EQ(gate(bad, "error_rate").outcome, verdict::fail);
    EXPECT_EQ(gate(bad, "p99_latency").outcome, verdict::fail);
    EXPECT_NE(gate(bad, "error_rate").explanation.find("5.00 %"), std::string::npos)
        << gate(bad, "error_rate").explanation;
    EXPECT_NE(gate(bad, "p99_latency").explanation.find("50.0 ms"), std::string::npos);
    EXPECT_GT(gate(bad, "error_rate").candidate_low, 0.02);
}

// Widening goes on while nothing hints at harm: an estimate past the limit by chance does
// not hold it back, a lead that the fail test would take at an even chance does.
TEST(Gates, WideningAsksForNoHintOfHarmNotAnEstimateWithinTheLimit) {
    gate_config cfg = errors_only();
    cfg.max_error_rate = 0.02;
    cfg.min_requests = 100;
    // 9 errors in 400 (2.25 %): past the limit, as 2 % often is over 400 requests.
    auto noisy = judge(cfg, counts(400, 9, 1000), counts(4000, 80, 1000));
    EXPECT_EQ(gate(noisy, "error_rate").outcome, verdict::inconclusive);
    EXPECT_TRUE(noisy.all_on_track()) << gate(noisy, "error_rate").explanation;
    // 75 in 3,000 (2.5 %): not yet beyond doubt (at least 1.6 % at alpha), but a hint (at
    // least 2.09 % at an even chance).
    auto hinted = judge(cfg, counts(3000, 75, 1000), counts(4000, 80, 1000));
    EXPECT_EQ(gate(hinted, "error_rate").outcome, verdict::inconclusive)
        << gate(hinted, "error_rate").explanation;
    EXPECT_FALSE(hinted.all_on_track());
    // Against stable + 0.5 points: 1.75 % vs 1 % over 400 requests is an estimate past the
    // allowance, no more; 2.5 % over 2,000 is a hint of harm, not yet proof.
    gate_config relative = errors_only();
    relative.max_error_rate_delta = 0.005;
    relative.min_requests = 100;
    auto early = judge(relative, counts(400, 7, 1000), counts(40000, 400, 1000));
    EXPECT_EQ(gate(early, "error_rate_vs_stable").outcome, verdict::inconclusive);
    EXPECT_TRUE(early.all_on_track()) << gate(early, "error_rate_vs_stable").explanation;
    auto later = judge(relative, counts(2000, 50, 1000), counts(40000, 400, 1000));
    EXPECT_EQ(gate(later, "error_rate_vs_stable").outcome, verdict::inconclusive)
        << gate(later, "error_rate_vs_stable").explanation;
    EXPECT_FALSE(later.all_on_track());
}

// Waiting on a ratio says how far its bound still is: an A/A at 0.5 % over 3,000 candidate
// requests is clear of x1.5 on the candidate's own interval's face, not yet on the split.
TEST(Gates, AnOpenRatioToleranceSaysHowFarItsBoundIs) {
    gate_config cfg = errors_only();
    cfg.max_error_rate_ratio = 1.5;
    auto aa = judge(cfg, counts(3000, 15, 1000), counts(30000, 150, 1000));
    const auto& err = gate(aa, "error_rate_vs_stable");
    ASSERT_EQ(err.outcome, verdict::inconclusive) << err.explanation;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(err.explanation, m,
                                  std::regex("its rate is at most ([0-9.]+)x stable's so far "
                                             "\\(x1\\.5 allowed\\)")))
        << err.explanation;
    EXPECT_GT(std::stod(m[1].str()), 1.5) << err.explanation;
}

TEST(Gates, RelativeToStableExplainsItself) {
    gate_config cfg = errors_only();
    cfg.max_error_rate_delta = 0.005;
    cfg.max_error_rate_ratio = 2.0;
    cfg.max_latency_ratio = {{0.99, 1.2}};
    auto e = judge(cfg, counts(812, 33, 30000), counts(15440, 46, 20000));
    const auto& err = gate(e, "error_rate_vs_stable");
    EXPECT_EQ(err.outcome, verdict::fail);
    EXPECT_EQ(err.candidate_requests, 812u);
    EXPECT_EQ(err.stable_requests, 15440u);
    // The metric, both values, the tolerance and the direction.
    EXPECT_NE(err.explanation.find("error rate 4.06 % vs stable 0.30 % (13.64x) over 812 candidate vs "
                                   "15440 stable requests: higher than allowed (stable x2 or "
                                   "+ 0.50 points, whichever is larger)"),
              std::string::npos)
        << err.explanation;
    const auto& p99 = gate(e, "p99_latency_vs_stable");
    EXPECT_EQ(p99.outcome, verdict::fail);  // 1.5x
    EXPECT_NE(p99.explanation.find("p99 latency 30.0 ms vs stable 20.2 ms (1.48x)"),
              std::string::npos)
        << p99.explanation;
    EXPECT_NE(p99.explanation.find("slower than allowed (stable x1.2 or + 1.0 ms"),
              std::string::npos)
        << p99.explanation;
    // The larger of the two allowances: stable 0.3 % -> max(0.6 %, 0.8 %) = 0.8 %.
    auto ok = judge(cfg, counts(20000, 40, 20000), counts(15440, 46, 20000));
    EXPECT_EQ(gate(ok, "error_rate_vs_stable").outcome, verdict::pass)
        << gate(ok, "error_rate_vs_stable").explanation;
    EXPECT_NEAR(gate(ok, "error_rate_vs_stable").limit, 0.00298 + 0.005, 1e-4);
}

TEST(Gates, FailsEarlyButPassesOnlyWithEnoughData) {
    gate_config cfg = errors_only();
    cfg.min_requests = 1000;
    // 60 requests on the candidate, 30 of them failing, vs a clean stable: the bounds hold at
    // any sample size, so this fails at once.
    auto broken = judge(cfg, counts(60, 30, 1000), counts(1140, 1, 1000));
    EXPECT_EQ(gate(broken, "error_rate_vs_stable").outcome, verdict::fail);
    auto healthy_small = judge(cfg, counts(60, 0, 1000), counts(1140, 1, 1000));
    EXPECT_EQ(gate(healthy_small, "error_rate_vs_stable").outcome, verdict::inconclusive);
    auto healthy = judge(cfg, counts(5000, 8, 1000), counts(95000, 170, 1000));
    EXPECT_EQ(gate(healthy, "error_rate_vs_stable").outcome, verdict::pass)
        << gate(healthy, "error_rate_vs_stable").explanation;
}

TEST(Gates, AFasterCandidateIsNeverSlowerAndStablesFastFailuresDoNotCount) {
    gate_config cfg;
    cfg.client_errors = false;
    cfg.sequential_errors = false;
    // 25 % faster: passes, never fails.
    auto faster = judge(cfg, counts(5000, 0, 15000), counts(95000, 0, 20000));
    for (const auto& g : faster.gates) {
        EXPECT_EQ(g.outcome, verdict::pass) << g.gate << ": " << g.explanation;
    }
    // Stable answers 30 % of its requests with an instant 503; its successes take as long as
    // the candidate's. Latency is judged on successful answers only.
    auto fast_failures = judge(cfg, counts(5000, 0, 20000), counts(95000, 28500, 20000));
    for (const auto& g : fast_failures.gates) {
        EXPECT_NE(g.outcome, verdict::fail) << g.gate << ": " << g.explanation;
    }
}

TEST(Gates, FourHundredsAreComparedWithStableByDefault) {
    auto with_400s = [](std::uint64_t n, std::uint64_t bad) {
        auto c = counts(n, 0, 1000);
        c.codes[metrics::code_slot(200)] -= bad;
        c.codes[metrics::code_slot(400)] += bad;
        return c;
    };
    gate_config cfg;
    cfg.sequential_latency = false;
    auto e = judge(cfg, with_400s(2000, 200), with_400s(38000, 38));
    EXPECT_EQ(gate(e, "client_error_rate_vs_stable").outcome, verdict::fail)
        << gate(e, "client_error_rate_vs_stable").explanation;
    EXPECT_EQ(gate(e, "error_rate_vs_stable").outcome, verdict::pass);  // no 5xx at all
    cfg.client_errors = false;
    e = judge(cfg, with_400s(2000, 200), with_400s(38000, 38));
    for (const auto& g : e.gates) {
        EXPECT_NE(g.gate, "client_error_rate_vs_stable");
    }
}

TEST(Gates, EvidenceAccumulatesOverSegmentsWeightedPeriodForPeriod) {
    gate_config cfg = errors_only();
    cfg.max_error_rate_ratio = 1.5;
    // A 2x regression (0.5 % -> 1 %) over three stages: no single stage proves it, all of
    // them together do.
    traffic t;
    t.candidate.assign(3, counts(30000, 300, 1000));
    t.stable.assign(3, counts(60000, 300, 1000));
    for (std::size_t k = 0; k < 3; ++k) {
        auto one = evaluate(cfg, traffic{{t.candidate[k]}, {t.stable[k]}, nullptr});
        EXPECT_NE(gate(one, "error_rate_vs_stable").outcome, verdict::pass) << k;
    }
    auto all = evaluate(cfg, t);
    EXPECT_EQ(gate(all, "error_rate_vs_stable").outcome, verdict::fail)
        << gate(all, "error_rate_vs_stable").explanation;
    // Stable's error rate moved over time (0.2 % then 2 %) and so did the candidate's share:
    // period for period the candidate is no worse, and nothing fails.
    traffic drift;
    drift.candidate = {counts(1000, 2, 1000), counts(10000, 200, 1000)};
    drift.stable = {counts(99000, 198, 1000), counts(90000, 1800, 1000)};
    auto fair = evaluate(cfg, drift);
    EXPECT_NE(gate(fair, "error_rate_vs_stable").outcome, verdict::fail)
        << gate(fair, "error_rate_vs_stable").explanation;
}

TEST(Gates, ARatioToleranceIsJudgedByHowTheErrorsSplitOneTestNotTwoBounds) {
    gate_config cfg = errors_only();
    cfg.max_error_rate_ratio = 1.5;
    // A/A at 0.5 % over 30,000 requests each: the split of 300 errors shows the candidate's
    // rate below 1.5x stable's. Two separate bounds (each at half the pass level) cannot show
    // it yet: the candidate's upper bound is still above 1.5x stable's lower one.
    auto same = judge(cfg, counts(30000, 150, 1000), counts(30000, 150, 1000));
    EXPECT_EQ(gate(same, "error_rate_vs_stable").outcome, verdict::pass)
        << gate(same, "error_rate_vs_stable").explanation;
    EXPECT_GT(evidence::rate_upper(150, 30000, cfg.beta / 2),
              1.5 * evidence::rate_lower(150, 30000, cfg.beta / 2));
    EXPECT_NE(gate(same, "error_rate_vs_stable").explanation.find("the candidate's rate is at most"),
              std::string::npos)
        << gate(same, "error_rate_vs_stable").explanation;
    // A stage at 100 % (stable serves nothing in the last segment): judged against stable's
    // earlier figures by separate bounds, still decided.
    traffic full;
    full.candidate = {counts(30000, 150, 1000), counts(200000, 4000, 1000)};
    full.stable = {counts(30000, 150, 1000), metrics::series_counts{}};
    auto worse = evaluate(cfg, full);
    EXPECT_EQ(gate(worse, "error_rate_vs_stable").outcome, verdict::fail)
        << gate(worse, "error_rate_vs_stable").explanation;
    // With both a ratio and an additive allowance, a candidate beyond the ratio but within
    // stable + 1 point is not failed (the larger allowance holds), and passes once shown.
    cfg.max_error_rate_delta = 0.01;
    auto within_delta = judge(cfg, counts(60000, 600, 1000), counts(60000, 300, 1000));
    EXPECT_EQ(gate(within_delta, "error_rate_vs_stable").outcome, verdict::pass)
        << gate(within_delta, "error_rate_vs_stable").explanation;
}

TEST(Gates, ARatioAloneCanPassWhenNeitherVersionHasErrors) {
    // Only a ratio configured, no 5xx and no 4xx on either side: the split of zero errors
    // shows nothing, so the ratio's additive floor (0.1 points) is what lets it pass. Live A/A
    // runs held at 50 % for good before it.
    gate_config cfg;
    cfg.sequential_latency = false;
    cfg.max_error_rate_ratio = 1.5;
    auto clean = judge(cfg, counts(20000, 0, 1000), counts(20000, 0, 1000));
    for (const char* name : {"error_rate_vs_stable", "client_error_rate_vs_stable"}) {
        EXPECT_EQ(gate(clean, name).outcome, verdict::pass) << gate(clean, name).explanation;
    }
    EXPECT_TRUE(clean.all_pass());
    // The floor is small: 1 % 4xx against none still fails.
    auto with_400s = counts(20000, 0, 1000);
    with_400s.codes[metrics::code_slot(200)] -= 200;
    with_400s.codes[metrics::code_slot(400)] += 200;
    auto worse = judge(cfg, with_400s, counts(20000, 0, 1000));
    EXPECT_EQ(gate(worse, "client_error_rate_vs_stable").outcome, verdict::fail)
        << gate(worse, "client_error_rate_vs_stable").explanation;
    // Against none, the sentence gives both rates and no multiple (it said "(0.00x)": as if
    // the candidate were the better).
    const auto& why = gate(worse, "client_error_rate_vs_stable").explanation;
    EXPECT_NE(why.find("4xx rate 1.00 % vs stable 0.00 % over 20000 candidate"), std::string::npos)
        << why;
    EXPECT_EQ(why.find("0.00x"), std::string::npos) << why;
    // An explicit delta of 0 is taken at its word: a strict ratio, never shown met on 0 vs 0.
    cfg.max_error_rate_delta = 0.0;
    auto strict = judge(cfg, counts(20000, 0, 1000), counts(20000, 0, 1000));
    EXPECT_EQ(gate(strict, "error_rate_vs_stable").outcome, verdict::inconclusive)
        << gate(strict, "error_rate_vs_stable").explanation;
}

// `n` OpenAI streams answered 200: first token after `ttft_micros`, `per_token_micros` between
// the later tokens, the whole answer after `total_micros`.
metrics::series_counts streams(std::uint64_t n, std::uint64_t ttft_micros,
                               std::uint64_t per_token_micros, std::uint64_t total_micros) {
    auto c = counts(n, 0, total_micros);
    for (std::uint64_t i = 0; i < n; ++i) {
        c.time_to_first_token.record(ttft_micros + (i % 10) * ttft_micros / 50);
        c.time_per_output_token.record(per_token_micros + (i % 10) * per_token_micros / 50);
    }
    c.streams = n;
    c.stream_events = n * 20;
    return c;
}

TEST(Gates, StreamsAreJudgedOnTimeToFirstTokenNotTheirWholeLength) {
    gate_config cfg = errors_only();
    cfg.max_latency_ratio = {{0.5, 1.2}};
    cfg.max_ttft_ratio = {{0.5, 1.2}};
    cfg.max_time_per_token_ratio = {{0.5, 1.2}};
    // The candidate starts 3x later (300 ms vs 100 ms) and streams faster, so its answers
    // take as long as stable's: latency passes, time to first token fails.
    auto slow_start = judge(cfg, streams(2000, 300000, 15000, 1000000),
                            streams(20000, 100000, 45000, 1000000));
    EXPECT_EQ(gate(slow_start, "p50_latency_vs_stable").outcome, verdict::pass)
        << gate(slow_start, "p50_latency_vs_stable").explanation;
    const auto& ttft = gate(slow_start, "p50_ttft_vs_stable");
    EXPECT_EQ(ttft.outcome, verdict::fail) << ttft.explanation;
    EXPECT_NE(ttft.explanation.find("p50 time to first token"), std::string::npos)
        << ttft.explanation;
    EXPECT_EQ(gate(slow_start, "p50_time_per_token_vs_stable").outcome, verdict::pass);
    // The same streams, started as fast: every gate passes.
    auto same = judge(cfg, streams(2000, 100000, 45000, 1000000),
                      streams(20000, 100000, 45000, 1000000));
    EXPECT_TRUE(same.all_pass()) << gate(same, "p50_ttft_vs_stable").explanation;
    // Absolute ceilings too.
    gate_config limits = errors_only();
    limits.max_ttft = {{0.99, 0.2}};
    auto over = judge(limits, streams(2000, 300000, 15000, 1000000),
                      streams(20000, 100000, 45000, 1000000));
    EXPECT_EQ(gate(over, "p99_ttft").outcome, verdict::fail) << gate(over, "p99_ttft").explanation;
}

// With streaming gates configured, the default comparison of whole answers is left out: an LLM
// candidate whose answers are twice as long, started and paced as fast, is not "slower".
TEST(Gates, StreamingGatesReplaceTheDefaultWholeAnswerLatencyComparison) {
    gate_config cfg;  // the defaults: sequential errors and latency
    cfg.max_ttft_ratio = {{0.9, 1.3}};
    auto longer = judge(cfg, streams(2000, 100000, 45000, 2000000),
                        streams(20000, 100000, 45000, 1000000));
    for (const auto& g : longer.gates) {
        EXPECT_EQ(g.gate.find("latency_vs_stable"), std::string::npos) << g.gate;
    }
    EXPECT_EQ(gate(longer, "p90_ttft_vs_stable").outcome, verdict::pass)
        << gate(longer, "p90_ttft_vs_stable").explanation;
    // Without streaming gates the default comparison judges them as before.
    auto plain = judge(gate_config{}, streams(2000, 100000, 45000, 2000000),
                       streams(20000, 100000, 45000, 1000000));
    EXPECT_EQ(gate(plain, "p50_latency_vs_stable").outcome, verdict::fail)
        << gate(plain, "p50_latency_vs_stable").explanation;
}

// `n` completed OpenAI streams at about `tokens_per_second` each (spread over +-9 %), their
// first token after 100 ms.
metrics::series_counts token_streams(std::uint64_t n, double tokens_per_second) {
    auto c = streams(n, 100000, static_cast<std::uint64_t>(1e6 / tokens_per_second), 1000000);
    for (std::uint64_t i = 0; i < n; ++i) {
        const double rate = tokens_per_second * (0.91 + 0.02 * static_cast<double>(i % 10));
        c.output_tokens_per_second.record(
            static_cast<std::uint64_t>(rate * metrics::token_rate_scale));
    }
    return c;
}

TEST(Gates, ACandidateStreamingAtHalfStablesRateFailsTheTokenRateFloorWithTheSameTtft) {
    gate_config cfg = errors_only();
    cfg.max_ttft_ratio = {{0.5, 1.2}};
    cfg.min_tokens_per_second_ratio = {{0.5, 0.8}};
    auto slow = judge(cfg, token_streams(2000, 25), token_streams(20000, 50));
    EXPECT_EQ(gate(slow, "p50_ttft_vs_stable").outcome, verdict::pass)
        << gate(slow, "p50_ttft_vs_stable").explanation;
    const auto& rate = gate(slow, "p50_tokens_per_second_vs_stable");
    EXPECT_EQ(rate.outcome, verdict::fail) << rate.explanation;
    // "p50 output rate 24.8 tokens/s vs stable 49.7 tokens/s (0.50x) over 2000 candidate
    // completed streams: slower than allowed ..." (bucket midpoints: within 1.6 %)
    EXPECT_NE(rate.explanation.find("p50 output rate 24.8 tokens/s vs stable 49.7 tokens/s "
                                    "(0.50x) over 2000 candidate completed streams"),
              std::string::npos)
        << rate.explanation;
    EXPECT_NE(rate.explanation.find("slower than allowed (at least stable x0.8)"),
              std::string::npos)
        << rate.explanation;
    EXPECT_NEAR(rate.candidate, 25, 25 * 0.1);
    EXPECT_NEAR(rate.stable, 50, 50 * 0.1);
    EXPECT_NEAR(rate.limit, 40, 40 * 0.1);
    // As fast as stable: passes; a little slower, within the tolerance: passes too.
    auto same = judge(cfg, token_streams(2000, 50), token_streams(20000, 50));
    EXPECT_TRUE(same.all_pass()) << gate(same, "p50_tokens_per_second_vs_stable").explanation;
    auto within = judge(cfg, token_streams(2000, 47), token_streams(20000, 50));
    EXPECT_EQ(gate(within, "p50_tokens_per_second_vs_stable").outcome, verdict::pass)
        << gate(within, "p50_tokens_per_second_vs_stable").explanation;
    // Too few streams to tell a small difference: neither way yet.
    auto few = judge(cfg, token_streams(60, 39), token_streams(20000, 50));
    EXPECT_EQ(gate(few, "p50_tokens_per_second_vs_stable").outcome, verdict::inconclusive)
        << gate(few, "p50_tokens_per_second_vs_stable").explanation;
    // Stable without completed streams: nothing to compare with.
    auto no_stable = judge(cfg, token_streams(2000, 25), counts(20000, 0, 1000));
    EXPECT_EQ(gate(no_stable, "p50_tokens_per_second_vs_stable").outcome, verdict::inconclusive);
}

TEST(Gates, AnAbsoluteTokenRateFloorJudgesTheSlowStreams) {
    gate_config cfg = errors_only();
    cfg.min_tokens_per_second = {{0.1, 30}};
    auto slow = judge(cfg, token_streams(2000, 25), token_streams(20000, 50));
    const auto& absolute = gate(slow, "p10_tokens_per_second");
    EXPECT_EQ(absolute.outcome, verdict::fail) << absolute.explanation;
    EXPECT_NE(absolute.explanation.find("slower than the floor 30.0 tokens/s"), std::string::npos)
        << absolute.explanation;
    auto fast = judge(cfg, token_streams(2000, 50), token_streams(20000, 50));
    EXPECT_EQ(gate(fast, "p10_tokens_per_second").outcome, verdict::pass)
        << gate(fast, "p10_tokens_per_second").explanation;
    auto few = judge(cfg, token_streams(20, 50), token_streams(20000, 50));
    EXPECT_EQ(gate(few, "p10_tokens_per_second").outcome, verdict::inconclusive)
        << gate(few, "p10_tokens_per_second").explanation;
}

// Requests spread over the unit buckets; `hot` buckets (a few heavy users with flaky
// inputs) get `hot_errors` errors each, the others `errors` each.
metrics::series_counts in_units(std::uint64_t per_bucket, std::uint64_t errors,
                                std::size_t hot, std::uint64_t hot_errors) {
    metrics::series_counts c;
    for (std::size_t b = 0; b < metrics::unit_buckets; ++b) {
        const auto e = b < hot ? hot_errors : errors;
        c.codes[metrics::code_slot(200)] += per_bucket - e;
        c.codes[metrics::code_slot(503)] += e;
        c.units.requests[b] = per_bucket;
        c.units.server_errors[b] = e;
    }
    return c;
}

TEST(Gates, CorrelatedRequestsWidenTheBounds) {
    gate_config cfg = errors_only();
    cfg.max_error_rate_ratio = 1.5;
    // 2.5 % vs stable's 1 % over 32,000 requests each. Spread evenly over the buckets, that
    // is a regression; all from two buckets (two heavy users whose inputs fail), it is what
    // those users do, and the evidence is worth a handful of users, not 32,000 requests.
    const auto stable = in_units(1000, 10, 0, 0);
    auto spread = judge(cfg, in_units(1000, 25, 0, 0), stable);
    EXPECT_EQ(gate(spread, "error_rate_vs_stable").outcome, verdict::fail)
        << gate(spread, "error_rate_vs_stable").explanation;
    auto clustered = judge(cfg, in_units(1000, 10, 2, 250), stable);
    EXPECT_EQ(gate(clustered, "error_rate_vs_stable").outcome, verdict::inconclusive)
        << gate(clustered, "error_rate_vs_stable").explanation;
}

TEST(Gates, AHeavyFlakyUserIsOneUnitAmongManyWhenProvingNoHarm) {
    gate_config cfg = errors_only();
    cfg.max_error_rate_ratio = 1.5;
    cfg.max_error_rate_delta = 0.0;
    // Both versions fail 1 % in every unit bucket, but one heavy user on the candidate (as
    // many requests as all its other users together) fails 3 %: 2 % vs 1 % per request, a
    // regression if requests were independent, yet the candidate's users fail as stable's
    // do. Judged per unit it passes; per request it could only hold (sticky A/A rollouts
    // completed within 10 minutes in 24 of 100 simulated runs that way).
    const auto stable = in_units(1000, 10, 0, 0);
    auto candidate = in_units(1000, 10, 1, 0);
    const auto heavy = static_cast<std::uint64_t>(metrics::unit_buckets - 1) * 1000;
    candidate.codes[metrics::code_slot(200)] += heavy - heavy * 3 / 100 - 1000;
    candidate.codes[metrics::code_slot(503)] += heavy * 3 / 100;
    candidate.units.requests[0] = heavy;
    candidate.units.server_errors[0] = heavy * 3 / 100;
    auto e = judge(cfg, candidate, stable);
    EXPECT_EQ(gate(e, "error_rate_vs_stable").outcome, verdict::pass)
        << gate(e, "error_rate_vs_stable").explanation;
    EXPECT_NE(gate(e, "error_rate_vs_stable").explanation.find("2.00 % vs stable 1.00 %"),
              std::string::npos)
        << gate(e, "error_rate_vs_stable").explanation;
}

TEST(Gates, WhatCountsAsAnErrorIsConfigurable) {
    metrics::series_counts c;
    c.codes[metrics::code_slot(200)] = 9000;
    c.codes[metrics::code_slot(429)] = 1000;
    gate_config cfg;
    cfg.max_error_rate = 0.05;
    cfg.sequential_errors = false;
    cfg.sequential_latency = false;
    // By default 4xx are not errors of the candidate's own (they are compared with stable's).
    EXPECT_EQ(gate(judge(cfg, c, c), "error_rate").outcome, verdict::pass);
    cfg.error_slots = error_slots_for({"5xx", "429"});
    EXPECT_EQ(gate(judge(cfg, c, c), "error_rate").outcome, verdict::fail);
    auto four = error_slots_for({"4xx"});
    EXPECT_EQ(four.size(), 4u);  // 400, 404, 429 and the 4xx class
}

TEST(Gates, StreamsCutShortAreErrorsWhateverStatusesAreConfigured) {
    // 10000 answers of 200, 1000 of them streams cut mid-way (or ending in an error event).
    metrics::series_counts c;
    c.codes[metrics::code_slot(200)] = 10000;
    c.cut_short = 1000;
    gate_config cfg;
    cfg.max_error_rate = 0.05;
    cfg.sequential_errors = false;
    cfg.sequential_latency = false;
    cfg.client_errors = false;
    EXPECT_EQ(gate(judge(cfg, c, c), "error_rate").outcome, verdict::fail);
    cfg.error_slots = error_slots_for({"503"});
    EXPECT_EQ(gate(judge(cfg, c, c), "error_rate").outcome, verdict::fail)
        << gate(judge(cfg, c, c), "error_rate").explanation;
}

// --- Model quality ---------------------------------------------------------------------------

gate_config quality_only() {
    gate_config cfg;
    cfg.client_errors = false;
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
    auto e = judge(cfg, live, live, nullptr);
    EXPECT_TRUE(e.gates.empty());  // no mirror in this stage: the gate is not judged here
    auto m = mirrored(100, 100);
    EXPECT_EQ(gate(judge(cfg, live, live, &m), "prediction_agreement").outcome,
              verdict::inconclusive);  // too few
    m = mirrored(3000, 3000);
    EXPECT_EQ(gate(judge(cfg, live, live, &m), "prediction_agreement").outcome,
              verdict::pass);
    m = mirrored(3000, 2700);  // 90 %
    auto g = gate(judge(cfg, live, live, &m), "prediction_agreement");
    EXPECT_EQ(g.outcome, verdict::fail);
    EXPECT_NE(g.explanation.find("below the floor 95.00 %"), std::string::npos) << g.explanation;
    // A clearly good shadow clears a 98 % floor within hundreds of comparisons.
    cfg.min_agreement = 0.98;
    m = mirrored(700, 700);
    EXPECT_EQ(gate(judge(cfg, live, live, &m), "prediction_agreement").outcome, verdict::pass)
        << gate(judge(cfg, live, live, &m), "prediction_agreement").explanation;
    cfg.min_agreement = 0.95;
    m = mirrored(3000, 2850);  // exactly at the floor: never sure either way
    EXPECT_EQ(gate(judge(cfg, live, live, &m), "prediction_agreement").outcome,
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
    auto e = judge(cfg, same, stable);
    EXPECT_EQ(gate(e, "prediction_psi").outcome, verdict::pass);
    EXPECT_EQ(gate(e, "prediction_ks").outcome, verdict::pass);
    e = judge(cfg, shifted, stable);
    EXPECT_EQ(gate(e, "prediction_psi").outcome, verdict::fail) << gate(e, "prediction_psi").explanation;
    EXPECT_EQ(gate(e, "prediction_ks").outcome, verdict::fail);
    // The same shift seen on 10 predictions is not evidence of anything yet.
    e = judge(cfg, valued({0, 0, 0, 1, 2, 3, 2, 1, 1, 0}), stable);
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
    EXPECT_EQ(gate(judge(cfg, labelled(100, 80), labelled(100, 90)), "accuracy_vs_stable")
                  .outcome,
              verdict::inconclusive);
    EXPECT_EQ(gate(judge(cfg, labelled(20000, 17000), labelled(20000, 18000)),
                   "accuracy_vs_stable")
                  .outcome,
              verdict::fail);
    EXPECT_EQ(gate(judge(cfg, labelled(5000, 4500), labelled(5000, 4510)),
                   "accuracy_vs_stable")
                  .outcome,
              verdict::pass);
    cfg.candidate_serves_clients = false;  // a mirror-only stage: no labels can come back
    EXPECT_TRUE(judge(cfg, labelled(100, 80), labelled(100, 90)).gates.empty());
}

TEST(QualityGates, CandidateAgeNeedsTrainedAt) {
    auto cfg = quality_only();
    cfg.max_candidate_age_seconds = 3600;
    const auto c = counts(10, 0, 1000);
    EXPECT_EQ(gate(judge(cfg, c, c), "candidate_age").outcome, verdict::fail);
    cfg.candidate_age_seconds = 60;
    EXPECT_EQ(gate(judge(cfg, c, c), "candidate_age").outcome, verdict::pass);
    cfg.candidate_age_seconds = 7200;
    EXPECT_EQ(gate(judge(cfg, c, c), "candidate_age").outcome, verdict::fail);
}

}  // namespace
}  // namespace stagegate::rollout
