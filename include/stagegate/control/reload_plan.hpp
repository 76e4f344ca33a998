// control/reload_plan: what a config reload does to each model's traffic and rollout, decided
// from the running config, the live routes and the rollouts' states alone (a pure function).
// Owns: the carry-over rules (an active rollout keeps its traffic; a finished one keeps its
// outcome unless the new config sets a split of its own), which rollouts start or take a new
// spec, and the problems that refuse a reload for a rollout's sake.
// Must not touch: the data plane, the controller or the state store: control::plane applies
// the plan (builds and publishes the routes, updates and starts rollouts).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/rollout/controller.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stagegate::control {

// Every model's rollout (any phase), by model.
using rollout_states = std::map<std::string, rollout::controller::summary>;

// The live route's traffic, laid over the new config's split for a model.
struct carried_traffic {
    std::map<std::string, std::uint32_t> weights;  // the versions with traffic, basis points
    std::string stage;
    std::string stable;
    std::string watched;  // the version tripped after `trip_after` failures in a row
    std::uint32_t trip_after = 0;
    routing::mirror_plan mirror;
};

enum class rollout_step {
    none,         // nothing changes: no rollout in the new config, or it is refused
    start,        // a new rollout (none yet, or a finished one of another candidate)
    update_spec,  // the same candidate: the rollout keeps its phase and stage, with the new spec
};

struct model_plan {
    std::string model;
    // The new config no longer names the model (listed only when it has a rollout).
    bool removed = false;
    // Set: the live traffic carries over; unset: traffic follows the new config.
    std::optional<carried_traffic> carried;
    rollout_step rollout = rollout_step::none;
    std::optional<config::rollout> spec;  // for start and update_spec
    std::string why;
    std::vector<problem> problems;  // any of them refuses the whole reload
};

struct reload_plan {
    // What only a restart can change (config::reload_problems).
    std::vector<problem> config_problems;
    // The new config's models in its order, then the removed models that have a rollout.
    std::vector<model_plan> models;

    // Every problem, the config's first; empty when the plan may be applied.
    std::vector<problem> problems() const;
};

reload_plan plan_reload(const config::gateway& running, const routing::route_snapshot& routes,
                        const rollout_states& rollouts, const config::gateway& next);

}  // namespace stagegate::control
