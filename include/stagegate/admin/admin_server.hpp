// admin: the admin HTTP listener on the control thread (optionally TLS).
// Owns: bearer-token authentication (viewer and operator roles), the /api/v1/ endpoints
// (models, rollouts and their commands, events paged and live as Server-Sent Events, config
// reload, the OpenAPI document, whoami), /healthz, /readyz, /metrics and the dashboard (/ui/,
// files built into the binary; admin/ui_assets). Every error is
// {"error":{"code","message"}} plus "path" and "problems" for validation errors.
// Must not touch: the request path or the data plane (it sees them through control::plane);
// rollout decisions go through the controller.
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace stagegate::control {
class plane;
}

namespace stagegate::admin {

class admin_server {
public:
    admin_server(boost::asio::io_context& io, control::plane& gw);
    ~admin_server();
    // Reads the token files, loads the TLS certificate, binds; fails with nothing listening.
    result<std::uint16_t> listen(const config::admin& cfg);
    void stop();  // control thread

    // One endpoint as docs/openapi.json names it: "post", "/api/v1/rollouts/{model}/pause".
    struct operation {
        std::string method;  // lower case
        std::string path;
        bool needs_operator = false;  // else a viewer token, or none for the probes
    };
    // Every endpoint, from the route table the server dispatches by: for the check that the
    // OpenAPI document and the server agree.
    static std::vector<operation> operations();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// The OpenAPI 3 document served at /api/v1/openapi.json (docs/openapi.json, built in).
std::string_view openapi_document();

}  // namespace stagegate::admin
