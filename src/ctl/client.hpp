// Private to ctl: a small HTTP(S) client for the admin API. One connection per call, every
// step bounded by a timeout; Server-Sent Events read as they arrive.
#pragma once

#include "stagegate/core/error.hpp"

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace stagegate::ctl {

struct server_url {
    bool tls = false;
    std::string host;
    std::string port;
};

// "http://host:port", "https://host[:port]", "host:port"; errors say what is wrong.
result<server_url> parse_server_url(std::string_view text);

struct client_options {
    server_url url;
    std::string token;    // empty: no Authorization header
    std::string ca_file;  // https: trust this CA instead of the system's
    bool insecure = false;  // https: skip certificate verification
    std::chrono::milliseconds timeout{10000};
};

struct reply {
    unsigned status = 0;
    std::string body;
};

class client {
public:
    explicit client(client_options options) : options_(std::move(options)) {}

    // One request. Fails with code "unreachable" when no HTTP answer came back.
    result<reply> call(std::string_view method, const std::string& target,
                       const std::string& body = {});

    // Follows an event stream, calling `on_event(data)` for each event's data; stops when it
    // returns false, the server closes, or nothing (not even a heartbeat) arrives in a minute.
    // A non-200 answer comes back as the reply.
    result<reply> follow(const std::string& target,
                         const std::function<bool(const std::string& data)>& on_event);

private:
    client_options options_;
};

}  // namespace stagegate::ctl
