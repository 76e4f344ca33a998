// metrics/store: the merged view, kept on the control thread.
// Owns: all-time totals per series (Prometheus counters), totals since the series' stage
// began (what rollout gates judge; reset when a stage is entered again), and a sliding window
// of the last 60 s in 1 s slots (rates and dashboards). Time is always passed in, so tests
// drive it with their own clock. Not thread-safe: one owner (the control thread).
#pragma once

#include "stagegate/metrics/shard.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <vector>

namespace stagegate::metrics {

using clock = std::chrono::steady_clock;

struct window_view {
    series_counts counts;
    double seconds = 0;  // the time the window covers so far (at most 60 s)
};

class store {
public:
    static constexpr std::size_t window_slots = 60;  // of one second each

    explicit store(clock::time_point start = clock::now()) : start_(start) {}

    void merge(const shard_delta& delta, clock::time_point now);

    std::size_t size() const { return totals_.size(); }
    // All-time totals; null for a series never seen.
    const series_counts* total(std::uint32_t series) const;
    // Since the series' stage began (or the last reset_stage).
    const series_counts* stage(std::uint32_t series) const;
    clock::time_point stage_started(std::uint32_t series) const;
    // The last 60 s (fewer at start-up), up to and including `now`'s slot.
    window_view window(std::uint32_t series, clock::time_point now) const;
    // Starts "since stage began" over, e.g. when a rollout re-enters a stage.
    void reset_stage(std::uint32_t series, clock::time_point now);
    const std::array<std::uint64_t, unrouted_reasons>& unrouted() const { return unrouted_; }

private:
    struct per_series {
        series_counts total;
        series_counts stage;
        clock::time_point stage_started;
    };
    struct slot {
        std::int64_t second = -1;  // which second this slot holds; -1: empty
        std::vector<std::unique_ptr<series_counts>> series;
    };
    per_series& at(std::uint32_t series, clock::time_point now);
    std::int64_t second_of(clock::time_point t) const;

    clock::time_point start_;
    std::vector<std::unique_ptr<per_series>> totals_;
    std::array<slot, window_slots> ring_;
    std::array<std::uint64_t, unrouted_reasons> unrouted_{};
};

}  // namespace stagegate::metrics
