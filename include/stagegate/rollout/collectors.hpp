// rollout/collectors: what rollouts expose on /metrics, written from the controller's gauges.
// Owns: the families of rollout phases, stages, time in stage, decisions and durability, and
// of the candidate's prediction drift from stable in the current stage.
// Must not touch: the controller's state (it reads rollout_gauge values only).
#pragma once

#include "stagegate/metrics/exposition.hpp"
#include "stagegate/rollout/controller.hpp"

#include <vector>

namespace stagegate::rollout {

// stagegate_prediction_psi and stagegate_prediction_ks, by model, candidate and stage.
void write_drift_metrics(metrics::text_writer& out, const std::vector<rollout_gauge>& rollouts);
// Phase, stage index, time in stage, the stage's maximum, decisions and whether the last
// decision is recorded, by model.
void write_rollout_metrics(metrics::text_writer& out, const std::vector<rollout_gauge>& rollouts);

}  // namespace stagegate::rollout
