// metrics/quality: what is counted about a series' predictions (models with "predictions").
// Owns: prediction_counts (read outcomes, fixed label and value bins for drift, mirror
// comparisons with stable, joined feedback labels) and diff_histogram (differences between two
// versions' numeric predictions, log-spaced). Plain integers like the rest of a series.
// Must not touch: clocks, threads, labels.
#pragma once

#include <array>
#include <cstdint>

namespace stagegate::metrics {

// |difference| on a log scale: exact zero, then 4 bins per decade from 1e-9 to 1e9, clamped.
class diff_histogram {
public:
    static constexpr int decades = 18;
    static constexpr int per_decade = 4;
    static constexpr std::size_t bucket_count = 2 + decades * per_decade;
    static constexpr double lowest = 1e-9;

    void record(double difference);
    void merge(const diff_histogram& other);
    void clear();
    std::uint64_t count() const { return count_; }
    // The sum of the differences recorded, each clamped to the top of the scale (1e9; a NaN
    // counts as that too), as the quantiles are: a summary's _sum.
    double sum() const { return sum_; }
    std::uint64_t bucket(std::size_t i) const { return counts_[i]; }
    void restore(std::size_t bucket, std::uint64_t n, double sum = 0) {
        if (bucket < bucket_count) {
            counts_[bucket] += n;
            count_ += n;
        }
        sum_ += sum;
    }
    // The q-quantile, reported as its bucket's geometric midpoint (within a factor of 1.34).
    double quantile(double q) const;

private:
    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

inline constexpr std::size_t prediction_bins = 32;  // label bins, and at most this many values

struct prediction_counts {
    // Answers whose body was read: a prediction found, JSON without one, not JSON; and those
    // not read (over max_body_bytes, compressed, not 2xx).
    std::uint64_t parsed = 0;
    std::uint64_t missing = 0;
    std::uint64_t invalid = 0;
    std::uint64_t unread = 0;
    std::array<std::uint64_t, prediction_bins> label_bins{};
    std::array<std::uint64_t, prediction_bins> value_bins{};
    std::uint64_t labels = 0;  // predictions with a label (sum of label_bins)
    std::uint64_t values = 0;  // with a value
    double value_sum = 0;

    // Mirror comparisons, recorded on the candidate's mirror series: both versions answered
    // the same request with a prediction.
    std::uint64_t compared_labels = 0;
    std::uint64_t agreed_labels = 0;
    diff_histogram abs_diff;
    diff_histogram rel_diff;  // |c - s| / max(|s|, 1e-12)
    std::uint64_t mirrors_dropped = 0;  // queue full: never sent

    // Feedback joined to this series' answers.
    std::uint64_t feedback = 0;
    std::uint64_t correct = 0;          // label equal to the predicted label
    std::uint64_t valued_feedback = 0;  // numeric label and a predicted value
    double abs_error_sum = 0;

    void merge(const prediction_counts& other);
    void clear();
};

}  // namespace stagegate::metrics
