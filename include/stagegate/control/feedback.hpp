// control/feedback: delayed labels joined to the answers they judge, for every model that
// takes feedback. Owns one predictions::feedback_book per model, the remembering of served
// answers as workers hand them over, the join of labels into accuracy counts merged into the
// metrics store, and the outcome totals /metrics shows (its collector). Control thread only.
// Must not touch: sockets, routing decisions, rollouts.
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/metrics/exposition.hpp"
#include "stagegate/metrics/series.hpp"
#include "stagegate/metrics/store.hpp"
#include "stagegate/predictions/feedback.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace stagegate::control {

struct feedback_label {
    std::string request_id;
    nlohmann::json label;  // a class (string, integer, bool) or a number (regression)
};

struct feedback_outcome {
    std::uint64_t matched = 0;    // joined to an answer and counted
    std::uint64_t late = 0;       // of those, for a stage the model has since left
    std::uint64_t unmatched = 0;  // no remembered answer (unknown, expired or evicted)
    std::uint64_t duplicate = 0;  // the answer was labelled already: ignored
    std::uint64_t ambiguous = 0;  // two answers came with this request id: ignored
    std::uint64_t unusable = 0;   // matched, but the label cannot judge the prediction
};

class feedback_books {
public:
    // Remembers answers of models whose config takes feedback (`models`: the current config).
    void remember(std::vector<predictions::served_record> served,
                  const std::vector<metrics::series_labels>& series,
                  const std::vector<config::model>& models);
    // Joins labels to remembered answers and merges what they show into `store`, for the
    // series that served each answer (a stage the model has left counts as late).
    feedback_outcome apply(const std::vector<feedback_label>& labels,
                           const std::vector<metrics::series_labels>& series,
                           const routing::route_snapshot* routes, metrics::store& store);
    // A reload: books follow the new limits; a model that stopped taking feedback forgets.
    void reconfigure(const std::vector<config::model>& models);
    // Totals since start, by model ("" for unmatched labels, which name no model).
    const std::map<std::string, feedback_outcome>& totals() const { return totals_; }
    // stagegate_feedback_outcomes_total: the totals by model and outcome (non-zero ones).
    void write_metrics(metrics::text_writer& out) const;

private:
    std::map<std::string, predictions::feedback_book> books_;  // by model
    std::map<std::string, feedback_outcome> totals_;
};

}  // namespace stagegate::control
