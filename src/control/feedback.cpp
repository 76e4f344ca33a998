#include "stagegate/control/feedback.hpp"

#include <cmath>
#include <optional>

namespace stagegate::control {

namespace {

const config::model* find_model(const std::vector<config::model>& models,
                                const std::string& name) {
    for (const auto& m : models) {
        if (m.name == name) {
            return &m;
        }
    }
    return nullptr;
}

// How a feedback label compares with a predicted label (see predictions::label_hash).
std::optional<std::string> canonical_label(const nlohmann::json& label) {
    if (label.is_string()) {
        auto text = label.dump();
        return text.substr(1, text.size() - 2);
    }
    if (label.is_boolean()) {
        return label.get<bool>() ? "true" : "false";
    }
    if (label.is_number_integer()) {
        return label.dump();
    }
    if (label.is_number_float()) {
        const double v = label.get<double>();
        if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
            return std::to_string(static_cast<long long>(v));
        }
    }
    return std::nullopt;
}

}  // namespace

void feedback_books::remember(std::vector<predictions::served_record> served,
                              const std::vector<metrics::series_labels>& labels,
                              const std::vector<config::model>& models) {
    const auto now = predictions::clock::now();
    for (auto& record : served) {
        if (record.series >= labels.size()) {
            continue;
        }
        const auto& model = labels[record.series].model;
        auto it = books_.find(model);
        if (it == books_.end()) {
            const auto* mc = find_model(models, model);
            if (!mc || !mc->prediction || !mc->prediction->feedback) {
                continue;  // a reload turned feedback off
            }
            it = books_
                     .try_emplace(model, mc->prediction->feedback_capacity,
                                  mc->prediction->feedback_ttl)
                     .first;
        }
        it->second.add(std::move(record), now);
    }
}

feedback_outcome feedback_books::apply(const std::vector<feedback_label>& labels,
                                       const std::vector<metrics::series_labels>& names,
                                       const routing::route_snapshot* snap, metrics::store& store) {
    using book = predictions::feedback_book;
    feedback_outcome out;
    const auto now = predictions::clock::now();
    std::map<std::uint32_t, metrics::series_counts> counted;
    for (const auto& item : labels) {
        book::joined j;
        std::string model;
        for (auto& [name, b] : books_) {
            j = b.join(item.request_id, now);
            if (j.status != book::join_status::unmatched) {
                model = name;
                break;
            }
        }
        if (j.status == book::join_status::unmatched) {
            ++out.unmatched;
            ++totals_[""].unmatched;
            continue;
        }
        auto& totals = totals_[model];
        if (j.status == book::join_status::duplicate) {
            ++out.duplicate;
            ++totals.duplicate;
            continue;
        }
        if (j.status == book::join_status::ambiguous) {
            ++out.ambiguous;
            ++totals.ambiguous;
            continue;
        }
        auto& p = counted[j.series].predictions;
        auto canonical = j.predicted.has_label ? canonical_label(item.label) : std::nullopt;
        if (canonical) {
            ++p.feedback;
            p.correct += predictions::label_hash(*canonical) == j.predicted.label_hash ? 1 : 0;
        } else if (j.predicted.has_value && item.label.is_number()) {
            ++p.valued_feedback;
            p.abs_error_sum += std::fabs(item.label.get<double>() - j.predicted.value);
        } else {
            ++out.unusable;
            ++totals.unusable;
            continue;
        }
        ++out.matched;
        ++totals.matched;
        const auto* m = snap ? snap->find_model(model) : nullptr;
        if (m && j.series < names.size() && names[j.series].stage != m->stage) {
            ++out.late;  // still counted, for the stage that served it
            ++totals.late;
        }
    }
    if (!counted.empty()) {
        metrics::shard_delta delta;
        for (auto& [id, counts] : counted) {
            delta.series.emplace_back(id, std::move(counts));
        }
        store.merge(delta, metrics::clock::now());
    }
    return out;
}

void feedback_books::reconfigure(const std::vector<config::model>& models) {
    for (auto it = books_.begin(); it != books_.end();) {
        const auto* mc = find_model(models, it->first);
        if (!mc || !mc->prediction || !mc->prediction->feedback) {
            it = books_.erase(it);
            continue;
        }
        it->second.set_limits(mc->prediction->feedback_capacity, mc->prediction->feedback_ttl);
        ++it;
    }
}

void feedback_books::write_metrics(metrics::text_writer& out) const {
    auto& outcomes = out.counter("stagegate_feedback_outcomes_total",
                                 "Feedback labels received, by model and outcome (unmatched "
                                 "labels name no model).");
    for (const auto& [model, t] : totals_) {
        for (auto [outcome, value] : {std::pair{"matched", t.matched}, {"late", t.late},
                                      {"unmatched", t.unmatched}, {"duplicate", t.duplicate},
                                      {"ambiguous", t.ambiguous},
                                      {"unusable", t.unusable}}) {
            if (value > 0) {
                outcomes.add({{"model", model}, {"outcome", outcome}},
                             static_cast<double>(value));
            }
        }
    }
}

}  // namespace stagegate::control
