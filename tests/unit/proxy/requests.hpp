// What the proxy's unit tests build requests with: a POST of `target` to host "gw", as the
// request path receives it once parsed.
#pragma once

#include "proxy/http_util.hpp"

#include <string>

namespace stagegate::proxy {

inline client_request post_request(std::string target, std::string body = {}) {
    client_request req{http::verb::post, target, 11};
    req.set(http::field::host, "gw");
    req.body().assign(body.data(), body.size());
    return req;
}

}  // namespace stagegate::proxy
