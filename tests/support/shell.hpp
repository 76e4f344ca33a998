// Test support: running other programs from a test: a shell command bounded in time, with its
// exit code and output, and where the pinned npm clients live (tests/clients).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace stagegate::test {

// The npm clients' directory (package.json, node_modules once `npm ci` ran).
inline const std::string clients_dir = std::string(STAGEGATE_SOURCE_DIR) + "/tests/clients";

struct run_result {
    int exit_code = -1;  // -1: not started, or ended by a signal
    std::string output;  // stdout and stderr together
};

// Runs a shell command, ended by `timeout` after `timeout_s` seconds (then exit code 124), and
// collects its output.
inline run_result run(const std::string& command, int timeout_s = 30) {
    run_result r;
    const std::string bounded = "timeout " + std::to_string(timeout_s) + " " + command + " 2>&1";
    FILE* p = ::popen(bounded.c_str(), "r");
    if (!p) {
        return r;
    }
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        r.output.append(buf, n);
    }
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

}  // namespace stagegate::test
