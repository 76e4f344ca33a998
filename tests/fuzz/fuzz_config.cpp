// Config parsing and validation: any bytes give a config or a list of problems, never a crash.
#include "stagegate/config/config.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto cfg = stagegate::config::parse(text);
    if (cfg) {
        (void)stagegate::config::validate(*cfg);
        (void)stagegate::config::reload_problems(*cfg, *cfg);
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
