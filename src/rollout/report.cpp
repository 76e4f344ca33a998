#include "stagegate/rollout/report.hpp"

#include "stagegate/config/vocabulary.hpp"

#include <cmath>
#include <string_view>

namespace stagegate::rollout {

using json = nlohmann::json;

namespace {

std::string text_of(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t ms_of(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<std::int64_t>() : 0;
}

std::uint64_t count_of(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() && it->get<std::int64_t>() >= 0
               ? it->get<std::uint64_t>()
               : 0;
}

// A phase word in which the rollout may still decide (an unknown word is not).
bool live_phase(const std::string& phase_word) {
    const auto p = config::parse_rollout_phase(phase_word);
    return p && config::is_live(*p);
}

// A field copied as it is, or null when the event lacks it.
json field_or_null(const json& e, const char* key) {
    auto it = e.find(key);
    return it != e.end() ? *it : json(nullptr);
}

json new_stage(const std::string& name, std::int64_t started_ms) {
    return {{"index", 0},
            {"name", name},
            {"weight_bp", 0},
            {"mirror_bp", 0},
            {"started_ms", started_ms},
            {"ended_ms", nullptr},
            {"seconds", 0.0},
            {"current", false},
            {"candidate_requests", 0},
            {"stable_requests", 0},
            {"mirror_requests", 0},
            {"judged_ms", nullptr},
            {"gates", json::array()},
            {"decision", nullptr},
            {"events", json::array()}};
}

// Adds one stretch's summary to its stage: requests add up, the latest gates are kept.
void fold(json& stage, const json& summary) {
    stage["name"] = text_of(summary, "stage");
    stage["index"] = count_of(summary, "stage_index");
    stage["weight_bp"] = count_of(summary, "weight_bp");
    stage["mirror_bp"] = count_of(summary, "mirror_bp");
    for (const char* key : {"candidate_requests", "stable_requests", "mirror_requests"}) {
        stage[key] = stage[key].get<std::uint64_t>() + count_of(summary, key);
    }
    auto gates = summary.find("gates");
    if (summary.contains("judged_ms") && summary["judged_ms"].is_number() &&
        gates != summary.end() && gates->is_array()) {
        stage["judged_ms"] = summary["judged_ms"];
        stage["gates"] = *gates;
    }
}

void set_seconds(json& stage, std::int64_t until_ms) {
    stage["seconds"] =
        static_cast<double>(until_ms - stage["started_ms"].get<std::int64_t>()) / 1000.0;
}

json note(const json& e) {
    return {{"id", field_or_null(e, "id")},
            {"time_ms", field_or_null(e, "time_ms")},
            {"type", field_or_null(e, "type")},
            {"text", field_or_null(e, "text")}};
}

json decision(const json& e) {
    const std::string phase_word = text_of(e, "phase");
    return {{"id", field_or_null(e, "id")},
            {"time_ms", field_or_null(e, "time_ms")},
            {"type", field_or_null(e, "type")},
            {"command", field_or_null(e, "command")},
            {"phase", field_or_null(e, "phase")},
            {"next_stage", live_phase(phase_word) ? field_or_null(e, "stage") : json(nullptr)},
            {"text", field_or_null(e, "text")},
            {"actor", field_or_null(e, "actor")},
            {"reason", field_or_null(e, "reason")}};
}

}  // namespace

json gates_json(const evaluation& e) {
    json out = json::array();
    for (const auto& g : e.gates) {
        json gate = {{"gate", g.gate},
                     {"verdict", verdict_name(g.outcome)},
                     {"candidate", g.candidate},
                     {"stable", g.stable},
                     {"limit", g.limit},
                     {"candidate_low", g.candidate_low},
                     {"candidate_high",
                      std::isfinite(g.candidate_high) ? json(g.candidate_high) : json(nullptr)},
                     {"candidate_requests", g.candidate_requests},
                     {"stable_requests", g.stable_requests},
                     {"explanation", g.explanation},
                     {"difference", nullptr},
                     {"ratio", nullptr}};
        // The effect, as the gate's own estimates give it: only a comparison with stable has one.
        if (std::string_view(g.gate).ends_with("_vs_stable")) {
            gate["difference"] = g.candidate - g.stable;
            gate["ratio"] = g.stable != 0 ? json(g.candidate / g.stable) : json(nullptr);
        }
        out.push_back(std::move(gate));
    }
    return out;
}

json stage_summary(const stage_facts& f) {
    return {{"stage", f.name},
            {"stage_index", f.index},
            {"weight_bp", f.weight_bp},
            {"candidate_weight_bp", f.candidate_weight_bp},
            {"mirror_bp", f.mirror_bp},
            {"phase", f.phase},
            {"started_ms", f.started_ms},
            {"candidate_requests", f.candidate_requests},
            {"stable_requests", f.stable_requests},
            {"mirror_requests", f.mirror_requests},
            {"judged_ms", f.gates ? json(f.judged_ms) : json(nullptr)},
            {"gates", f.gates ? gates_json(*f.gates) : json::array()}};
}

std::optional<std::size_t> latest_start(const std::vector<json>& events) {
    for (std::size_t i = events.size(); i-- > 0;) {
        if (events[i].is_object() &&
            text_of(events[i], "type") == config::to_string(config::event_type::started)) {
            return i;
        }
    }
    return std::nullopt;
}

json assemble_report(const std::string& model, const std::vector<json>& events,
                     const std::optional<json>& running, std::int64_t now_ms) {
    const auto start = latest_start(events);
    json report = {{"model", model},
                   {"candidate", nullptr},
                   {"stable", nullptr},
                   {"phase", nullptr},
                   {"started_ms", nullptr},
                   {"ended_ms", nullptr},
                   {"complete_history", start.has_value()},
                   {"stages", json::array()}};
    json& stages = report["stages"];
    std::optional<json> open;  // the stage that has begun and not ended yet
    bool was_live = false;
    for (std::size_t i = start.value_or(0); i < events.size(); ++i) {
        const json& e = events[i];
        if (!e.is_object()) {
            continue;
        }
        const std::string type = text_of(e, "type");
        const std::string phase_word = text_of(e, "phase");
        for (const char* key : {"candidate", "stable"}) {
            if (!text_of(e, key).empty()) {
                report[key] = text_of(e, key);
            }
        }
        if (i == start) {
            report["started_ms"] = field_or_null(e, "time_ms");
        }
        if (!phase_word.empty()) {
            report["phase"] = phase_word;
            const bool live = live_phase(phase_word);
            if (was_live && !live) {
                report["ended_ms"] = field_or_null(e, "time_ms");
            } else if (live) {
                report["ended_ms"] = nullptr;  // restarted after a rollback
            }
            was_live = live;
        }
        const auto summary = e.find("stage_summary");
        if (summary != e.end() && summary->is_object()) {
            if (!open) {  // the history begins inside this stage
                open = new_stage(text_of(*summary, "stage"), ms_of(*summary, "started_ms"));
            }
            fold(*open, *summary);
            const bool ends =
                text_of(e, "stage") != text_of(*summary, "stage") || !live_phase(phase_word);
            if (!ends) {  // a pause, a resume: the stage goes on
                (*open)["events"].push_back(note(e));
                continue;
            }
            (*open)["ended_ms"] = field_or_null(e, "time_ms");
            set_seconds(*open, ms_of(e, "time_ms"));
            (*open)["decision"] = decision(e);
            stages.push_back(std::move(*open));
            open.reset();
            if (live_phase(phase_word)) {
                open = new_stage(text_of(e, "stage"), ms_of(e, "time_ms"));
            }
            continue;
        }
        if (!open && live_phase(phase_word) && !text_of(e, "stage").empty()) {
            open = new_stage(text_of(e, "stage"), ms_of(e, "time_ms"));  // started, restarted
            continue;
        }
        // Within the stage (checks, approval, a reload, a restart of the gateway), or after the
        // end (post-checks): told where it happened. A restart of the gateway after the end
        // changed nothing the report tells.
        if (open) {
            (*open)["events"].push_back(note(e));
        } else if (!stages.empty() && type != config::to_string(config::event_type::resumed)) {
            stages.back()["events"].push_back(note(e));
        }
    }
    if (running && running->is_object()) {
        if (!open) {
            open = new_stage(text_of(*running, "stage"), ms_of(*running, "started_ms"));
        }
        fold(*open, *running);
        if (!text_of(*running, "phase").empty()) {
            report["phase"] = text_of(*running, "phase");
        }
    }
    if (open) {
        (*open)["current"] = true;
        set_seconds(*open, now_ms);
        stages.push_back(std::move(*open));
    }
    return report;
}

}  // namespace stagegate::rollout
