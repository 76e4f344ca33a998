// Config parsing and validation: any bytes give a config or a list of problems, never a crash.
// A config that parses is also planned as a reload (what POST /api/v1/config/reload and
// SIGHUP do with the file, control::plan_reload) over a running gateway of model m (v1, v2,
// v3), once without rollouts and once with m's rollout of v2 progressing at 5 %.
#include "stagegate/config/config.hpp"
#include "stagegate/control/reload_plan.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

using namespace stagegate;

const config::gateway& running_config() {
    static const config::gateway cfg = [] {
        auto c = config::parse(R"({
          "listeners": [{"address": "127.0.0.1", "port": 0}],
          "models": [{"name": "m", "stable": "v1",
            "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]},
                         {"name": "v2", "endpoints": ["127.0.0.1:9002"]},
                         {"name": "v3", "endpoints": ["127.0.0.1:9003"]}],
            "rollout": {"candidate": "v2", "stages": [{"weight_bp": 500}, {"weight_bp": 5000}]}}]
        })");
        if (!c) {
            std::abort();
        }
        return *c;
    }();
    return cfg;
}

// m's live route while its rollout sends 5 % to v2.
const routing::route_snapshot& running_routes() {
    static const routing::route_snapshot snap = [] {
        routing::model_route m;
        m.name = "m";
        for (const char* v : {"v1", "v2", "v3"}) {
            routing::version_route r;
            r.name = v;
            m.versions.push_back(r);
        }
        m.weights = {9500, 500, 0};
        m.stable = 0;
        m.stage = "canary-5";
        routing::route_snapshot s;
        s.models.push_back(std::move(m));
        return s;
    }();
    return snap;
}

void plan_reloads(const config::gateway& next) {
    const control::rollout_states none;
    const control::rollout_states progressing = {
        {"m", {rollout::phase::progressing, "v2", "v1", 0, "canary-5", 1, true}}};
    for (const auto* states : {&none, &progressing}) {
        auto plan = control::plan_reload(running_config(), running_routes(), *states, next);
        (void)plan.problems();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto cfg = stagegate::config::parse(text);
    if (cfg) {
        (void)stagegate::config::validate(*cfg);
        (void)stagegate::config::reload_problems(*cfg, *cfg);
        plan_reloads(*cfg);
    } else {
        (void)cfg.error().describe();
    }
    auto rollout = stagegate::config::parse_rollout(text, "/rollout");
    if (rollout) {
        (void)stagegate::config::validate_rollout(*rollout, {"v1", "v2"}, "v1", "/rollout");
    }
    (void)stagegate::config::parse_rfc3339(text);
    stagegate::config::endpoint ep;
    (void)stagegate::config::parse_host_port(text, ep);
    return 0;
}
