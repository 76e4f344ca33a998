#include "stagegate/control/reload_plan.hpp"

#include <utility>

namespace stagegate::control {

namespace {

bool has_version(const config::model& m, const std::string& version) {
    for (const auto& v : m.versions) {
        if (v.name == version) {
            return true;
        }
    }
    return false;
}

// The live route's traffic, and whether `next` keeps every version it routes or watches.
std::pair<carried_traffic, bool> live_traffic(const routing::model_route& live,
                                              const config::model& next) {
    carried_traffic c{{}, live.stage, live.versions[live.stable].name, {}, 0, {}};
    bool keep = has_version(next, c.stable);
    if (live.mirror_version != routing::no_version) {
        const auto& target = live.versions[live.mirror_version];
        keep = keep && has_version(next, target.name);
        c.watched = target.name;
        c.trip_after = target.trip_after;
        c.mirror = {live.mirror_bp, live.mirror_max_in_flight, live.mirror_queue};
    }
    for (std::size_t v = 0; v < live.versions.size(); ++v) {
        if (live.weights[v] == 0) {
            continue;
        }
        keep = keep && has_version(next, live.versions[v].name);
        c.weights[live.versions[v].name] = live.weights[v];
        if (live.versions[v].trip_after) {
            c.watched = live.versions[v].name;
            c.trip_after = live.versions[v].trip_after;
        }
    }
    return {std::move(c), keep};
}

// Whether the live traffic carries over, and why (or why not).
void plan_traffic(model_plan& plan, const config::model& next, const std::string& path,
                  const rollout::controller::summary* ro, const routing::model_route* live) {
    // A finished rollout keeps its outcome (say, a new stable version) unless the new config
    // sets a split of its own for the model.
    const bool config_split =
        !(next.split.weights.size() == 1 && next.split.weights.count(next.stable));
    if (!ro || !live) {
        plan.why = "traffic follows the new config";
        return;
    }
    if (!ro->live() && config_split) {
        plan.why = "traffic follows the new config's split over the " +
                   std::string(rollout::phase_name(ro->ph)) + " rollout's outcome";
        return;
    }
    auto [traffic, keep] = live_traffic(*live, next);
    if (keep) {
        plan.carried = std::move(traffic);
        plan.why = ro->live() ? "the active rollout of " + ro->candidate + " keeps its traffic"
                              : "the " + std::string(rollout::phase_name(ro->ph)) +
                                    " rollout's outcome keeps its traffic";
    } else if (ro->live()) {
        plan.why = "the active rollout's versions are missing";
        plan.problems.push_back({path + "/versions", "the active rollout of " + next.name +
                                                         " routes to " + ro->stable + " and " +
                                                         ro->candidate +
                                                         ": keep both versions or abort it first"});
    } else {
        plan.why = "traffic follows the new config: the " +
                   std::string(rollout::phase_name(ro->ph)) + " rollout's versions are gone";
    }
}

// What happens to the model's rollout under the new config's spec.
void plan_rollout(model_plan& plan, const config::model& next, const std::string& path,
                  const rollout::controller::summary* ro) {
    if (!next.rollout_spec) {
        plan.why += ro && ro->live() ? "; the active rollout goes on" : "; no rollout to start";
        return;
    }
    const auto& spec = *next.rollout_spec;
    if (ro && ro->candidate == spec.candidate) {
        if (ro->stage_index >= spec.stages.size()) {
            plan.why += "; the new spec has fewer stages than the rollout has reached";
            plan.problems.push_back({path + "/rollout/stages",
                                     "the rollout of " + next.name + " is at stage " +
                                         std::to_string(ro->stage_index + 1) +
                                         ": the new spec must keep at least that many stages"});
            return;
        }
        plan.rollout = rollout_step::update_spec;
        plan.spec = spec;
        plan.why += "; the rollout of " + spec.candidate + " takes the new spec";
    } else if (ro && ro->live()) {
        plan.why += "; the candidate changed under an active rollout";
        plan.problems.push_back({path + "/rollout/candidate",
                                 next.name + " has an active rollout of " + ro->candidate +
                                     ": abort it before starting one of " + spec.candidate});
    } else {
        plan.rollout = rollout_step::start;
        plan.spec = spec;
        plan.why += "; a rollout of " + spec.candidate + " starts";
    }
}

}  // namespace

std::vector<problem> reload_plan::problems() const {
    auto all = config_problems;
    for (const auto& m : models) {
        all.insert(all.end(), m.problems.begin(), m.problems.end());
    }
    return all;
}

reload_plan plan_reload(const config::gateway& running, const routing::route_snapshot& routes,
                        const rollout_states& rollouts, const config::gateway& next) {
    reload_plan plan;
    plan.config_problems = config::reload_problems(running, next);
    for (std::size_t mi = 0; mi < next.models.size(); ++mi) {
        const auto& nm = next.models[mi];
        const std::string path = "/models/" + std::to_string(mi);
        const auto it = rollouts.find(nm.name);
        const auto* ro = it == rollouts.end() ? nullptr : &it->second;
        model_plan m;
        m.model = nm.name;
        plan_traffic(m, nm, path, ro, routes.find_model(nm.name));
        plan_rollout(m, nm, path, ro);
        plan.models.push_back(std::move(m));
    }
    for (const auto& [name, ro] : rollouts) {
        bool present = false;
        for (const auto& nm : next.models) {
            present = present || nm.name == name;
        }
        if (present) {
            continue;
        }
        model_plan m;
        m.model = name;
        m.removed = true;
        if (ro.live()) {
            m.why = "the model has an active rollout";
            m.problems.push_back({"/models", "model " + name +
                                                 " has an active rollout: abort it before "
                                                 "removing the model"});
        } else {
            m.why = "the model is gone; its " + std::string(rollout::phase_name(ro.ph)) +
                    " rollout stays on record";
        }
        plan.models.push_back(std::move(m));
    }
    return plan;
}

}  // namespace stagegate::control
