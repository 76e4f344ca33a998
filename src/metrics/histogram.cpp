#include "stagegate/metrics/histogram.hpp"

#include <cmath>

namespace stagegate::metrics {

std::uint64_t latency_histogram::bucket_lower(std::size_t bucket) {
    if (bucket < sub_buckets) {
        return bucket;
    }
    std::size_t rest = bucket - sub_buckets;
    int exponent = static_cast<int>(rest / sub_buckets) + sub_bucket_bits;
    std::uint64_t sub = rest % sub_buckets;
    return (std::uint64_t{1} << exponent) + (sub << (exponent - sub_bucket_bits));
}

std::uint64_t latency_histogram::bucket_upper(std::size_t bucket) {
    if (bucket < sub_buckets) {
        return bucket + 1;
    }
    std::size_t rest = bucket - sub_buckets;
    int exponent = static_cast<int>(rest / sub_buckets) + sub_bucket_bits;
    return bucket_lower(bucket) + (std::uint64_t{1} << (exponent - sub_bucket_bits));
}

double latency_histogram::bucket_midpoint(std::size_t bucket) {
    if (bucket < sub_buckets) {
        return static_cast<double>(bucket);  // exact
    }
    return (static_cast<double>(bucket_lower(bucket)) + static_cast<double>(bucket_upper(bucket))) /
           2.0;
}

void latency_histogram::merge(const latency_histogram& other) {
    for (std::size_t i = 0; i < bucket_count; ++i) {
        counts_[i] += other.counts_[i];
    }
    count_ += other.count_;
    sum_micros_ += other.sum_micros_;
}

void latency_histogram::clear() {
    counts_.fill(0);
    count_ = 0;
    sum_micros_ = 0;
}

double latency_histogram::quantile_micros(double q) const {
    if (count_ == 0) {
        return 0;
    }
    q = q < 0 ? 0 : (q > 1 ? 1 : q);
    // Nearest rank: the smallest value with at least ceil(q * n) values at or below it.
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
    if (rank == 0) {
        rank = 1;
    }
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += counts_[i];
        if (seen >= rank) {
            return bucket_midpoint(i);
        }
    }
    return bucket_midpoint(bucket_count - 1);
}

std::uint64_t latency_histogram::count_below(double micros) const {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        if (bucket_midpoint(i) > micros) {
            break;
        }
        n += counts_[i];
    }
    return n;
}

}  // namespace stagegate::metrics
