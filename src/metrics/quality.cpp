#include "stagegate/metrics/quality.hpp"

#include <algorithm>
#include <cmath>

namespace stagegate::metrics {

void diff_histogram::record(double difference) {
    difference = std::fabs(difference);
    constexpr double top = 1e9;  // lowest * 10^decades
    sum_ += difference <= top ? difference : top;  // NaN compares false: top
    std::size_t bucket = 0;
    if (difference >= lowest) {
        const double position = std::log10(difference / lowest) * per_decade;
        bucket = position >= decades * per_decade ? bucket_count - 1
                                                  : 1 + static_cast<std::size_t>(position);
    } else if (!(difference == 0)) {
        bucket = std::isnan(difference) ? bucket_count - 1 : 1;
    }
    ++counts_[bucket];
    ++count_;
}

void diff_histogram::merge(const diff_histogram& other) {
    for (std::size_t i = 0; i < bucket_count; ++i) {
        counts_[i] += other.counts_[i];
    }
    count_ += other.count_;
    sum_ += other.sum_;
}

void diff_histogram::clear() {
    counts_.fill(0);
    count_ = 0;
    sum_ = 0;
}

double diff_histogram::quantile(double q) const {
    if (count_ == 0) {
        return 0;
    }
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += counts_[i];
        if (seen >= std::max<std::uint64_t>(rank, 1)) {
            if (i == 0) {
                return 0;
            }
            const double lower = lowest * std::pow(10.0, static_cast<double>(i - 1) / per_decade);
            return lower * std::pow(10.0, 0.5 / per_decade);
        }
    }
    return lowest * std::pow(10.0, decades);
}

void prediction_counts::merge(const prediction_counts& o) {
    parsed += o.parsed;
    missing += o.missing;
    invalid += o.invalid;
    unread += o.unread;
    for (std::size_t i = 0; i < prediction_bins; ++i) {
        label_bins[i] += o.label_bins[i];
        value_bins[i] += o.value_bins[i];
    }
    labels += o.labels;
    values += o.values;
    value_sum += o.value_sum;
    compared_labels += o.compared_labels;
    agreed_labels += o.agreed_labels;
    abs_diff.merge(o.abs_diff);
    rel_diff.merge(o.rel_diff);
    mirrors_dropped += o.mirrors_dropped;
    feedback += o.feedback;
    correct += o.correct;
    valued_feedback += o.valued_feedback;
    abs_error_sum += o.abs_error_sum;
}

void prediction_counts::clear() { *this = prediction_counts{}; }

}  // namespace stagegate::metrics
