#include "stagegate/metrics/store.hpp"

#include <algorithm>

namespace stagegate::metrics {

std::int64_t store::second_of(clock::time_point t) const {
    return std::chrono::duration_cast<std::chrono::seconds>(t - start_).count();
}

store::per_series& store::at(std::uint32_t series, clock::time_point now) {
    if (series >= totals_.size()) {
        totals_.resize(series + 1);
    }
    auto& p = totals_[series];
    if (!p) {
        p = std::make_unique<per_series>();
        p->stage_started = now;
    }
    return *p;
}

void store::merge(const shard_delta& delta, clock::time_point now) {
    const std::int64_t second = second_of(now);
    auto& s = ring_[static_cast<std::size_t>(second) % window_slots];
    if (s.second != second) {
        for (auto& c : s.series) {
            if (c) {
                c->clear();
            }
        }
        s.second = second;
    }
    for (const auto& [id, counts] : delta.series) {
        auto& p = at(id, now);
        p.total.merge(counts);
        p.stage.merge(counts);
        if (id >= s.series.size()) {
            s.series.resize(id + 1);
        }
        if (!s.series[id]) {
            s.series[id] = std::make_unique<series_counts>();
        }
        s.series[id]->merge(counts);
    }
    for (std::size_t i = 0; i < unrouted_reasons; ++i) {
        unrouted_[i] += delta.unrouted[i];
    }
}

const series_counts* store::total(std::uint32_t series) const {
    return series < totals_.size() && totals_[series] ? &totals_[series]->total : nullptr;
}

const series_counts* store::stage(std::uint32_t series) const {
    return series < totals_.size() && totals_[series] ? &totals_[series]->stage : nullptr;
}

clock::time_point store::stage_started(std::uint32_t series) const {
    return series < totals_.size() && totals_[series] ? totals_[series]->stage_started : start_;
}

window_view store::window(std::uint32_t series, clock::time_point now) const {
    window_view out;
    const std::int64_t second = second_of(now);
    for (const auto& s : ring_) {
        if (s.second >= 0 && s.second > second - static_cast<std::int64_t>(window_slots) &&
            s.second <= second && series < s.series.size() && s.series[series]) {
            out.counts.merge(*s.series[series]);
        }
    }
    double elapsed = std::chrono::duration<double>(now - start_).count();
    out.seconds = std::clamp(elapsed, 1.0, static_cast<double>(window_slots));
    return out;
}

void store::reset_stage(std::uint32_t series, clock::time_point now) {
    auto& p = at(series, now);
    p.stage.clear();
    p.stage_started = now;
}

}  // namespace stagegate::metrics
