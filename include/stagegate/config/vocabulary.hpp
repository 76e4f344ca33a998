// config/vocabulary: the words a rollout is described in, shared by every module (the
// controller decides in them, metrics and the admin API show them, webhooks filter on them,
// stagegatectl reads them back). Each is one enum with one to_string and one parse, so a new
// phase or event type is added here and nowhere is a string compared by hand.
// Must not touch: what the words mean (rollout/ decides that).
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace stagegate::config {

enum class rollout_phase { progressing, paused, completed, rolled_back, aborted };
inline constexpr std::array<rollout_phase, 5> rollout_phases = {
    rollout_phase::progressing, rollout_phase::paused, rollout_phase::completed,
    rollout_phase::rolled_back, rollout_phase::aborted};
const char* to_string(rollout_phase p);
std::optional<rollout_phase> parse_rollout_phase(std::string_view name);
// Progressing or paused: the candidate may still take traffic and the rollout decide.
bool is_live(rollout_phase p);

// What the controller's events say happened (the "type" of an event; webhooks filter on it).
enum class event_type {
    started,
    promoted,
    completed,
    rolled_back,
    command,
    stuck,
    resumed,
    spec_updated,
    config_reloaded,
    approval_pending,
    check_failed,
    checks_passed,
};
inline constexpr std::array<event_type, 12> event_types = {
    event_type::started,          event_type::promoted,        event_type::completed,
    event_type::rolled_back,      event_type::command,         event_type::stuck,
    event_type::resumed,          event_type::spec_updated,    event_type::config_reloaded,
    event_type::approval_pending, event_type::check_failed,    event_type::checks_passed};
const char* to_string(event_type t);
std::optional<event_type> parse_event_type(std::string_view name);

}  // namespace stagegate::config
