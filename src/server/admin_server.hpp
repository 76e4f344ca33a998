// Private to server: the admin HTTP listener on the control thread.
// Serves /healthz, /readyz, /metrics (Prometheus text) and the read-only /api/v1/ model views.
// Every error is {"error":{"code","message"}}. Authentication and mutating endpoints come with
// the admin API issue.
#pragma once

#include "stagegate/core/error.hpp"

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace stagegate::server {

class gateway;

class admin_server {
public:
    admin_server(boost::asio::io_context& io, gateway& gw);
    ~admin_server();
    result<std::uint16_t> listen(const std::string& address, std::uint16_t port);
    void stop();  // control thread

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace stagegate::server
