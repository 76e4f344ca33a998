// ctl/report: `stagegatectl report MODEL`, a rollout's report (GET
// /api/v1/rollouts/{model}/report) drawn as tables: one line per stage (as `kubectl argo
// rollouts get` lists steps: time spent, each version's requests, the decision), then each
// stage's gates with the candidate-vs-stable effect and the candidate's confidence interval,
// and why the stage ended. `-o json` prints the report as the server sent it.
// Must not touch: option parsing and the HTTP session (ctl.cpp owns them: this is handed a
// way to GET a path of the admin API).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>

namespace stagegate::ctl {

// GETs an admin API path: the answer's JSON, or nullopt with `code` set to the exit code once
// the failure has been reported.
using get_json = std::function<std::optional<nlohmann::json>(const std::string& target, int& code)>;

// Fetches MODEL's report and prints it; returns the exit code.
int report(const std::string& model, bool json_output, std::ostream& out, const get_json& get);

// A time in milliseconds since the epoch as RFC 3339 UTC, to the second (the report's and
// the event list's timestamps).
std::string clock_time(double ms);

// The tables of one report (what `report` prints without -o json).
void print_report(const nlohmann::json& report, std::ostream& out);

}  // namespace stagegate::ctl
