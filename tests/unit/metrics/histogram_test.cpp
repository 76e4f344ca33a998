#include "stagegate/metrics/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace stagegate::metrics {
namespace {

TEST(LatencyHistogram, BucketsCoverTheRangeContiguously) {
    for (std::size_t b = 0; b + 1 < latency_histogram::bucket_count; ++b) {
        ASSERT_EQ(latency_histogram::bucket_upper(b), latency_histogram::bucket_lower(b + 1)) << b;
    }
    for (std::uint64_t v : {0ull, 1ull, 31ull, 32ull, 33ull, 63ull, 64ull, 100ull, 1000ull,
                            123456ull, 60'000'000ull, (1ull << 27) - 1}) {
        auto b = latency_histogram::bucket_of(v);
        EXPECT_LE(latency_histogram::bucket_lower(b), v) << v;
        EXPECT_LT(v, latency_histogram::bucket_upper(b)) << v;
    }
    EXPECT_EQ(latency_histogram::bucket_of(1ull << 40), latency_histogram::bucket_count - 1);
}

TEST(LatencyHistogram, MidpointErrorIsBoundedFrom100usTo60s) {
    for (double v = 100; v <= 60e6; v *= 1.013) {
        auto micros = static_cast<std::uint64_t>(v);
        double mid = latency_histogram::bucket_midpoint(latency_histogram::bucket_of(micros));
        ASSERT_LE(std::abs(mid - static_cast<double>(micros)) / static_cast<double>(micros),
                  latency_histogram::max_relative_error + 1e-12)
            << micros;
    }
    EXPECT_LE(latency_histogram::max_relative_error, 0.02);
}

TEST(LatencyHistogram, QuantilesMatchExactOnesWithinTheBound) {
    // Lognormal latencies around 20 ms with a heavy tail; exact quantiles by sorting.
    std::mt19937_64 rng(7);
    std::lognormal_distribution<double> dist(std::log(20000.0), 0.8);
    std::vector<std::uint64_t> values;
    latency_histogram h;
    for (int i = 0; i < 100000; ++i) {
        auto v = static_cast<std::uint64_t>(dist(rng)) + 100;
        values.push_back(v);
        h.record(v);
    }
    std::sort(values.begin(), values.end());
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        auto rank = static_cast<std::size_t>(std::ceil(q * values.size())) - 1;
        double exact = static_cast<double>(values[rank]);
        double got = h.quantile_micros(q);
        EXPECT_LE(std::abs(got - exact) / exact, latency_histogram::max_relative_error + 1e-9)
            << "q=" << q << " exact=" << exact << " got=" << got;
    }
    EXPECT_EQ(h.count(), 100000u);
}

TEST(LatencyHistogram, MergeAddsCountsAndSums) {
    latency_histogram a;
    latency_histogram b;
    a.record(100);
    b.record(200);
    b.record(300);
    a.merge(b);
    EXPECT_EQ(a.count(), 3u);
    EXPECT_EQ(a.sum_micros(), 600u);
    EXPECT_EQ(a.count_below(250), 2u);
    a.clear();
    EXPECT_EQ(a.count(), 0u);
    EXPECT_EQ(a.quantile_micros(0.5), 0.0);
}

}  // namespace
}  // namespace stagegate::metrics
