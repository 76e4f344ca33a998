// The admin API's JSON handlers, through the listener as an operator calls them. The first
// byte picks one of the routes that change something (the route table's operator routes,
// admin::admin_server::operations(), in table order, {model} being "m", which has a rollout),
// and the rest is its body, sent in one well-formed request with the operator's token: so the
// fuzzer's bytes reach the body's parse and the handler rather than dying in HTTP framing or
// authentication. One value more than there are routes sends the rest as raw bytes instead
// (framing, headers, paths and methods of the admin listener). POST /api/v1/config/reload
// reloads the gateway's own config file; what a reloaded file may hold is fuzz_config's.
//
// Oracles: no crash or sanitizer report; no answer is a 500 "internal_error" (an error code
// the admin API does not map, a bug there); and every 256th input /healthz still answers 200.
#include "live_gateway.hpp"

#include "stagegate/admin/admin_server.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct route {
    std::string method;  // upper case
    std::string target;
};

const std::vector<route>& mutating_routes() {
    static const std::vector<route> routes = [] {
        std::vector<route> out;
        for (const auto& op : stagegate::admin::admin_server::operations()) {
            if (!op.needs_operator) {
                continue;
            }
            route r;
            for (char c : op.method) {
                r.method += static_cast<char>(c - 'a' + 'A');
            }
            r.target = op.path;
            if (auto at = r.target.find("{model}"); at != std::string::npos) {
                r.target.replace(at, 7, "m");
            }
            out.push_back(std::move(r));
        }
        return out;
    }();
    return routes;
}

std::string request_for(const route& r, std::string_view body) {
    return r.method + " " + r.target + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
           stagegate::fuzz::operator_token +
           "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    auto& l = stagegate::fuzz::live_gateway();
    const auto& routes = mutating_routes();
    const std::size_t pick = data[0] % (routes.size() + 1);
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    const auto answer = stagegate::fuzz::exchange(
        l.admin, pick < routes.size() ? request_for(routes[pick], rest) : std::string(rest));
    if (answer.rfind("HTTP/1.1 500", 0) == 0 &&
        answer.find("\"internal_error\"") != std::string::npos) {
        std::fprintf(stderr, "the admin API answered an error it does not know:\n%s\n",
                     answer.c_str());
        std::abort();
    }
    static unsigned n = 0;
    if (++n % 256 == 0) {
        auto r = stagegate::fuzz::exchange(
            l.admin, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if (r.rfind("HTTP/1.1 200", 0) != 0) {
            std::fprintf(stderr, "the admin API stopped answering /healthz; it answered:\n%s\n",
                         r.c_str());
            std::abort();
        }
    }
    return 0;
}
