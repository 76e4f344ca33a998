#include "stagegate/rollout/controller.hpp"
#include "stagegate/rollout/report.hpp"
#include "stagegate/core/json.hpp"
#include "stagegate/core/log.hpp"

#include "stagegate/predictions/drift.hpp"

#include <cmath>
#include <cstdio>

namespace stagegate::rollout {

using config::event_type;
using config::to_string;  // of phases and event types (config/vocabulary.hpp)

using json = nlohmann::json;

namespace {

std::string percent_of(std::uint32_t bp) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g %%", bp / 100.0);
    return buf;
}

json prediction_json(const metrics::series_counts& counts) {
    const auto& p = counts.predictions;
    json j = {{"answers", counts.requests()}, {"parsed", p.parsed},  {"missing", p.missing},
              {"invalid", p.invalid},         {"unread", p.unread},  {"labels", p.labels},
              {"values", p.values},           {"feedback", p.feedback}};
    j["value_mean"] = p.values ? json(p.value_sum / static_cast<double>(p.values)) : json(nullptr);
    j["accuracy"] = p.feedback ? json(static_cast<double>(p.correct) / static_cast<double>(p.feedback))
                               : json(nullptr);
    j["mean_absolute_error"] = p.valued_feedback
                                   ? json(p.abs_error_sum / static_cast<double>(p.valued_feedback))
                                   : json(nullptr);
    // Labels that came back per prediction read: how much the accuracy rests on.
    j["label_coverage"] =
        p.parsed ? json(static_cast<double>(p.feedback + p.valued_feedback) /
                        static_cast<double>(p.parsed))
                 : json(nullptr);
    return j;
}

// What the stage has seen of both versions' predictions (and of the mirror, if any).
json quality_json(const metrics::series_counts& candidate, const metrics::series_counts& stable,
                  const metrics::series_counts* mirror) {
    json j = {{"candidate", prediction_json(candidate)}, {"stable", prediction_json(stable)}};
    if (mirror) {
        const auto& p = mirror->predictions;
        json m = prediction_json(*mirror);
        m["dropped"] = p.mirrors_dropped;
        m["compared"] = p.compared_labels;
        m["agreement"] = p.compared_labels ? json(static_cast<double>(p.agreed_labels) /
                                                  static_cast<double>(p.compared_labels))
                                           : json(nullptr);
        m["value_comparisons"] = p.abs_diff.count();
        m["abs_diff_p50"] = p.abs_diff.quantile(0.5);
        m["abs_diff_p99"] = p.abs_diff.quantile(0.99);
        m["rel_diff_p50"] = p.rel_diff.quantile(0.5);
        m["rel_diff_p99"] = p.rel_diff.quantile(0.99);
        j["mirror"] = std::move(m);
    }
    return j;
}

}  // namespace

json controller::to_json(const rollout_state& s) {
    json j = {{"model", s.model},         {"stable", s.stable},   {"candidate", s.candidate},
              {"phase", phase_name(s.ph)}, {"stage_index", s.stage}, {"reason", s.reason},
              {"sequence", s.sequence}};
    j["manual_weight_bp"] = s.manual_weight ? json(*s.manual_weight) : json(nullptr);
    j["pre_checks_done"] = s.pre_checks_done;
    return j;
}

std::optional<controller::rollout_state> controller::from_json(const json& j) {
    rollout_state s;
    if (!j.is_object() || !j.contains("phase") || !j["phase"].is_string()) {
        return std::nullopt;
    }
    s.model = j.value("model", "");
    s.stable = j.value("stable", "");
    s.candidate = j.value("candidate", "");
    s.stage = j.value("stage_index", std::size_t{0});
    s.reason = j.value("reason", "");
    s.sequence = j.value("sequence", std::uint64_t{0});
    s.pre_checks_done = j.value("pre_checks_done", true);
    if (j.contains("manual_weight_bp") && j["manual_weight_bp"].is_number_integer()) {
        s.manual_weight = j["manual_weight_bp"].get<std::uint32_t>();
    }
    const auto p = config::parse_rollout_phase(j["phase"].get<std::string>());
    if (!p) {
        return std::nullopt;
    }
    s.ph = *p;
    return s;
}

bool controller::awaiting_pre_checks(const active& a) const {
    return !a.st.pre_checks_done && (a.st.ph == phase::progressing || a.st.ph == phase::paused);
}

std::string controller::stage_label(const active& a) const {
    if (awaiting_pre_checks(a)) {
        return "pre-checks";
    }
    switch (a.st.ph) {
        case phase::completed:
            return "stable";
        case phase::rolled_back:
            return "rolled-back";
        case phase::aborted:
            return "aborted";
        default:
            return a.spec.stages[a.st.stage].name;
    }
}

std::uint32_t controller::candidate_weight(const active& a) const {
    switch (a.st.ph) {
        case phase::completed:  // the candidate is the stable version now
        case phase::rolled_back:
        case phase::aborted:
            return 0;
        default:
            if (awaiting_pre_checks(a)) {
                return 0;
            }
            return a.st.manual_weight ? *a.st.manual_weight : a.spec.stages[a.st.stage].weight;
    }
}

environment::mirror_settings controller::mirror_of(const active& a) const {
    environment::mirror_settings m;
    m.max_in_flight = a.spec.mirror_max_in_flight;
    m.queue = a.spec.mirror_queue;
    if ((a.st.ph == phase::progressing || a.st.ph == phase::paused) && !awaiting_pre_checks(a)) {
        m.bp = a.spec.stages[a.st.stage].mirror;
    }
    return m;
}

void controller::reset_counts(const active& a, const std::string& label) {
    env_.reset_stage(a.st.model, a.st.candidate, label);
    env_.reset_stage(a.st.model, a.st.stable, label);
    env_.reset_stage(a.st.model, a.st.candidate, config::mirror_stage(label));
}

gate_config controller::gates_for(const active& a) const {
    const auto& g = a.spec.gates;
    gate_config cfg;
    cfg.min_requests = g.min_requests;
    cfg.max_error_rate = g.max_error_rate;
    cfg.max_upstream_failure_rate = g.max_upstream_failure_rate;
    for (const auto& [q, s] : g.max_latency_seconds) {
        cfg.max_latency.push_back({q, s});
    }
    cfg.max_error_rate_delta = g.max_error_rate_delta;
    cfg.max_error_rate_ratio = g.max_error_rate_ratio;
    for (const auto& [q, r] : g.max_latency_ratio) {
        cfg.max_latency_ratio.push_back({q, r});
    }
    for (const auto& [q, s] : g.max_ttft_seconds) {
        cfg.max_ttft.push_back({q, s});
    }
    for (const auto& [q, r] : g.max_ttft_ratio) {
        cfg.max_ttft_ratio.push_back({q, r});
    }
    for (const auto& [q, s] : g.max_time_per_token_seconds) {
        cfg.max_time_per_token.push_back({q, s});
    }
    for (const auto& [q, r] : g.max_time_per_token_ratio) {
        cfg.max_time_per_token_ratio.push_back({q, r});
    }
    for (const auto& [q, tps] : g.min_tokens_per_second) {
        cfg.min_tokens_per_second.push_back({q, tps});
    }
    for (const auto& [q, r] : g.min_tokens_per_second_ratio) {
        cfg.min_tokens_per_second_ratio.push_back({q, r});
    }
    cfg.sequential_errors = g.sequential_errors;
    cfg.sequential_latency = g.sequential_latency;
    cfg.alpha = g.alpha;
    cfg.beta = g.beta;
    cfg.latency_slack_seconds = g.latency_slack_seconds;
    cfg.client_errors = g.client_errors;
    cfg.error_slots = error_slots_for(g.error_statuses);
    cfg.min_samples = g.min_samples;
    cfg.min_agreement = g.min_agreement;
    cfg.max_psi = g.max_psi;
    cfg.max_ks = g.max_ks;
    cfg.max_accuracy_drop = g.max_accuracy_drop;
    cfg.max_mae_increase = g.max_mae_increase;
    if (g.max_candidate_age) {
        cfg.max_candidate_age_seconds =
            std::chrono::duration<double>(*g.max_candidate_age).count();
        cfg.candidate_age_seconds = env_.version_age_seconds(a.st.model, a.st.candidate);
    }
    if (g.judges_predictions()) {
        if (auto p = env_.predictions_of(a.st.model)) {
            cfg.drift_on_values = !p->value.empty();
            cfg.value_bins = p->bins;
        }
    }
    cfg.candidate_serves_clients = candidate_weight(a) > 0;
    return cfg;
}

result<void> controller::init(const config::gateway& cfg, clock::time_point now) {
    std::map<std::string, json> persisted;
    if (store_) {
        auto loaded = store_->load_all();
        if (!loaded) {
            return loaded.error();
        }
        persisted = std::move(*loaded);
    }
    for (const auto& m : cfg.models) {
        if (!m.rollout_spec) {
            continue;
        }
        active a;
        a.spec = *m.rollout_spec;
        a.stage_started = now;
        a.next_eval = now + a.spec.interval;
        auto it = persisted.find(m.name);
        std::optional<rollout_state> resumed;
        if (it != persisted.end()) {
            resumed = from_json(it->second);
        }
        if (resumed) {
            resumed->model = m.name;
        }
        // A rollback applied here and not recorded yet stays: the next tick records it (the
        // stored state, older, must not undo it).
        auto tracked = rollouts_.find(m.name);
        if (tracked != rollouts_.end() && tracked->second.unrecorded) {
            continue;
        }
        // A new leader in a cluster already routes by this state: it followed it since the
        // stage began, so its bake time and stage counts go on where a restart's start again.
        if (resumed && tracked != rollouts_.end() &&
            to_json(tracked->second.st) == to_json(*resumed)) {
            if (store_ && (resumed->ph == phase::progressing || resumed->ph == phase::paused)) {
                const auto label = stage_label(tracked->second);
                (void)store_->append_event(
                    {{"time_ms", env_.wall_ms()},
                     {"model", m.name},
                     {"type", to_string(event_type::resumed)},
                     {"phase", phase_name(resumed->ph)}, {"stage", label},
                     {"text", "resumed rollout of " + m.name + " " + resumed->candidate + " " +
                                  phase_name(resumed->ph) + " at " + label +
                                  " under a new leader (bake time and stage counts go on)"}});
            }
            continue;
        }
        if (resumed && resumed->candidate == a.spec.candidate &&
            resumed->stage < a.spec.stages.size()) {
            a.st = *resumed;
            a.st.model = m.name;
            a.stage_started_ms = env_.wall_ms();
            auto label = stage_label(a);
            next_segment(a, label);
            auto applied = env_.apply(m.name, a.st.stable, a.st.candidate, candidate_weight(a),
                                      label, a.spec.fast_rollback_consecutive_errors,
                                      mirror_of(a));
            if (!applied) {
                return applied.error();
            }
            rollouts_[m.name] = std::move(a);
            auto& r = rollouts_[m.name];
            if (store_) {
                (void)store_->append_event(
                    {{"time_ms", env_.wall_ms()},
                     {"model", m.name},
                     {"type", to_string(event_type::resumed)},
                     {"phase", phase_name(r.st.ph)}, {"stage", label},
                     {"text", "resumed rollout of " + m.name + " " + r.st.candidate + " " +
                                  phase_name(r.st.ph) + " at " + label +
                                  " after a restart (bake time and stage counts start again)"}});
            }
            continue;
        }
        rollout_state fresh;
        fresh.model = m.name;
        fresh.stable = m.stable;
        fresh.candidate = a.spec.candidate;
        fresh.ph = phase::progressing;
        fresh.stage = 0;
        fresh.pre_checks_done = a.spec.pre_checks.empty();
        rollouts_[m.name] = a;
        auto& r = rollouts_[m.name];
        r.st = fresh;
        r.st.ph = phase::aborted;  // routes as "not started" until the first transition lands
        if (resumed) {
            r.st.sequence = resumed->sequence;  // the history's sequence goes on, never back
        }
        auto started = transition(r, fresh, event_type::started,
                                  "started rollout of " + m.name + " " + fresh.candidate +
                                      " at " + a.spec.stages[0].name + " (" +
                                      percent_of(a.spec.stages[0].weight) + ")",
                                  json::object(), now);
        if (!started) {
            rollouts_.erase(m.name);
            return started.error();
        }
    }
    return {};
}

result<bool> controller::adopt(const std::string& model, const json& state,
                               const config::rollout* configured, clock::time_point now) {
    auto st = from_json(state);
    if (!st) {
        return error::make("invalid_state", "the persisted state of " + model +
                                                " is not a rollout state document");
    }
    config::rollout spec;
    if (state.contains("spec") && state["spec"].is_object()) {
        auto parsed = config::parse_rollout(state["spec"].dump(), "/spec");
        if (!parsed) {
            return parsed.error();
        }
        spec = std::move(*parsed);
    } else if (configured && configured->candidate == st->candidate) {
        spec = *configured;
    } else {
        return error::make("invalid_state", "the persisted state of " + model +
                                                " has no rollout spec and the config has none "
                                                "for candidate " + st->candidate);
    }
    if (st->stage >= spec.stages.size()) {
        return error::make("invalid_state", "the persisted state of " + model +
                                                " is at a stage its spec does not have");
    }
    auto it = rollouts_.find(model);
    const bool fresh = it == rollouts_.end();
    st->model = model;
    if (!fresh && it->second.unrecorded) {
        if (st->candidate == it->second.st.candidate && config::is_live(st->ph)) {
            if (!it->second.unrecorded_held) {
                it->second.unrecorded_held = true;
                log::warn("rollout",
                          "keeping " + model + " " + st->candidate +
                              " at 0 %: this replica rolled it back while etcd was out of reach "
                              "and the stored state does not know it yet (handed over to the "
                              "leader to record)",
                          {{"model", model}, {"stored_sequence", std::to_string(st->sequence)}});
            }
            return false;
        }
        it->second.unrecorded.reset();  // recorded by the leader, or the rollout moved on
        it->second.unrecorded_held = false;
    }
    // Already routing by it only when it is the same document: the sequence alone does not
    // tell, since two leaders (one stopped across its lease) can each write the same one.
    if (!fresh && to_json(it->second.st) == to_json(*st) &&
        it->second.spec.source == spec.source) {
        return false;
    }
    auto& a = rollouts_[model];
    const std::string old_label = fresh ? std::string() : stage_label(a);
    const auto old_phase = a.st.ph;
    const auto old_stage = a.st.stage;
    a.spec = std::move(spec);
    a.st = *st;
    a.st.model = model;
    a.next_eval = now + a.spec.interval;
    const bool stage_began =
        fresh || stage_label(a) != old_label || old_phase != a.st.ph || old_stage != a.st.stage;
    if (auto applied = route_by_state(a, stage_began, now); !applied) {
        return applied.error();
    }
    return true;
}

void controller::next_segment(active& a, const std::string& label) {
    if (a.segment_serving && !a.segment_label.empty()) {
        a.candidate_segments.push_back(
            env_.stage_counts(a.st.model, a.st.candidate, a.segment_label));
        a.stable_segments.push_back(env_.stage_counts(a.st.model, a.st.stable, a.segment_label));
    }
    const bool live = a.st.ph == phase::progressing || a.st.ph == phase::paused;
    if (!live) {
        a.candidate_segments.clear();  // the rollout is over: nothing left to judge
        a.stable_segments.clear();
    }
    a.segment_label = label;
    a.segment_serving = live && candidate_weight(a) > 0;
    reset_counts(a, label);
}

result<void> controller::route_by_state(active& a, bool stage_began, clock::time_point now) {
    const std::string label = stage_label(a);
    if (stage_began) {
        a.stage_started = now;
        a.stage_started_ms = env_.wall_ms();
        a.judged_in_stage = false;
        a.max_duration_reported = false;
        a.checks_passed_stage.reset();
        a.approval_pending = false;
        a.checks_in_flight = false;
        next_segment(a, label);
    }
    const std::string stable_now = a.st.ph == phase::completed ? a.st.candidate : a.st.stable;
    return env_.apply(a.st.model, stable_now, a.st.candidate, candidate_weight(a), label,
                      a.spec.fast_rollback_consecutive_errors, mirror_of(a));
}

result<json> controller::start(const std::string& model, config::rollout spec,
                               const std::vector<std::string>& versions,
                               const std::string& stable, const std::string& actor,
                               const std::string& reason, clock::time_point now) {
    auto it = rollouts_.find(model);
    if (it != rollouts_.end() && (it->second.st.ph == phase::progressing ||
                                  it->second.st.ph == phase::paused)) {
        return error::make("rollout_active", "model \"" + model + "\" already has an active "
                                             "rollout of " + it->second.st.candidate);
    }
    auto problems = config::validate_rollout(spec, versions, stable, "");
    if (!problems.empty()) {
        return error{"invalid_rollout", "the rollout is not valid", std::move(problems)};
    }
    if (!store_) {
        return error::make("state_io_failed", "no state directory: rollouts cannot be persisted");
    }
    active a;
    a.spec = std::move(spec);
    a.stage_started = now;
    a.next_eval = now + a.spec.interval;
    a.st.model = model;
    a.st.stable = stable;
    a.st.candidate = a.spec.candidate;
    a.st.ph = phase::aborted;  // routes as "not started" until the first transition lands
    if (it != rollouts_.end()) {
        a.st.sequence = it->second.st.sequence;
    }
    rollout_state first = a.st;
    first.ph = phase::progressing;
    first.stage = 0;
    first.pre_checks_done = a.spec.pre_checks.empty();
    const std::string by = " by " + (actor.empty() ? std::string("an operator") : actor) +
                           (reason.empty() ? std::string() : " (" + reason + ")");
    auto previous = it != rollouts_.end() ? std::optional<active>(it->second) : std::nullopt;
    auto& slot = rollouts_[model];
    slot = std::move(a);
    auto done = transition(slot, first, event_type::started,
                           "started rollout of " + model + " " + first.candidate + " at " +
                               slot.spec.stages[0].name + " (" +
                               percent_of(slot.spec.stages[0].weight) + ")" + by,
                           {{"actor", actor}, {"reason", reason}}, now);
    if (!done) {
        if (previous) {
            slot = std::move(*previous);
        } else {
            rollouts_.erase(model);
        }
        return done.error();
    }
    return result<json>(boost::system::in_place_value, status(model, now));
}

result<void> controller::transition(active& a, rollout_state next, event_type type,
                                    const std::string& text, json details,
                                    clock::time_point now) {
    const bool is_rollback = next.ph == phase::rolled_back;
    // A rollback that is applied but not yet recorded goes into the history first: nothing
    // else may be recorded after it until it is (the history would skip it).
    if (a.unrecorded && !record_pending(a) && !is_rollback) {
        return error::make("state_io_failed", "the rollback of " + a.st.model +
                                                  " is not recorded yet; nothing else can be");
    }
    next.sequence = a.st.sequence + 1;
    next.reason = text;
    const rollout_state before = a.st;
    const std::string old_label = stage_label(a);
    // What the stretch of the stage that this decision may end saw, read before its counts
    // start again: the report (rollout/report) is told from these summaries.
    std::optional<json> ended_stretch;
    if (config::is_live(before.ph)) {
        ended_stretch = stage_summary(facts_of(a));
    }
    a.st = next;
    const std::string label = stage_label(a);
    const bool stage_changed = next.stage != before.stage || next.ph != before.ph;
    const bool stage_began = stage_changed || label != old_label;
    std::optional<error> unrecorded;
    if (store_) {
        auto doc = to_json(next);
        if (!a.spec.source.empty()) {
            doc["spec"] = parse_json(a.spec.source);
        }
        json event = {{"time_ms", env_.wall_ms()},
                      {"model", a.st.model},
                      {"type", to_string(type)},
                      {"phase", phase_name(a.st.ph)},
                      {"stage", label},
                      {"candidate", a.st.candidate},
                      {"stable", a.st.stable},
                      {"candidate_weight_bp", candidate_weight(a)},
                      {"sequence", a.st.sequence},
                      {"text", text}};
        for (auto& [k, v] : details.items()) {
            event[k] = v;
        }
        if (stage_began && ended_stretch) {
            event["stage_summary"] = std::move(*ended_stretch);
        }
        // One write: the event with the state in it. Until it lands nothing happened, except a
        // rollback: less exposure is always the safe side, so it is applied anyway, retried
        // every tick until recorded, and reported as not durable.
        auto recorded = store_->record(a.st.model, doc, event);
        // Applied anyway only when nobody can record it now. A store that answered "another
        // replica leads" (a cluster leader stopped or cut off across its lease) has a leader
        // that can: applied here alone, the rollback would split this replica from the others
        // until the next stored decision, so it is refused and sent to that leader instead.
        if (!recorded && (!is_rollback || recorded.error().code == "not_leader")) {
            a.st = before;
            return recorded.error();
        }
        if (!recorded) {
            log::error("rollout", "rolled back, but the decision could not be recorded",
                       {{"model", a.st.model}, {"error", recorded.error().describe()}});
            a.unrecorded = pending_record{std::move(doc), std::move(event)};
            unrecorded = recorded.error();
        }
    }
    if (auto applied = route_by_state(a, stage_began, now); !applied) {
        log::error("rollout", "cannot route the rollout's traffic",
                   {{"model", a.st.model}, {"error", applied.error().describe()}});
    }
    ++decisions_[a.st.model][type == event_type::command
                                 ? details.value("command", "command")
                                 : std::string(to_string(type))];
    if (unrecorded) {
        return error::make("not_durable",
                           "rolled back " + a.st.model + " " + a.st.candidate +
                               ": the candidate gets no traffic, but the decision could not be "
                               "recorded (" + unrecorded->message +
                               "); it is retried every interval, and a restart before it lands "
                               "would not know of it");
    }
    return {};
}

std::vector<controller::unrecorded_rollback> controller::unrecorded_rollbacks() const {
    std::vector<unrecorded_rollback> out;
    for (const auto& [model, a] : rollouts_) {
        if (a.unrecorded) {
            out.push_back({model, a.st.candidate, a.st.sequence, a.unrecorded->event});
        }
    }
    return out;
}

bool controller::record_pending(active& a) {
    if (!a.unrecorded || !store_) {
        return true;
    }
    auto recorded = store_->record(a.st.model, a.unrecorded->state, a.unrecorded->event);
    if (!recorded) {
        return false;
    }
    log::info("rollout", "recorded the rollback that could not be recorded when applied",
              {{"model", a.st.model}, {"sequence", std::to_string(a.st.sequence)}});
    a.unrecorded.reset();
    return true;
}

json controller::check_payload(const active& a, check_kind kind) const {
    const auto label = stage_label(a);
    auto counts = [&](const std::string& version) {
        auto c = env_.stage_counts(a.st.model, version, label);
        const auto requests = c.requests();
        return json{{"requests", requests},
                    {"errors", c.server_errors()},
                    {"error_rate", requests ? static_cast<double>(c.server_errors()) /
                                                  static_cast<double>(requests)
                                            : 0.0},
                    {"latency_p99_seconds", c.latency.quantile_micros(0.99) / 1e6}};
    };
    json j = {{"kind", kind == check_kind::pre     ? "pre"
                       : kind == check_kind::stage ? "stage"
                                                   : "post"},
              {"model", a.st.model},
              {"candidate", a.st.candidate},
              {"stable", a.st.stable},
              {"phase", phase_name(a.st.ph)},
              {"stage", label},
              {"stage_index", a.st.stage},
              {"candidate_weight_bp", candidate_weight(a)},
              {"metrics", {{"candidate", counts(a.st.candidate)}, {"stable", counts(a.st.stable)}}},
              {"gates", gates_json(a.last)}};
    if (kind == check_kind::stage && a.st.stage + 1 < a.spec.stages.size()) {
        j["next_stage"] = a.spec.stages[a.st.stage + 1].name;
    }
    return j;
}

void controller::start_checks(active& a, check_kind kind,
                              const std::vector<config::http_check>& list) {
    a.checks_in_flight = true;
    env_.run_checks(list, check_payload(a, kind),
                    [this, model = a.st.model, seq = a.st.sequence,
                     kind](std::vector<notify::check_result> results) {
                        on_checks_done(model, seq, kind, std::move(results), clock::now());
                    });
}

void controller::on_checks_done(const std::string& model, std::uint64_t sequence, check_kind kind,
                                std::vector<notify::check_result> results, clock::time_point now) {
    auto it = rollouts_.find(model);
    if (it == rollouts_.end() || it->second.st.sequence != sequence) {
        return;  // the rollout moved on while the checks ran: their answer is stale
    }
    auto& a = it->second;
    a.checks_in_flight = false;
    const char* kind_name = kind == check_kind::pre     ? "pre"
                            : kind == check_kind::stage ? "stage"
                                                        : "post";
    json answers = json::array();
    const notify::check_result* failed = nullptr;
    bool rollback = false;
    for (const auto& r : results) {
        answers.push_back({{"url", r.url},
                           {"passed", r.passed},
                           {"status", r.status},
                           {"detail", r.detail},
                           {"seconds", r.seconds}});
        if (!r.passed) {
            failed = failed ? failed : &r;
            rollback = rollback || r.rollback_on_failure;
        }
    }
    a.last_checks = {{"kind", kind_name}, {"stage", stage_label(a)}, {"time_ms", env_.wall_ms()},
                     {"passed", failed == nullptr}, {"checks", answers}};
    if (kind == check_kind::post) {
        a.post_checks_done = true;
    }
    const std::string where = model + " " + a.st.candidate + " at " + stage_label(a);
    if (!failed) {
        if (kind == check_kind::stage) {
            a.checks_passed_stage = a.st.stage;
        }
        if (kind == check_kind::pre) {
            auto next = a.st;
            next.pre_checks_done = true;
            (void)transition(a, next, event_type::checks_passed,
                             "pre-checks passed for " + model + " " + a.st.candidate + ": " +
                                 std::to_string(results.size()) + " check(s) answered 2xx",
                             {{"checks", answers}}, now);
        } else if (store_) {
            (void)store_->append_event({{"time_ms", env_.wall_ms()}, {"model", model},
                                        {"type", to_string(event_type::checks_passed)},
                                        {"kind", kind_name},
                                        {"stage", stage_label(a)}, {"checks", answers},
                                        {"text", std::string(kind_name) + " checks passed for " +
                                                     where}});
        }
        return;
    }
    const std::string why = failed->url + " answered " +
                            (failed->status ? std::to_string(failed->status)
                                            : std::string("nothing")) +
                            (failed->detail.empty() ? "" : ": " + failed->detail);
    const bool can_roll_back = a.st.ph == phase::progressing || a.st.ph == phase::paused ||
                               (kind == check_kind::post && a.st.ph == phase::completed);
    if (rollback && can_roll_back) {
        auto next = a.st;
        next.ph = phase::rolled_back;
        next.manual_weight.reset();
        (void)transition(a, next, event_type::rolled_back,
                         "rolled back " + where + ": " + kind_name + " check failed: " + why,
                         {{"checks", answers}}, now);
        return;
    }
    if (store_) {
        (void)store_->append_event(
            {{"time_ms", env_.wall_ms()},
             {"model", model},
             {"type", to_string(event_type::check_failed)},
             {"kind", kind_name}, {"stage", stage_label(a)}, {"checks", answers},
             {"text", "holding " + where + ": " + kind_name + " check failed: " + why}});
    }
}

void controller::evaluate_one(active& a, clock::time_point now) {
    if (awaiting_pre_checks(a)) {
        // The candidate has no traffic yet: nothing to judge until the pre-checks say go.
        if (!a.checks_in_flight && a.st.ph == phase::progressing) {
            start_checks(a, check_kind::pre, a.spec.pre_checks);
        }
        return;
    }
    const auto& stage = a.spec.stages[a.st.stage];
    const std::string label = stage.name;
    const auto s = env_.stage_counts(a.st.model, a.st.stable, label);
    std::optional<metrics::series_counts> mirror;
    if (stage.mirror > 0) {
        mirror = env_.stage_counts(a.st.model, a.st.candidate, config::mirror_stage(label));
    }
    // A mirror-only stage judges the candidate on its answers to the mirrored requests (its
    // own evidence: mirrored requests are not served to anyone). Otherwise the gates judge all
    // the candidate's traffic since the rollout began, segment by segment.
    const bool mirror_only = candidate_weight(a) == 0 && mirror;
    const auto c = mirror_only ? *mirror
                               : env_.stage_counts(a.st.model, a.st.candidate, label);
    traffic seen;
    // room for the current segment first: a series_counts is kilobytes of histograms, and
    // growing the copies by one moved them all again
    seen.candidate.reserve(a.candidate_segments.size() + 1);
    seen.stable.reserve(a.stable_segments.size() + 1);
    if (!mirror_only) {
        seen.candidate.assign(a.candidate_segments.begin(), a.candidate_segments.end());
        seen.stable.assign(a.stable_segments.begin(), a.stable_segments.end());
    }
    seen.candidate.push_back(c);
    seen.stable.push_back(s);
    seen.mirror = mirror ? &*mirror : nullptr;
    a.last = evaluate(gates_for(a), seen);
    a.judged_in_stage = true;
    a.judged_ms = env_.wall_ms();
    std::uint64_t rollout_requests = 0;
    for (const auto& k : seen.candidate) {
        rollout_requests += k.requests();
    }
    json details = {{"gates", gates_json(a.last)},
                    {"candidate_requests", c.requests()},
                    {"stable_requests", s.requests()}};
    const std::string where = a.st.model + " " + a.st.candidate + " at " + label + " (" +
                              percent_of(candidate_weight(a)) + ")";
    if (const auto* f = a.last.first_failure()) {
        auto next = a.st;
        next.ph = phase::rolled_back;
        (void)transition(a, next, event_type::rolled_back,
                         "rolled back " + where + ": " + f->explanation, details, now);
        return;
    }
    if (a.st.ph != phase::progressing) {
        return;  // paused: gates are judged and shown, rollback stays armed, nothing widens
    }
    const auto elapsed = now - a.stage_started;
    // "complete" at the maximum duration: no gate failed, so go on as if they had all passed.
    bool past_max_duration = false;
    if (stage.max_duration && elapsed > *stage.max_duration) {
        past_max_duration = stage.complete_on_max_duration;
        if (stage.rollback_on_max_duration) {
            auto next = a.st;
            next.ph = phase::rolled_back;
            (void)transition(a, next, event_type::rolled_back,
                             "rolled back " + where + ": still not promotable after its maximum "
                             "duration of " + std::to_string(stage.max_duration->count() / 1000) +
                                 " s",
                             details, now);
            return;
        }
        if (!a.max_duration_reported && store_ && !past_max_duration) {
            a.max_duration_reported = true;
            (void)store_->append_event(
                {{"time_ms", env_.wall_ms()},
                 {"model", a.st.model},
                 {"type", to_string(event_type::stuck)},
                 {"stage", label}, {"gates", details["gates"]},
                 {"text", "holding " + where + " past its maximum duration: gates not passed"}});
        }
    }
    // Widening asks for no gate failing and no hint of harm (gates.hpp); completing (the
    // last stage, to 100 %) for every gate's bounds within its limit, on all the evidence
    // since the rollout began: a candidate beyond a tolerance completes at most beta of the
    // time, and a good one is not held at 5 % until the 5 % alone could prove it.
    const bool last_stage = a.st.stage + 1 >= a.spec.stages.size();
    const bool proven = a.last.gates.empty() || a.last.all_pass();
    const bool on_track = a.last.gates.empty() || a.last.all_on_track();
    const bool gates_ok = (last_stage || a.spec.gates.prove_every_stage ? proven : on_track) ||
                          past_max_duration;
    const bool baked = elapsed >= stage.min_bake;
    const bool enough = c.requests() >= stage.min_requests;
    if (!(gates_ok && baked && enough)) {
        return;  // hold
    }
    if (!stage.checks.empty() && a.checks_passed_stage != a.st.stage) {
        if (!a.checks_in_flight) {
            start_checks(a, check_kind::stage, stage.checks);
        }
        return;  // hold until the stage's checks say go
    }
    if (stage.approval) {
        if (!a.approval_pending) {
            a.approval_pending = true;
            if (store_) {
                (void)store_->append_event(
                    {{"time_ms", env_.wall_ms()}, {"model", a.st.model},
                     {"type", to_string(event_type::approval_pending)}, {"stage", label},
                     {"candidate", a.st.candidate}, {"gates", details["gates"]},
                     {"text", "waiting for approval to widen " + where + ": gates passed over " +
                                  std::to_string(c.requests()) + " candidate requests; "
                                  "stagegatectl promote " + a.st.model + " approves"}});
            }
        }
        return;  // hold until an operator promotes
    }
    // What held, in words: widening asks only that no gate shows harm, so a promotion whose
    // gates were on track but not all proven says so rather than "all gates passed".
    std::size_t passed = 0;
    for (const auto& g : a.last.gates) {
        passed += g.outcome == verdict::pass ? 1 : 0;
    }
    const std::size_t open = a.last.gates.size() - passed;
    std::string why = "all gates passed";
    if (past_max_duration && !proven) {
        why = "its maximum duration passed with no gate failing";
    } else if (open > 0) {
        why = "no gate shows harm (" + std::to_string(passed) + " of " +
              std::to_string(a.last.gates.size()) + " passed, the others still open)";
    }
    auto next = a.st;
    if (a.st.stage + 1 >= a.spec.stages.size()) {
        next.ph = phase::completed;
        (void)transition(a, next, event_type::completed,
                         "completed rollout of " + a.st.model + ": " + a.st.candidate +
                             " is stable at 100 % after passing " + label + ": " + why +
                             " over " + std::to_string(rollout_requests) +
                             " candidate requests since the rollout began",
                         details, now);
    } else {
        next.stage = a.st.stage + 1;
        const auto& to = a.spec.stages[next.stage];
        (void)transition(a, next, event_type::promoted,
                         "promoted " + where + " to " + to.name + " (" + percent_of(to.weight) +
                             "): " + why + " over " + std::to_string(rollout_requests) +
                             " candidate requests since the rollout began (" +
                             std::to_string(c.requests()) + " vs " +
                             std::to_string(s.requests()) + " stable in this stage)",
                         details, now);
    }
}

void controller::on_tick(clock::time_point now) {
    for (auto& [name, a] : rollouts_) {
        if (a.unrecorded && now >= a.next_eval) {
            a.next_eval = now + a.spec.interval;
            record_pending(a);
        }
        if (a.st.ph == phase::completed && !a.spec.post_checks.empty() && !a.post_checks_done &&
            !a.checks_in_flight) {
            start_checks(a, check_kind::post, a.spec.post_checks);
            continue;
        }
        if ((a.st.ph != phase::progressing && a.st.ph != phase::paused) || now < a.next_eval) {
            continue;
        }
        a.next_eval = now + a.spec.interval;
        if (a.st.manual_weight) {
            continue;  // manual weight: automation is off until resume
        }
        evaluate_one(a, now);
    }
}

bool controller::on_version_broken(const std::string& model, const std::string& version,
                                   std::uint32_t count, clock::time_point now) {
    auto it = rollouts_.find(model);
    if (it == rollouts_.end()) {
        return false;
    }
    auto& a = it->second;
    if ((a.st.ph != phase::progressing && a.st.ph != phase::paused) || version != a.st.candidate ||
        a.spec.fast_rollback_consecutive_errors == 0 ||
        count < a.spec.fast_rollback_consecutive_errors) {
        return false;
    }
    auto next = a.st;
    next.ph = phase::rolled_back;
    (void)transition(a, next, event_type::rolled_back,
                     "rolled back " + model + " " + version + " at " + stage_label(a) + ": its last " +
                         std::to_string(count) + " requests all failed",
                     json::object(), now);
    return true;
}

result<json> controller::command(const std::string& model, const std::string& name,
                                 const json& args, const std::string& actor,
                                 const std::string& reason, clock::time_point now) {
    auto it = rollouts_.find(model);
    if (it == rollouts_.end()) {
        return error::make("unknown_rollout", "model \"" + model + "\" has no rollout");
    }
    auto& a = it->second;
    const bool live = a.st.ph == phase::progressing || a.st.ph == phase::paused;
    auto refuse = [&](const std::string& why) -> result<json> {
        return error::make("invalid_state", "cannot " + name + " the rollout of " + model +
                                                ": it is " + phase_name(a.st.ph) + why);
    };
    auto next = a.st;
    std::string text;
    const std::string by = " by " + (actor.empty() ? std::string("an operator") : actor) +
                           (reason.empty() ? std::string() : " (" + reason + ")");
    if (name == "pause") {
        if (a.st.ph != phase::progressing) {
            return refuse("");
        }
        next.ph = phase::paused;
        text = "paused " + model + " at " + stage_label(a) + by;
    } else if (name == "resume") {
        if (a.st.ph != phase::paused) {
            return refuse("");
        }
        next.ph = phase::progressing;
        next.manual_weight.reset();
        text = "resumed " + model + " at " + stage_label(a) + by;
    } else if (name == "promote") {
        if (!live) {
            return refuse("");
        }
        const bool full = args.is_object() && args.value("full", false);
        next.manual_weight.reset();
        next.pre_checks_done = true;  // an operator's promote goes past pending pre-checks too
        if (full || a.st.stage + 1 >= a.spec.stages.size()) {
            next.ph = phase::completed;
            text = "promoted " + model + " " + a.st.candidate + " to 100 % (completed)" + by;
        } else {
            next.stage = a.st.stage + 1;
            next.ph = phase::progressing;
            text = "promoted " + model + " to " + a.spec.stages[next.stage].name + by;
        }
    } else if (name == "rollback") {
        if (!live) {
            return refuse("");
        }
        next.ph = phase::rolled_back;
        next.manual_weight.reset();
        text = "rolled back " + model + " " + a.st.candidate + " at " + stage_label(a) + by;
    } else if (name == "abort") {
        if (!live) {
            return refuse("");
        }
        next.ph = phase::aborted;
        next.manual_weight.reset();
        text = "aborted rollout of " + model + " at " + stage_label(a) + by;
    } else if (name == "set_weight") {
        if (!live) {
            return refuse("");
        }
        if (!args.is_object() || !args.contains("weight_bp") ||
            !args["weight_bp"].is_number_integer() || args["weight_bp"].get<std::int64_t>() < 0 ||
            args["weight_bp"].get<std::int64_t>() > config::total_weight) {
            return error::make("invalid_argument", "weight_bp must be an integer in 0..10000");
        }
        next.manual_weight = args["weight_bp"].get<std::uint32_t>();
        next.ph = phase::paused;
        text = "set " + model + " " + a.st.candidate + " to " + percent_of(*next.manual_weight) +
               " by hand, automation paused" + by;
    } else if (name == "restart") {
        if (a.st.ph != phase::rolled_back && a.st.ph != phase::aborted) {
            return refuse(" (only a rolled-back or aborted rollout restarts)");
        }
        next.ph = phase::progressing;
        next.stage = 0;
        next.manual_weight.reset();
        next.pre_checks_done = a.spec.pre_checks.empty();
        text = "restarted rollout of " + model + " " + a.st.candidate + " at " +
               a.spec.stages[0].name + by;
    } else {
        return error::make("invalid_argument", "unknown command \"" + name + "\"");
    }
    json details = {{"command", name}, {"actor", actor}, {"reason", reason}};
    if (name == "promote" && a.approval_pending) {
        details["approved"] = true;
        text += " (approval)";
    }
    auto done = transition(a, next, event_type::command, text, std::move(details), now);
    if (!done) {
        return done.error();
    }
    return result<json>(boost::system::in_place_value, status(model, now));
}

result<bool> controller::update_spec(const std::string& model, config::rollout spec,
                                     clock::time_point now) {
    auto it = rollouts_.find(model);
    if (it == rollouts_.end()) {
        return error::make("unknown_rollout", "model \"" + model + "\" has no rollout");
    }
    auto& a = it->second;
    if (spec.candidate != a.st.candidate) {
        return error::make("rollout_active", "model \"" + model + "\" has a rollout of " +
                                                 a.st.candidate + ", not " + spec.candidate);
    }
    if (a.st.stage >= spec.stages.size()) {
        return error::make("invalid_rollout", "the rollout of " + model + " is at stage " +
                                                  std::to_string(a.st.stage + 1) +
                                                  " but the new spec has only " +
                                                  std::to_string(spec.stages.size()));
    }
    if (spec == a.spec) {
        return false;  // unchanged: no event, no reset
    }
    const bool relabel = spec.stages[a.st.stage].name != a.spec.stages[a.st.stage].name;
    const auto old_weight = candidate_weight(a);
    a.spec = std::move(spec);
    // A new split is a new segment of evidence (the old one's counts are kept as they were).
    const bool new_segment = relabel || candidate_weight(a) != old_weight;
    a.next_eval = std::min(a.next_eval, now + a.spec.interval);
    if (relabel) {
        a.stage_started = now;
    }
    const std::string label = stage_label(a);
    if (new_segment) {
        next_segment(a, label);
    }
    const std::string stable_now = a.st.ph == phase::completed ? a.st.candidate : a.st.stable;
    auto applied = env_.apply(model, stable_now, a.st.candidate, candidate_weight(a), label,
                              a.spec.fast_rollback_consecutive_errors, mirror_of(a));
    if (store_) {
        (void)store_->append_event({{"time_ms", env_.wall_ms()},
                                    {"model", model},
                                    {"type", to_string(event_type::spec_updated)},
                                    {"phase", phase_name(a.st.ph)},
                                    {"stage", label},
                                    {"candidate", a.st.candidate},
                                    {"candidate_weight_bp", candidate_weight(a)},
                                    {"actor", "config-reload"},
                                    {"text", "config reload updated the rollout of " + model +
                                                 " (now at " + label + ", " +
                                                 percent_of(candidate_weight(a)) + ")"}});
    }
    if (!applied) {
        return applied.error();
    }
    return true;
}

std::optional<controller::summary> controller::find(const std::string& model) const {
    auto it = rollouts_.find(model);
    if (it == rollouts_.end()) {
        return std::nullopt;
    }
    const auto& st = it->second.st;
    return summary{st.ph,        st.candidate, st.stable,
                   st.stage,     stage_label(it->second),
                   st.sequence,  !it->second.unrecorded.has_value()};
}

std::vector<std::string> controller::models() const {
    std::vector<std::string> out;
    for (const auto& [name, a] : rollouts_) {
        out.push_back(name);
    }
    return out;
}

json controller::status(const std::string& model, clock::time_point now) const {
    auto it = rollouts_.find(model);
    if (it == rollouts_.end()) {
        return nullptr;
    }
    const auto& a = it->second;
    json stages = json::array();
    for (const auto& st : a.spec.stages) {
        stages.push_back({{"name", st.name}, {"weight_bp", st.weight}, {"mirror_bp", st.mirror}});
    }
    json j = {{"model", model},
              {"candidate", a.st.candidate},
              {"stable", a.st.ph == phase::completed ? a.st.candidate : a.st.stable},
              {"phase", phase_name(a.st.ph)},
              {"stage", stage_label(a)},
              {"stage_index", a.st.stage},
              {"sequence", a.st.sequence},  // of the persisted state this status shows
              // false: a rollback is applied but not recorded yet (retried every interval)
              {"durable", !a.unrecorded.has_value()},
              {"candidate_weight_bp", candidate_weight(a)},
              {"manual_weight", a.st.manual_weight.has_value()},
              {"stages", stages},
              {"last_reason", a.st.reason},
              {"gates", gates_json(a.last)},
              {"pending_approval", a.approval_pending},
              {"awaiting_pre_checks", awaiting_pre_checks(a)},
              {"checks_in_flight", a.checks_in_flight},
              {"last_checks", a.last_checks}};
    if (a.st.ph == phase::progressing || a.st.ph == phase::paused) {
        const auto& stage = a.spec.stages[a.st.stage];
        auto in_stage = std::chrono::duration<double>(now - a.stage_started).count();
        j["seconds_in_stage"] = in_stage;
        j["bake_seconds_left"] = std::max(
            0.0, std::chrono::duration<double>(stage.min_bake).count() - in_stage);
        j["min_requests"] = stage.min_requests;
        // What the next decision waits for: time, candidate sample, or the gates' sample.
        const auto label = stage_label(a);
        const auto live = env_.stage_counts(model, a.st.candidate, label);
        const auto stable = env_.stage_counts(model, a.st.stable, label);
        std::optional<metrics::series_counts> mirror;
        if (stage.mirror > 0) {
            mirror = env_.stage_counts(model, a.st.candidate, config::mirror_stage(label));
        }
        const auto c = (candidate_weight(a) == 0 && mirror ? *mirror : live).requests();
        const auto s = stable.requests();
        j["mirror_bp"] = stage.mirror;
        if (mirror || env_.predictions_of(model)) {
            j["predictions"] = quality_json(live, stable, mirror ? &*mirror : nullptr);
        }
        j["candidate_requests"] = c;
        j["stable_requests"] = s;
        const auto needed = std::max(stage.min_requests, a.spec.gates.min_requests);
        j["requests_needed"] = needed > c ? needed - c : 0;
        j["next_evaluation_seconds"] =
            std::max(0.0, std::chrono::duration<double>(a.next_eval - now).count());
        j["automation"] = a.st.manual_weight ? "manual weight: paused until resume"
                          : a.st.ph == phase::paused ? "paused: gates judged, rollback armed"
                                                     : "on";
        if (stage.max_duration) {
            j["max_duration_seconds"] =
                std::chrono::duration<double>(*stage.max_duration).count();
        }
    }
    return j;
}

stage_facts controller::facts_of(const active& a) const {
    stage_facts f;
    f.name = stage_label(a);
    f.index = a.st.stage;
    f.weight_bp = awaiting_pre_checks(a) ? 0 : a.spec.stages[a.st.stage].weight;
    f.candidate_weight_bp = candidate_weight(a);
    f.mirror_bp = mirror_of(a).bp;
    f.phase = phase_name(a.st.ph);
    f.started_ms = a.stage_started_ms;
    f.candidate_requests = env_.stage_counts(a.st.model, a.st.candidate, f.name).requests();
    f.stable_requests = env_.stage_counts(a.st.model, a.st.stable, f.name).requests();
    if (f.mirror_bp > 0) {
        f.mirror_requests =
            env_.stage_counts(a.st.model, a.st.candidate, config::mirror_stage(f.name)).requests();
    }
    if (a.judged_in_stage) {
        f.gates = &a.last;
        f.judged_ms = a.judged_ms;
    }
    return f;
}

std::optional<json> controller::running_stage(const std::string& model) const {
    auto it = rollouts_.find(model);
    if (it == rollouts_.end() || !config::is_live(it->second.st.ph)) {
        return std::nullopt;
    }
    return stage_summary(facts_of(it->second));
}

std::vector<rollout_gauge> controller::gauges(clock::time_point now) const {
    std::vector<rollout_gauge> out;
    for (const auto& [model, a] : rollouts_) {
        rollout_gauge g;
        g.model = model;
        g.candidate = a.st.candidate;
        g.phase = a.st.ph;
        g.stage = stage_label(a);
        g.stage_index = static_cast<double>(a.st.stage);
        g.seconds_in_stage = std::chrono::duration<double>(now - a.stage_started).count();
        g.durable = !a.unrecorded.has_value();
        if ((a.st.ph == phase::progressing || a.st.ph == phase::paused) &&
            a.spec.stages[a.st.stage].max_duration) {
            g.max_duration_seconds =
                std::chrono::duration<double>(*a.spec.stages[a.st.stage].max_duration).count();
        }
        if (auto it = decisions_.find(model); it != decisions_.end()) {
            g.decisions = it->second;
        }
        auto pred = env_.predictions_of(model);
        if (pred && (a.st.ph == phase::progressing || a.st.ph == phase::paused) &&
            !awaiting_pre_checks(a)) {
            const auto label = stage_label(a);
            const auto stable = env_.stage_counts(model, a.st.stable, label).predictions;
            const auto c = env_.stage_counts(model, a.st.candidate,
                                             candidate_weight(a) == 0
                                                 ? config::mirror_stage(label)
                                                 : label)
                               .predictions;
            const bool values = !pred->value.empty();
            const std::size_t bins = values ? pred->bins : metrics::prediction_bins;
            const auto& cb = values ? c.value_bins : c.label_bins;
            const auto& sb = values ? stable.value_bins : stable.label_bins;
            if ((values ? c.values : c.labels) > 0 && (values ? stable.values : stable.labels) > 0) {
                g.psi = predictions::psi({cb.data(), bins}, {sb.data(), bins});
                if (values) {
                    g.ks = predictions::ks({cb.data(), bins}, {sb.data(), bins});
                }
            }
        }
        out.push_back(std::move(g));
    }
    return out;
}

json controller::status_all(clock::time_point now) const {
    json out = json::array();
    for (const auto& [name, a] : rollouts_) {
        out.push_back(status(name, now));
    }
    return out;
}

std::chrono::milliseconds controller::tick_interval() const {
    std::chrono::milliseconds best{5000};
    for (const auto& [name, a] : rollouts_) {
        best = std::min(best, a.spec.interval);
    }
    return best;
}

}  // namespace stagegate::rollout
