#include "report.hpp"
#include "table.hpp"

#include "stagegate/core/text.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string_view>
#include <vector>

namespace stagegate::ctl {

using json = nlohmann::json;

namespace {

std::string format(const char* pattern, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, pattern, v);
    return buf;
}

std::string duration(double seconds) {
    if (seconds < 60) {
        return format("%.1fs", seconds);
    }
    const long s = std::lround(seconds);
    char buf[32];
    if (s < 3600) {
        std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
    } else {
        std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
    }
    return buf;
}

std::string count_text(const json& j, const char* key) {
    return std::to_string(static_cast<unsigned long long>(num(j, key)));
}

// What a gate's numbers measure, read off its name (rollout/gates names them).
enum class unit { share, seconds, tokens_per_second, hours, plain };

unit unit_of(std::string_view gate) {
    const auto has = [&](std::string_view part) {
        return gate.find(part) != std::string_view::npos;
    };
    if (has("tokens_per_second")) {
        return unit::tokens_per_second;
    }
    if (has("latency") || has("ttft") || has("time_per_token")) {
        return unit::seconds;
    }
    if (has("rate") || has("accuracy") || has("agreement")) {
        return unit::share;
    }
    if (has("age")) {
        return unit::hours;
    }
    return unit::plain;
}

std::string value(unit u, double v) {
    switch (u) {
        case unit::share:
            return format("%.2f%%", v * 100);
        case unit::seconds:
            return format(v < 0.01 ? "%.2fms" : "%.1fms", v * 1000);
        case unit::tokens_per_second:
            return format("%.1f tok/s", v);
        case unit::hours:
            return format("%.1fh", v / 3600);
        case unit::plain:
            break;
    }
    return format("%.3g", v);
}

std::string difference(unit u, double d) {
    switch (u) {
        case unit::share:
            return format("%+.2f pts", d * 100);
        case unit::seconds:
            return format("%+.1fms", d * 1000);
        case unit::tokens_per_second:
            return format("%+.1f tok/s", d);
        default:
            return format("%+.3g", d);
    }
}

std::string upper(std::string s) {
    for (auto& c : s) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return s;
}

// The gate's effect: candidate / stable and candidate - stable, for a comparison with stable.
std::string effect(const json& g, unit u) {
    std::string out;
    if (has_number(g, "ratio")) {
        out = format("x%.2f", num(g, "ratio"));
    }
    // Appended piece by piece here and below: GCC 12 at -O3 (Release, loadtest/compare)
    // reports a false -Wrestrict on `"literal" + string`, which -Werror turns into a failed
    // build.
    if (has_number(g, "difference")) {
        if (!out.empty()) {
            out += ' ';
        }
        out += difference(u, num(g, "difference"));
    }
    return out.empty() ? "-" : out;
}

std::string interval(const json& g, unit u) {
    std::string out = "[";
    out.append(value(u, num(g, "candidate_low"))).append(", ");
    if (has_number(g, "candidate_high")) {
        out.append(value(u, num(g, "candidate_high"))).append("]");
    } else {
        out.append("unbounded)");
    }
    return out;
}

// The verdicts in a few words: "2 pass, 1 inconclusive".
std::string verdicts(const json& gates) {
    if (!gates.is_array() || gates.empty()) {
        return "not judged";
    }
    std::vector<std::pair<std::string, int>> seen;
    for (const auto& g : gates) {
        const auto v = str(g, "verdict");
        auto it =
            std::find_if(seen.begin(), seen.end(), [&](const auto& p) { return p.first == v; });
        if (it == seen.end()) {
            seen.emplace_back(v, 1);
        } else {
            ++it->second;
        }
    }
    std::string out;
    for (const auto& [v, n] : seen) {
        out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + v;
    }
    return out;
}

// Why the stage ended, in a few words: "promoted to canary-50", "rolled back", "pause by alice".
std::string decision_words(const json& stage) {
    if (stage.value("current", false)) {
        return "in progress";
    }
    const auto& d = stage.contains("decision") ? stage["decision"] : json();
    if (!d.is_object()) {
        return "-";
    }
    std::string type = str(d, "type");
    std::string words = type == "command" ? str(d, "command") : type;
    for (auto& c : words) {
        c = c == '_' ? ' ' : c;
    }
    if (!str(d, "next_stage").empty() && (type == "promoted" || str(d, "command") == "promote")) {
        words += " to " + str(d, "next_stage");
    }
    if (!str(d, "actor").empty()) {
        words += " by " + str(d, "actor");
    }
    return words;
}

}  // namespace

void print_report(const json& r, std::ostream& out) {
    out << "Model:     " << str(r, "model") << "\n";
    out << "Rollout:   " << str(r, "candidate") << " replacing " << str(r, "stable") << "  ["
        << str(r, "phase") << "]\n";
    if (has_number(r, "started_ms")) {
        out << "Started:   " << clock_time(num(r, "started_ms"));
        if (has_number(r, "ended_ms")) {
            out << "  ended " << clock_time(num(r, "ended_ms")) << " ("
                << duration((num(r, "ended_ms") - num(r, "started_ms")) / 1000) << ")";
        }
        out << "\n";
    }
    if (!r.value("complete_history", true)) {
        out << "History:   the event log no longer reaches back to this rollout's start: its "
               "first stages are missing\n";
    }
    const auto stages =
        r.contains("stages") && r["stages"].is_array() ? r["stages"] : json::array();
    out << "\n";
    std::vector<std::vector<std::string>> rows{{"STAGE", "WEIGHT", "TIME", "CANDIDATE REQS",
                                                "STABLE REQS", "MIRRORED", "GATES", "DECISION"}};
    for (const auto& s : stages) {
        rows.push_back({str(s, "name"), format("%g%%", num(s, "weight_bp") / 100),
                        duration(num(s, "seconds")), count_text(s, "candidate_requests"),
                        count_text(s, "stable_requests"),
                        num(s, "mirror_bp") > 0 ? count_text(s, "mirror_requests") : "-",
                        verdicts(s.value("gates", json::array())), decision_words(s)});
    }
    print_table(out, rows);
    for (const auto& s : stages) {
        out << "\n" << str(s, "name") << " (" << decision_words(s);
        if (has_number(s, "judged_ms")) {
            out << "; gates as judged at " << clock_time(num(s, "judged_ms"));
        }
        out << "):\n";
        const auto gates = s.value("gates", json::array());
        if (gates.empty()) {
            out << "  (no gate judged in this stage)\n";
        } else {
            std::vector<std::vector<std::string>> g_rows{{"GATE", "VERDICT", "CANDIDATE", "STABLE",
                                                          "EFFECT", "CANDIDATE INTERVAL", "LIMIT"}};
            for (const auto& g : gates) {
                const auto u = unit_of(str(g, "gate"));
                const bool vs_stable = has_number(g, "difference");
                g_rows.push_back({str(g, "gate"), upper(str(g, "verdict")),
                                  value(u, num(g, "candidate")),
                                  vs_stable ? value(u, num(g, "stable")) : "-", effect(g, u),
                                  interval(g, u), value(u, num(g, "limit"))});
            }
            print_table(out, g_rows, "  ");
            for (const auto& g : gates) {
                out << "  " << str(g, "gate") << ": " << str(g, "explanation") << "\n";
            }
        }
        for (const auto& e : s.value("events", json::array())) {
            out << "  " << clock_time(num(e, "time_ms")) << " " << str(e, "type") << ": "
                << str(e, "text") << "\n";
        }
        if (s.contains("decision") && s["decision"].is_object()) {
            out << "  decision: " << str(s["decision"], "text") << "\n";
        }
    }
}

int report(const std::string& model, bool json_output, std::ostream& out, const get_json& get) {
    int code = 0;
    auto r = get("/api/v1/rollouts/" + percent_encode(model) + "/report", code);
    if (!r) {
        return code;
    }
    if (json_output) {
        out << r->dump(2) << "\n";
    } else {
        print_report(*r, out);
    }
    return code;
}

std::string clock_time(double ms) {
    std::time_t t = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace stagegate::ctl
