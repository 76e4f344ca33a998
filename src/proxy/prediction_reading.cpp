// Reading predictions out of captured answers. See prediction_reading.hpp.
#include "prediction_reading.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace stagegate::proxy {

namespace {

// Answers remembered for feedback between two collections, per worker: at 1 collection a
// second this bounds memory at any request rate; what does not fit cannot be labelled.
constexpr std::size_t max_served_per_collection = 100000;

}  // namespace

std::optional<predictions::prediction> read_prediction(worker& w, const routing::model_route& model,
                                                       std::uint32_t series,
                                                       const body_capture& capture) {
    auto& counts = w.shard().predictions(series);
    if (!capture.wanted || capture.overflow || !capture.complete) {
        ++counts.unread;
        return std::nullopt;
    }
    predictions::prediction p;
    switch (predictions::extract(capture.bytes, *model.prediction, p)) {
        case predictions::outcome::invalid:
            ++counts.invalid;
            return std::nullopt;
        case predictions::outcome::missing:
            ++counts.missing;
            return std::nullopt;
        case predictions::outcome::parsed:
            break;
    }
    ++counts.parsed;
    if (p.has_label) {
        ++counts.labels;
        ++counts.label_bins[p.label_bin];
    }
    if (p.has_value) {
        ++counts.values;
        ++counts.value_bins[p.value_bin];
        counts.value_sum += p.value;
    }
    return p;
}

void compare(worker& w, std::uint32_t series, const predictions::prediction& s,
             const predictions::prediction& c) {
    auto& counts = w.shard().predictions(series);
    if (s.has_label && c.has_label) {
        ++counts.compared_labels;
        counts.agreed_labels += s.label_hash == c.label_hash ? 1 : 0;
    }
    if (s.has_value && c.has_value) {
        const double diff = c.value - s.value;
        counts.abs_diff.record(diff);
        counts.rel_diff.record(diff / std::max(std::fabs(s.value), 1e-12));
    }
}

void remember_answer(worker& w, std::string_view request_id, std::uint32_t series,
                     const predictions::prediction& p) {
    if (w.served().size() < max_served_per_collection) {
        w.served().push_back({std::string(request_id), series, p});
    }
}

}  // namespace stagegate::proxy
