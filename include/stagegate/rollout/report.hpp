// rollout/report: what a rollout went through, stage by stage, told from its event history.
// Owns: the JSON of gate results (as status, events and the report show them, with the
// candidate-vs-stable effect of each comparison), the summary of a stage that the controller
// writes into the event that ends it (so the summary is exactly as durable as the decision, and
// a report survives restarts), and assembling a rollout's report from those events plus the
// stage running now. The statistics are the gates' own (rollout/gates, rollout/evidence):
// nothing here estimates anything.
// Must not touch: files, clocks, the controller's state. Pure functions of JSON and verdicts.
//
// The report (GET /api/v1/rollouts/{model}/report; docs/openapi.json, RolloutReport):
//   {"model", "candidate", "stable", "phase", "started_ms", "ended_ms" (null while live),
//    "complete_history" (false: the event log no longer reaches back to the rollout's start),
//    "stages": [{"index", "name", "weight_bp", "mirror_bp", "started_ms", "ended_ms" (null:
//      the current stage), "seconds", "current", "candidate_requests", "stable_requests",
//      "mirror_requests", "judged_ms" (the gates' last look in the stage; null: never judged
//      there), "gates" [gate_json], "decision" (null while current: {"id", "time_ms", "type",
//      "command", "phase", "next_stage", "text", "actor", "reason"}), "events" [{"id",
//      "time_ms", "type", "text"}: what happened within the stage without ending it]}]}
// A stage's requests are its own (each version's answers while the stage ran, minus what a
// restart in the stage lost); its gates are its last evaluation, which judges all the
// candidate's evidence since the rollout began, segment by segment, as the decision did.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "stagegate/rollout/gates.hpp"

namespace stagegate::rollout {

// Each gate: "gate", "verdict", "candidate", "stable", "limit", "candidate_low",
// "candidate_high" (null: not yet bounded), "candidate_requests", "stable_requests",
// "explanation", and for a comparison with stable (a "*_vs_stable" gate) its effect:
// "difference" (candidate - stable) and "ratio" (candidate / stable; null when stable's is 0);
// both null for a gate against a fixed limit.
nlohmann::json gates_json(const evaluation& e);

// What the controller knows of a stage (more exactly: of a stretch of one stage at one phase;
// a pause or a restart starts another) when it ends, or now.
struct stage_facts {
    std::string name;  // the stage's label ("canary-5", "pre-checks")
    std::size_t index = 0;
    std::uint32_t weight_bp = 0;            // the stage's configured candidate weight
    std::uint32_t candidate_weight_bp = 0;  // what the candidate had (a manual weight, 0 in
                                            // pre-checks)
    std::uint32_t mirror_bp = 0;
    std::string phase;  // progressing or paused
    std::int64_t started_ms = 0;
    std::uint64_t candidate_requests = 0;  // the candidate's client answers in the stretch
    std::uint64_t stable_requests = 0;
    std::uint64_t mirror_requests = 0;  // the candidate's answers to mirrored requests
    const evaluation* gates = nullptr;  // the last evaluation in the stretch, if any
    std::int64_t judged_ms = 0;
};

// The "stage_summary" of an event that ends a stretch (and of the stage running now).
nlohmann::json stage_summary(const stage_facts& facts);

// The report of a model's latest rollout from its events, oldest first: every event of the
// model from the rollout's "started" event on (earlier ones are skipped), or as far back as
// the log keeps ("complete_history" false when no "started" event is among them). `running`
// is the stage_summary of the stage running now (a live rollout), folded in as the current
// stage at `now_ms`.
nlohmann::json assemble_report(const std::string& model, const std::vector<nlohmann::json>& events,
                               const std::optional<nlohmann::json>& running, std::int64_t now_ms);

// The index of the last "started" event in `events`, if any: where the latest rollout begins.
std::optional<std::size_t> latest_start(const std::vector<nlohmann::json>& events);

}  // namespace stagegate::rollout
