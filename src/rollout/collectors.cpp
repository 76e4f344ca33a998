#include "stagegate/rollout/collectors.hpp"

namespace stagegate::rollout {

void write_drift_metrics(metrics::text_writer& out, const std::vector<rollout_gauge>& rollouts) {
    auto& psi = out.gauge("stagegate_prediction_psi",
                          "Population stability index of the candidate's predictions against "
                          "stable's in the current stage.");
    auto& ks = out.gauge("stagegate_prediction_ks",
                         "Kolmogorov-Smirnov distance between the candidate's and stable's "
                         "predicted values in the current stage.");
    for (const auto& r : rollouts) {
        const metrics::label_set labels = {
            {"model", r.model}, {"candidate", r.candidate}, {"stage", r.stage}};
        if (r.psi) {
            psi.add(labels, *r.psi);
        }
        if (r.ks) {
            ks.add(labels, *r.ks);
        }
    }
}

void write_rollout_metrics(metrics::text_writer& out, const std::vector<rollout_gauge>& rollouts) {
    auto& phases = out.gauge("stagegate_rollout_phase",
                            "1 for the rollout's current phase, 0 for the others.");
    auto& stage_index = out.gauge("stagegate_rollout_stage_index",
                                  "Index of the rollout's current stage (0 = first).");
    auto& stage_seconds = out.gauge("stagegate_rollout_stage_seconds",
                                    "Seconds the rollout has been in its current stage.");
    auto& stage_max = out.gauge("stagegate_rollout_stage_max_duration_seconds",
                                "The current stage's maximum duration, when it has one.");
    auto& decisions = out.counter("stagegate_rollout_decisions_total",
                                  "Rollout decisions and operator commands since the gateway "
                                  "started.");
    auto& recorded = out.gauge("stagegate_rollout_state_recorded",
                               "0 while a rollback is applied but could not be recorded (the "
                               "state store is unwritable or unreachable; retried every "
                               "interval), else 1.");
    for (const auto& r : rollouts) {
        recorded.add({{"model", r.model}}, r.durable ? 1 : 0);
        for (auto p : config::rollout_phases) {
            phases.add({{"model", r.model}, {"candidate", r.candidate},
                       {"phase", config::to_string(p)}},
                      r.phase == p ? 1 : 0);
        }
        stage_index.add({{"model", r.model}}, r.stage_index);
        stage_seconds.add({{"model", r.model}, {"stage", r.stage}}, r.seconds_in_stage);
        if (r.max_duration_seconds > 0) {
            stage_max.add({{"model", r.model}, {"stage", r.stage}}, r.max_duration_seconds);
        }
        for (const auto& [decision, count] : r.decisions) {
            decisions.add({{"model", r.model}, {"decision", decision}},
                          static_cast<double>(count));
        }
    }
}

}  // namespace stagegate::rollout
