#include "stagegate/config/vocabulary.hpp"

namespace stagegate::config {

const char* to_string(rollout_phase p) {
    switch (p) {
        case rollout_phase::progressing:
            return "progressing";
        case rollout_phase::paused:
            return "paused";
        case rollout_phase::completed:
            return "completed";
        case rollout_phase::rolled_back:
            return "rolled_back";
        case rollout_phase::aborted:
            return "aborted";
    }
    return "unknown";
}

std::optional<rollout_phase> parse_rollout_phase(std::string_view name) {
    for (auto p : rollout_phases) {
        if (name == to_string(p)) {
            return p;
        }
    }
    return std::nullopt;
}

bool is_live(rollout_phase p) {
    return p == rollout_phase::progressing || p == rollout_phase::paused;
}

const char* to_string(event_type t) {
    switch (t) {
        case event_type::started:
            return "started";
        case event_type::promoted:
            return "promoted";
        case event_type::completed:
            return "completed";
        case event_type::rolled_back:
            return "rolled_back";
        case event_type::command:
            return "command";
        case event_type::stuck:
            return "stuck";
        case event_type::resumed:
            return "resumed";
        case event_type::spec_updated:
            return "spec_updated";
        case event_type::config_reloaded:
            return "config_reloaded";
        case event_type::approval_pending:
            return "approval_pending";
        case event_type::check_failed:
            return "check_failed";
        case event_type::checks_passed:
            return "checks_passed";
    }
    return "unknown";
}

std::optional<event_type> parse_event_type(std::string_view name) {
    for (auto t : event_types) {
        if (name == to_string(t)) {
            return t;
        }
    }
    return std::nullopt;
}

}  // namespace stagegate::config
