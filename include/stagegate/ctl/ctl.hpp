// ctl: stagegatectl, the command-line client of the admin API.
// Owns: argument parsing, the HTTP(S) calls (bearer token, timeouts, Server-Sent Events),
// and the human views (tables, the live status view). Exit codes: 0 ok, 1 refused by the
// server, 2 usage, 3 cannot connect.
// Must not touch: gateway internals; it only speaks HTTP to /api/v1/.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace stagegate::ctl {

inline constexpr int exit_ok = 0;
inline constexpr int exit_refused = 1;
inline constexpr int exit_usage = 2;
inline constexpr int exit_unreachable = 3;

// Runs one stagegatectl command; `args` excludes the program name.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace stagegate::ctl
