// metrics/histogram: a fixed-memory, log-linear latency histogram.
// Owns: bucketing of microsecond latencies with bounded relative error, merging, quantiles.
// 32 sub-buckets per power of two: a value is reported as its bucket's midpoint, so the
// relative error of any quantile is at most 1/64 (1.6 %) from 32 µs up to 2^27 µs (134 s);
// below 32 µs buckets are exact. Values above the top are clamped into the last bucket.
// Must not touch: clocks, threads, labels. Plain integers: one writer, or merged copies.
#pragma once

#include <array>
#include <cstdint>

namespace stagegate::metrics {

class latency_histogram {
public:
    static constexpr int sub_bucket_bits = 5;
    static constexpr std::uint64_t sub_buckets = 1u << sub_bucket_bits;  // 32
    static constexpr int max_exponent = 26;  // values up to 2^27 - 1 µs
    static constexpr std::size_t bucket_count =
        sub_buckets + (max_exponent - sub_bucket_bits + 1) * sub_buckets;  // 736
    // The worst relative error of a reported value (midpoint of its bucket).
    static constexpr double max_relative_error = 1.0 / (2.0 * sub_buckets);

    static std::size_t bucket_of(std::uint64_t micros) {
        if (micros < sub_buckets) {
            return static_cast<std::size_t>(micros);
        }
        int exponent = 63 - __builtin_clzll(micros);
        if (exponent > max_exponent) {
            return bucket_count - 1;
        }
        std::uint64_t sub = (micros >> (exponent - sub_bucket_bits)) & (sub_buckets - 1);
        return sub_buckets + static_cast<std::size_t>(exponent - sub_bucket_bits) * sub_buckets +
               static_cast<std::size_t>(sub);
    }
    // [lower, upper) in microseconds.
    static std::uint64_t bucket_lower(std::size_t bucket);
    static std::uint64_t bucket_upper(std::size_t bucket);
    static double bucket_midpoint(std::size_t bucket);

    void record(std::uint64_t micros) {
        ++counts_[bucket_of(micros)];
        ++count_;
        sum_micros_ += micros;
    }
    void merge(const latency_histogram& other);
    void clear();
    // Rebuilds a histogram read back from elsewhere (another replica's published counts).
    void restore(std::size_t bucket, std::uint64_t n, std::uint64_t sum_micros) {
        if (bucket < bucket_count) {
            counts_[bucket] += n;
            count_ += n;
            sum_micros_ += sum_micros;
        }
    }

    std::uint64_t count() const { return count_; }
    std::uint64_t sum_micros() const { return sum_micros_; }
    std::uint64_t bucket(std::size_t i) const { return counts_[i]; }
    // The q-quantile (0 <= q <= 1) in microseconds; 0 when empty. Nearest-rank on buckets.
    double quantile_micros(double q) const;
    // How many recorded values were below `micros` (bucket resolution: whole buckets whose
    // midpoint is below it). Used to map onto Prometheus' coarse `le` buckets.
    std::uint64_t count_below(double micros) const;

private:
    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t sum_micros_ = 0;
};

}  // namespace stagegate::metrics
