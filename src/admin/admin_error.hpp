// Private to admin: every error the admin API answers with, as one enum. Its HTTP status and
// its wire code ({"error":{"code"}}) are given in one place, a switch without a default, so an
// error without a status does not compile (-Wswitch, and warnings fail the build).
// The other modules report errors as stagegate::error with a string code; classify() is the
// one place those codes are read.
#pragma once

#include <boost/beast/http/status.hpp>
#include <string_view>

#include "stagegate/core/error.hpp"

namespace stagegate::admin {

enum class admin_error {
    // The request itself.
    bad_request,       // unreadable HTTP
    bad_path,          // malformed percent-encoding in the path
    bad_query,         // malformed query string
    invalid_json,      // the body is not JSON
    invalid_argument,  // a field or parameter has a wrong value
    payload_too_large,
    header_too_large,
    not_found,  // no endpoint at this path
    method_not_allowed,
    missing_token,
    invalid_token,
    forbidden,  // a viewer asked for a change
    // Input the other modules rejected.
    invalid_config,
    invalid_rollout,
    invalid_weights,
    invalid_mirror,
    unknown_version,
    bad_webhook,
    webhook_secret_unreadable,
    // What the request names does not exist.
    unknown_model,
    unknown_rollout,
    // The gateway's state does not allow it.
    invalid_state,
    rollout_active,
    no_config_file,
    feedback_not_enabled,
    // The gateway cannot now.
    draining,
    not_synced,  // a cluster replica that has not read the rollout states yet (/readyz)
    state_io_failed,
    state_corrupt,
    not_leader,
    no_leader,
    leader_unaddressable,  // the leader publishes no admin URL: 503, "leader_unreachable"
    leader_unreachable,    // the leader did not answer a forwarded change: 502
    not_durable,           // applied, but not recorded
    // The gateway failed.
    config_unreadable,
    reload_incomplete,
    not_started,
    internal,  // a code no case here knows: a bug to fix here, never the caller's fault
};

boost::beast::http::status http_status(admin_error e);
std::string_view wire_code(admin_error e);

// The admin error for another module's error code; `internal` for a code it does not know.
admin_error classify(std::string_view code);

// An error built here, in the shape the other modules return, with its wire code.
error make_error(admin_error e, std::string message, std::vector<problem> problems = {});

}  // namespace stagegate::admin
