#include "admin_error.hpp"

namespace stagegate::admin {

namespace http = boost::beast::http;

namespace {

// One past the last enumerator: classify() tries each in turn.
constexpr int admin_error_count = static_cast<int>(admin_error::internal) + 1;

}  // namespace

http::status http_status(admin_error e) {
    using s = http::status;
    switch (e) {
        case admin_error::bad_request:
        case admin_error::bad_path:
        case admin_error::bad_query:
        case admin_error::invalid_json:
        case admin_error::invalid_argument:
        case admin_error::invalid_config:
        case admin_error::invalid_rollout:
        case admin_error::invalid_weights:
        case admin_error::invalid_mirror:
        case admin_error::unknown_version:
        case admin_error::bad_webhook:
        case admin_error::webhook_secret_unreadable:
            return s::bad_request;
        case admin_error::missing_token:
        case admin_error::invalid_token:
            return s::unauthorized;
        case admin_error::forbidden:
            return s::forbidden;
        case admin_error::not_found:
        case admin_error::unknown_model:
        case admin_error::unknown_rollout:
            return s::not_found;
        case admin_error::method_not_allowed:
            return s::method_not_allowed;
        case admin_error::invalid_state:
        case admin_error::rollout_active:
        case admin_error::no_config_file:
        case admin_error::feedback_not_enabled:
            return s::conflict;
        case admin_error::payload_too_large:
            return s::payload_too_large;
        case admin_error::header_too_large:
            return s::request_header_fields_too_large;
        case admin_error::draining:
        case admin_error::not_synced:
        case admin_error::state_io_failed:
        case admin_error::state_corrupt:
        case admin_error::not_leader:
        case admin_error::no_leader:
        case admin_error::leader_unaddressable:
            return s::service_unavailable;
        case admin_error::leader_unreachable:
            return s::bad_gateway;
        case admin_error::not_durable:
            return s::insufficient_storage;
        case admin_error::config_unreadable:
        case admin_error::reload_incomplete:
        case admin_error::not_started:
        case admin_error::internal:
            return s::internal_server_error;
    }
    return s::internal_server_error;  // not an enumerator: unreachable
}

std::string_view wire_code(admin_error e) {
    switch (e) {
        case admin_error::bad_request:
            return "bad_request";
        case admin_error::bad_path:
            return "bad_path";
        case admin_error::bad_query:
            return "bad_query";
        case admin_error::invalid_json:
            return "invalid_json";
        case admin_error::invalid_argument:
            return "invalid_argument";
        case admin_error::payload_too_large:
            return "payload_too_large";
        case admin_error::header_too_large:
            return "header_too_large";
        case admin_error::not_found:
            return "not_found";
        case admin_error::method_not_allowed:
            return "method_not_allowed";
        case admin_error::missing_token:
            return "missing_token";
        case admin_error::invalid_token:
            return "invalid_token";
        case admin_error::forbidden:
            return "forbidden";
        case admin_error::invalid_config:
            return "invalid_config";
        case admin_error::invalid_rollout:
            return "invalid_rollout";
        case admin_error::invalid_weights:
            return "invalid_weights";
        case admin_error::invalid_mirror:
            return "invalid_mirror";
        case admin_error::unknown_version:
            return "unknown_version";
        case admin_error::bad_webhook:
            return "bad_webhook";
        case admin_error::webhook_secret_unreadable:
            return "webhook_secret_unreadable";
        case admin_error::unknown_model:
            return "unknown_model";
        case admin_error::unknown_rollout:
            return "unknown_rollout";
        case admin_error::invalid_state:
            return "invalid_state";
        case admin_error::rollout_active:
            return "rollout_active";
        case admin_error::no_config_file:
            return "no_config_file";
        case admin_error::feedback_not_enabled:
            return "feedback_not_enabled";
        case admin_error::draining:
            return "draining";
        case admin_error::not_synced:
            return "rollout_state_not_synced";
        case admin_error::state_io_failed:
            return "state_io_failed";
        case admin_error::state_corrupt:
            return "state_corrupt";
        case admin_error::not_leader:
            return "not_leader";
        case admin_error::no_leader:
            return "no_leader";
        // Two causes, one code: clients retry both the same way; the status tells them apart.
        case admin_error::leader_unaddressable:
            return "leader_unreachable";
        case admin_error::leader_unreachable:
            return "leader_unreachable";
        case admin_error::not_durable:
            return "not_durable";
        case admin_error::config_unreadable:
            return "config_unreadable";
        case admin_error::reload_incomplete:
            return "reload_incomplete";
        case admin_error::not_started:
            return "not_started";
        case admin_error::internal:
            return "internal_error";
    }
    return "internal_error";  // not an enumerator: unreachable
}

admin_error classify(std::string_view code) {
    // Read back through wire_code, so the codes are spelled in one place only. The first
    // enumerator with the code wins (leader_unreachable's two share theirs, and no other
    // module reports it).
    for (int i = 0; i < admin_error_count; ++i) {
        const auto e = static_cast<admin_error>(i);
        if (e != admin_error::internal && wire_code(e) == code) {
            return e;
        }
    }
    return admin_error::internal;
}

error make_error(admin_error e, std::string message, std::vector<problem> problems) {
    return error{std::string(wire_code(e)), std::move(message), std::move(problems)};
}

}  // namespace stagegate::admin
