// Reading predictions out of answers, comparing two versions' predictions, and joining labels.
#include "stagegate/metrics/quality.hpp"
#include "stagegate/predictions/drift.hpp"
#include "stagegate/predictions/extract.hpp"
#include "stagegate/predictions/feedback.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace stagegate::predictions {
namespace {

spec preset(const std::string& name) {
    config::predictions cfg;
    cfg.preset = name;
    if (name == "tfserving") {
        cfg.label = cfg.value = "/predictions/0";
    } else if (name == "kserve_v2") {
        cfg.label = cfg.value = "/outputs/0/data";
    } else if (name == "openai") {
        cfg.label = "/choices/0/finish_reason";
        cfg.value = "/choices/0/message/content";
        cfg.bins_max = 4000;
    }
    return compile(cfg);
}

TEST(Extract, TfServingNumbersAndClassScores) {
    auto s = preset("tfserving");
    prediction p;
    ASSERT_EQ(extract(R"({"predictions": [0.73, 0.1], "model_version": "v1"})", s, p),
              outcome::parsed);
    EXPECT_TRUE(p.has_value);
    EXPECT_DOUBLE_EQ(p.value, 0.73);
    EXPECT_EQ(p.value_bin, 14u);   // [0.70, 0.75) of 20 bins over [0, 1]
    EXPECT_FALSE(p.has_label);     // a non-integral number is no class

    ASSERT_EQ(extract(R"({"predictions": [[0.1, 0.7, 0.2]]})", s, p), outcome::parsed);
    EXPECT_TRUE(p.has_label);
    EXPECT_EQ(p.label_hash, label_hash("1"));  // argmax
    EXPECT_EQ(p.label_bin, 1u);
    EXPECT_DOUBLE_EQ(p.value, 0.7);             // the top score

    ASSERT_EQ(extract(R"({"predictions": ["cat"]})", s, p), outcome::parsed);
    EXPECT_EQ(p.label_hash, label_hash("cat"));
    ASSERT_EQ(extract(R"({"predictions": [3]})", s, p), outcome::parsed);
    EXPECT_EQ(p.label_hash, label_hash("3"));
    EXPECT_EQ(p.label_bin, 3u);
}

TEST(Extract, KServeV2AndOpenAi) {
    prediction p;
    ASSERT_EQ(extract(R"({"model_name":"m","outputs":[{"name":"o","datatype":"FP32","shape":[1],
                          "data":[0.25]}]})",
                      preset("kserve_v2"), p),
              outcome::parsed);
    EXPECT_DOUBLE_EQ(p.value, 0.25);
    ASSERT_EQ(extract(R"({"choices":[{"index":0,"finish_reason":"length",
                          "message":{"role":"assistant","content":"hello \"you\""}}]})",
                      preset("openai"), p),
              outcome::parsed);
    EXPECT_EQ(p.label_hash, label_hash("length"));
    EXPECT_DOUBLE_EQ(p.value, 13);  // the JSON text of the content: escapes count as two
}

TEST(Extract, MissingAndInvalidAreOutcomesNotErrors) {
    auto s = preset("tfserving");
    prediction p;
    EXPECT_EQ(extract(R"({"error": "model not loaded"})", s, p), outcome::missing);
    EXPECT_EQ(extract(R"({"predictions": []})", s, p), outcome::missing);
    EXPECT_EQ(extract(R"({"predictions": [null]})", s, p), outcome::missing);
    EXPECT_EQ(extract("not json", s, p), outcome::invalid);
    EXPECT_EQ(extract("", s, p), outcome::invalid);
    EXPECT_EQ(extract(R"({"predictions": [0.5)", s, p), outcome::invalid);  // cut short
    EXPECT_EQ(extract(R"({"predictions": [0.5]} trailing)", s, p), outcome::invalid);
    EXPECT_EQ(extract(R"({"predictions": [[[[[[[1]]]]]]]})", s, p), outcome::missing);
}

TEST(Extract, LocateWalksPastNestedValuesAndEscapes) {
    const std::string doc = R"({"a": {"x": [1, {"}": "]"}], "b\"": 2}, "a/b": [10, 20, "z"],
                              "~k": true})";
    EXPECT_EQ(locate(doc, parse_pointer("/a/x/1/}")), "\"]\"");
    EXPECT_EQ(locate(doc, parse_pointer("/a~1b/1")), "20");
    EXPECT_EQ(locate(doc, parse_pointer("/~0k")), "true");
    EXPECT_EQ(locate(doc, parse_pointer("/a/x/2")), "");
    EXPECT_EQ(locate(doc, parse_pointer("/a/x/01")), "");  // not a valid index
    EXPECT_EQ(locate(doc, parse_pointer("/nope")), "");
    EXPECT_EQ(locate(doc, parse_pointer("")), doc.substr(0, doc.size()));
}

TEST(Extract, ValueBinsClampAtTheEnds) {
    auto s = preset("tfserving");
    EXPECT_EQ(value_bin(s, -5), 0u);
    EXPECT_EQ(value_bin(s, 0), 0u);
    EXPECT_EQ(value_bin(s, 0.999), 19u);
    EXPECT_EQ(value_bin(s, 1), 19u);
    EXPECT_EQ(value_bin(s, 1e300), 19u);
    EXPECT_EQ(value_bin(s, std::nan("")), 0u);
    EXPECT_LT(label_bin("anything at all"), label_bins);
    EXPECT_EQ(label_bin("07"), label_bin("07"));
}

TEST(Drift, PsiAndKsOfEqualAndShiftedDistributions) {
    std::vector<std::uint64_t> a = {100, 200, 400, 200, 100};
    std::vector<std::uint64_t> b = {100, 200, 400, 200, 100};
    std::vector<std::uint64_t> shifted = {0, 100, 200, 400, 300};
    EXPECT_NEAR(psi(a, b), 0, 1e-12);
    EXPECT_NEAR(ks(a, b), 0, 1e-12);
    EXPECT_GT(psi(shifted, a), 0.25);
    EXPECT_NEAR(ks(shifted, a), 0.4, 1e-9);  // cumulative shares 0.3 vs 0.7 after bin 2
    EXPECT_GT(psi_noise(100, 100, 20, 0.01), psi_noise(10000, 10000, 20, 0.01));
}

// Two samples of one distribution exceed the noise bound about alpha of the time: with
// alpha = 0.01 and 400 trials the count is Binomial(400, <= 0.01); 16 or more has probability
// below 1e-6.
TEST(Drift, NoiseBoundsHoldForSamplesOfOneDistribution) {
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal(0.5, 0.15);
    int psi_over = 0;
    int ks_over = 0;
    for (int trial = 0; trial < 400; ++trial) {
        std::vector<std::uint64_t> c(20, 0);
        std::vector<std::uint64_t> s(20, 0);
        for (int i = 0; i < 500; ++i) {
            ++c[std::clamp(static_cast<int>(normal(rng) * 20), 0, 19)];
        }
        for (int i = 0; i < 2000; ++i) {
            ++s[std::clamp(static_cast<int>(normal(rng) * 20), 0, 19)];
        }
        psi_over += psi(c, s) > psi_noise(500, 2000, 20, 0.01);
        ks_over += ks(c, s) > ks_noise(500, 2000, 0.01);
    }
    EXPECT_LT(psi_over, 16);
    EXPECT_LT(ks_over, 16);
}

// The confidence sequence covers the true rate at every n at once: 300 runs of 5000 draws,
// each failing when any prefix's interval misses p. Failures are Binomial(300, <= 0.01);
// 12 or more has probability below 1e-6.
TEST(Drift, MeanRadiusIsAConfidenceSequence) {
    std::mt19937_64 rng(5);
    std::bernoulli_distribution draw(0.9);
    int misses = 0;
    for (int run = 0; run < 300; ++run) {
        std::uint64_t hits = 0;
        bool missed = false;
        for (std::uint64_t n = 1; n <= 5000 && !missed; ++n) {
            hits += draw(rng);
            const double rate = static_cast<double>(hits) / static_cast<double>(n);
            missed = std::fabs(rate - 0.9) > mean_radius(n, 0.01);
        }
        misses += missed;
    }
    EXPECT_LT(misses, 12);
    EXPECT_LT(mean_radius(2000, 0.01), 0.05);
    EXPECT_NEAR(chi_square_quantile(0.99, 19), 36.19, 0.3);
    EXPECT_NEAR(normal_quantile(0.975), 1.95996, 1e-4);
}

// The noise bounds' quantiles are the exact distributions' (Boost.Math), not approximations:
// known values to about 1e-12 relative. Wilson-Hilferty missed the 1-dof chi-square by 28 %.
TEST(Drift, QuantilesAreTheExactDistributions) {
    EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-14);
    EXPECT_NEAR(normal_quantile(1e-10), -6.361340902404056, 1e-11);
    EXPECT_NEAR(chi_square_quantile(0.95, 1), 3.841458820694124, 1e-11);  // 1.959964^2
    EXPECT_NEAR(chi_square_quantile(0.999, 2), 13.815510557964274, 1e-10);  // -2 ln 0.001
    EXPECT_NEAR(chi_square_quantile(0.99, 19), 36.190869129270006, 1e-9);
    // Kolmogorov: P(sqrt(n) D > x) = 2 sum (-1)^(k-1) exp(-2 k^2 x^2).
    EXPECT_NEAR(kolmogorov_upper_quantile(0.05, 1), 1.3580986393225505, 1e-10);
    EXPECT_NEAR(kolmogorov_upper_quantile(0.01, 100), 0.16276236115189502, 1e-11);
    // Two samples of 500 and 2000 are n_eff = 400 observations.
    EXPECT_NEAR(ks_noise(500, 2000, 0.05), 1.3580986393225505 / 20, 1e-11);
}

TEST(Feedback, JoinsOnceExpiresAndEvicts) {
    using namespace std::chrono_literals;
    feedback_book book(3, 60s);
    const auto t0 = clock::now();
    prediction p;
    p.has_label = true;
    p.label_hash = label_hash("cat");
    book.add({"a", 7, p}, t0);
    book.add({"b", 8, p}, t0);
    auto j = book.join("a", t0 + 1s);
    EXPECT_EQ(j.status, feedback_book::join_status::matched);
    EXPECT_EQ(j.series, 7u);
    EXPECT_EQ(j.predicted.label_hash, label_hash("cat"));
    EXPECT_EQ(book.join("a", t0 + 1s).status, feedback_book::join_status::duplicate);
    EXPECT_EQ(book.join("zz", t0 + 1s).status, feedback_book::join_status::unmatched);
    book.add({"c", 9, p}, t0 + 2s);
    book.add({"d", 9, p}, t0 + 2s);  // four: "a" (oldest) goes
    EXPECT_EQ(book.size(), 3u);
    EXPECT_EQ(book.join("a", t0 + 2s).status, feedback_book::join_status::unmatched);
    EXPECT_EQ(book.evicted(), 0u);  // "a" had its label
    EXPECT_EQ(book.join("b", t0 + 61s).status, feedback_book::join_status::unmatched);  // TTL
    EXPECT_EQ(book.evicted(), 1u);
    // The same id again while the first answer is remembered: neither is joined, so a client
    // choosing ids cannot decide which answer another's label judges.
    book.add({"c", 10, p}, t0 + 62s);
    EXPECT_EQ(book.join("c", t0 + 62s).status, feedback_book::join_status::ambiguous);
    EXPECT_EQ(book.join("c", t0 + 62s).status, feedback_book::join_status::ambiguous);
    // Once the earlier answer is past its TTL, an id used again is a new answer's own.
    book.add({"d", 11, p}, t0 + 63s);
    auto again = book.join("d", t0 + 63s);
    EXPECT_EQ(again.status, feedback_book::join_status::matched);
    EXPECT_EQ(again.series, 11u);
}

TEST(DiffHistogram, QuantilesWithinItsResolution) {
    metrics::diff_histogram h;
    for (int i = 0; i < 90; ++i) {
        h.record(0);
    }
    for (int i = 0; i < 10; ++i) {
        h.record(-0.5);
    }
    EXPECT_EQ(h.count(), 100u);
    EXPECT_EQ(h.quantile(0.5), 0);
    EXPECT_NEAR(h.quantile(0.99), 0.5, 0.5 * 0.34);
}

// The sum is a Prometheus summary's _sum: exact for what is on the scale, and what is beyond
// it (or not a number) counts as the top of the scale, as in the quantiles.
TEST(DiffHistogram, SumsItsDifferencesClampedToItsScale) {
    metrics::diff_histogram h;
    h.record(0.5);
    h.record(-0.25);
    EXPECT_EQ(h.sum(), 0.75);
    h.record(1e12);
    h.record(std::nan(""));
    EXPECT_EQ(h.count(), 4u);
    EXPECT_EQ(h.sum(), 0.75 + 2e9);
    metrics::diff_histogram other;
    other.record(2);
    h.merge(other);
    EXPECT_EQ(h.sum(), 2.75 + 2e9);
    EXPECT_EQ(h.count(), 5u);
    h.clear();
    EXPECT_EQ(h.sum(), 0);
}

}  // namespace
}  // namespace stagegate::predictions
