#include "stagegate/ctl/ctl.hpp"
#include "stagegate/config/vocabulary.hpp"
#include "stagegate/core/json.hpp"

#include "stagegate/core/command_line.hpp"
#include "stagegate/core/http_client.hpp"
#include "stagegate/core/secret_file.hpp"
#include "stagegate/core/text.hpp"

#include "commands.hpp"
#include "event_feed.hpp"
#include "report.hpp"
#include "table.hpp"

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <thread>

namespace stagegate::ctl {

using json = nlohmann::json;
namespace po = boost::program_options;

// A command line stagegatectl cannot run: said on stderr with exit code 2.
struct usage_error {
    std::string message;
};

// The command line, read.
struct options {
    std::string server;
    std::string token_file;
    std::string ca_file;
    bool insecure = false;
    double timeout_s = 10;
    bool json_output = false;
    std::string command;
    std::vector<std::string> positional;
    std::string file;
    std::string reason;
    bool full = false;
    bool watch = false;
    bool follow = false;
    double interval_s = 2;
    long count = 0;  // 0: forever
    long limit = 20;
};

namespace {

double parse_number(const std::string& flag, const std::string& value, double min, double max) {
    char* end = nullptr;
    double d = std::strtod(value.c_str(), &end);
    if (value.empty() || *end || !(d >= min && d <= max)) {
        std::ostringstream msg;
        msg << flag << " expects a number from " << min << " to " << max << ", got \"" << value
            << "\"";
        throw usage_error{msg.str()};
    }
    return d;
}

// The option table as Boost.Program_options descriptions: the global options, or the ones
// only some commands use. A flag is a bool_switch (a value after it is refused); every other
// option's value is kept as text and checked below, so its error names the accepted range.
po::options_description described_options(bool global) {
    po::options_description d(global ? "options" : "command options", 100, 50);
    for (const auto& s : option_table()) {
        if (s.global != global) {
            continue;
        }
        std::string names = s.long_name;
        if (s.short_name) {
            names += ',';
            names += s.short_name;
        }
        if (s.value_name) {
            d.add_options()(names.c_str(), po::value<std::string>()->value_name(s.value_name),
                            s.help);
        } else {
            d.add_options()(names.c_str(), po::bool_switch(), s.help);
        }
    }
    return d;
}

// "-5" is an argument (a number), not an option: `weight m -5` is then refused for its range.
std::vector<po::option> negative_number_is_an_argument(std::vector<std::string>& args) {
    if (args.empty() || args.front().size() < 2 || args.front()[0] != '-' ||
        !std::isdigit(static_cast<unsigned char>(args.front()[1]))) {
        return {};
    }
    po::option argument;
    argument.value.push_back(args.front());
    argument.original_tokens.push_back(args.front());
    args.erase(args.begin());
    return {argument};
}

std::string usage_text() {
    std::ostringstream u;
    u << "usage: stagegatectl [OPTIONS] COMMAND [ARGS]\n\ncommands:\n";
    for (const auto& c : command_table()) {
        if (c.hidden) {
            continue;
        }
        std::string head = std::string("  ") + c.name + (*c.synopsis ? " " : "") + c.synopsis;
        constexpr std::size_t column = 34;
        if (head.size() + 2 > column) {
            u << head << "\n" << std::string(column, ' ');
        } else {
            u << head << std::string(column - head.size(), ' ');
        }
        // The summary in words, wrapped at 100 columns.
        std::istringstream words(c.summary);
        std::size_t at = column;
        bool first = true;
        for (std::string word; words >> word; first = false) {
            if (!first && at + 1 + word.size() > 100) {
                u << "\n" << std::string(column, ' ');
                at = column;
            } else if (!first) {
                u << ' ';
                ++at;
            }
            u << word;
            at += word.size();
        }
        u << "\n";
    }
    u << "\n"
      << described_options(true) << "\n"
      << described_options(false) << "\n"
      << "An option's value may also follow it after '=': --server=URL, --timeout=5.\n"
      << "exit codes: 0 ok, 1 refused by the server, 2 usage, 3 cannot connect\n";
    return u.str();
}

options parse_args(const std::vector<std::string>& args) {
    options o;
    if (const char* s = std::getenv("STAGEGATE_SERVER")) {
        o.server = s;
    }
    if (const char* t = std::getenv("STAGEGATE_TOKEN_FILE")) {
        o.token_file = t;
    }
    if (o.server.empty()) {
        o.server = "http://127.0.0.1:9901";
    }
    po::options_description all;
    all.add(described_options(true)).add(described_options(false));
    // The command and its arguments: options may come before, between or after them.
    all.add_options()("arguments", po::value<std::vector<std::string>>());
    po::positional_options_description positional;
    positional.add("arguments", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(args)
                      .options(all)
                      .positional(positional)
                      .style(command_line_style)
                      .extra_style_parser(negative_number_is_an_argument)
                      .run(),
                  vm);
    } catch (const po::error& e) {
        throw usage_error{describe_option_error(e)};
    }
    auto text = [&](const char* name) -> const std::string* {
        return vm.count(name) ? &vm[name].as<std::string>() : nullptr;
    };
    auto flag = [&](const char* name) { return vm[name].as<bool>(); };
    if (auto v = text("server")) o.server = *v;
    if (auto v = text("token-file")) o.token_file = *v;
    if (auto v = text("ca-file")) o.ca_file = *v;
    if (auto v = text("timeout")) o.timeout_s = parse_number("--timeout", *v, 0.1, 3600);
    if (auto v = text("output")) {
        if (*v != "json" && *v != "text") {
            throw usage_error{"-o expects text or json, got \"" + *v + "\""};
        }
        o.json_output = *v == "json";
    }
    if (auto v = text("file")) o.file = *v;
    if (auto v = text("reason")) o.reason = *v;
    if (auto v = text("interval")) o.interval_s = parse_number("--interval", *v, 0.1, 3600);
    if (auto v = text("count")) o.count = static_cast<long>(parse_number("--count", *v, 1, 1e9));
    if (auto v = text("limit")) o.limit = static_cast<long>(parse_number("--limit", *v, 1, 1000));
    o.insecure = flag("insecure");
    o.full = flag("full");
    o.watch = flag("watch");
    o.follow = flag("follow");
    if (vm.count("arguments")) {
        const auto& words = vm["arguments"].as<std::vector<std::string>>();
        o.command = words.front();
        o.positional.assign(words.begin() + 1, words.end());
    }
    if (flag("help")) {
        o.command = "help";
    }
    return o;
}

std::string read_token(const std::string& path) {
    auto token = read_secret_file(path);
    if (!token) {
        throw usage_error{"cannot read token file " + path};
    }
    return *token;
}

std::string percent(double bp) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g%%", bp / 100.0);
    return buf;
}

std::string fixed(double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

std::string millis(double seconds) {
    if (seconds <= 0) {
        return "-";
    }
    return fixed(seconds * 1000.0, seconds < 0.01 ? 2 : 1) + "ms";
}

}  // namespace

// One run of a command: its options, the connection to the admin API, the output streams.
class session {
public:
    session(options o, std::ostream& out, std::ostream& err)
        : o_(std::move(o)), out_(out), err_(err) {}

    int run() {
        const auto& c = o_.command;
        if (c.empty() || c == "help") {
            (c.empty() ? err_ : out_) << usage_text();
            return c.empty() ? exit_usage : exit_ok;
        }
        const auto table = command_table();
        const auto spec = std::find_if(table.begin(), table.end(),
                                       [&](const command_spec& s) { return c == s.name; });
        if (spec == table.end()) {
            throw usage_error{"unknown command \"" + c + "\""};
        }
        if (spec->offline) {
            return spec->run(*this);
        }
        auto url = parse_http_url(o_.server, /*allow_path=*/false);
        if (!url) {
            throw usage_error{"--server: " + url.error().message};
        }
        base_.url = *url;
        base_.ca_file = o_.ca_file;
        base_.insecure = o_.insecure;
        base_.timeout = std::chrono::milliseconds(static_cast<long>(o_.timeout_s * 1000));
        if (!o_.token_file.empty()) {
            base_.headers.emplace_back("Authorization", "Bearer " + read_token(o_.token_file));
        }
        return spec->run(*this);
    }

    // Below: the commands (command_table() names them, so they are public) and their helpers.
    const std::string& model_arg(std::size_t extra = 0) {
        if (o_.positional.size() != 1 + extra) {
            throw usage_error{o_.command + ": expects MODEL" + (extra ? " and a value" : "")};
        }
        model_ = o_.positional[0];
        return o_.positional[0];
    }

    // One call; prints the server's error and returns its exit code when it fails.
    std::optional<json> call(const std::string& method, const std::string& target,
                             const json& body, int& code) {
        auto r = exchange(method, target, body.is_null() ? std::string() : body.dump());
        if (!r) {
            err_ << "stagegatectl: cannot reach " << o_.server << ": " << r.error().message
                 << "\n";
            code = exit_unreachable;
            return std::nullopt;
        }
        auto j = parse_json(r->body);
        if (r->status >= 300) {
            report_refusal(r->status, j, r->body);
            code = exit_refused;
            return std::nullopt;
        }
        if (j.is_discarded()) {
            err_ << "stagegatectl: the server answered " << r->status << " with a body that is "
                 << "not JSON\n";
            code = exit_refused;
            return std::nullopt;
        }
        code = exit_ok;
        return j;
    }

    // The server says "no rollout" for a model it does not know either: ask which it is.
    bool model_is_unknown() {
        if (model_.empty()) {
            return false;
        }
        auto r = exchange("GET", "/api/v1/models/" + percent_encode(model_), {});
        if (!r || r->status != 404) {
            return false;
        }
        const auto j = parse_json(r->body);
        return j.is_object() && j.contains("error") && j["error"].is_object() &&
               str(j["error"], "code") == "unknown_model";
    }

    void report_refusal(unsigned status, const json& j, const std::string& raw) {
        if (j.is_object() && j.contains("error") && j["error"].is_object()) {
            const auto& e = j["error"];
            const std::string code = str(e, "code");
            if ((code == "unknown_model" && !model_.empty()) ||
                (code == "unknown_rollout" && model_is_unknown())) {
                err_ << "stagegatectl: unknown model \"" << model_ << "\" (" << status
                     << " unknown_model); `stagegatectl models` lists the models\n";
                return;
            }
            if (code == "missing_token" && o_.token_file.empty()) {
                err_ << "stagegatectl: the admin API needs a token: pass --token-file FILE (or "
                        "set STAGEGATE_TOKEN_FILE) (" << status << " " << code << ")\n";
                return;
            }
            err_ << "stagegatectl: " << str(e, "message") << " (" << status << " " << code
                 << ")\n";
            if (code == "invalid_token" && !o_.token_file.empty()) {
                err_ << "stagegatectl: the token in " << o_.token_file
                     << " (--token-file) is not one the gateway knows\n";
            }
            if (j.value("applied", false)) {
                err_ << "stagegatectl: the command took effect, but is not durable yet: the "
                        "gateway keeps trying to record it\n";
            }
            if (e.contains("problems")) {
                for (const auto& p : e["problems"]) {
                    err_ << "  " << (str(p, "path").empty() ? "(body)" : str(p, "path")) << ": "
                         << str(p, "message") << "\n";
                }
            }
        } else {
            err_ << "stagegatectl: the server answered " << status << ": " << raw.substr(0, 200)
                 << "\n";
        }
    }

    json with_reason(json body) const {
        if (!o_.reason.empty()) {
            body["reason"] = o_.reason;
        }
        return body;
    }

    // GETs a listing; prints it as JSON when asked (returns an exit code then), else hands it
    // back to be drawn as a table.
    std::optional<json> listing(const std::string& target, int& code) {
        auto j = call("GET", target, nullptr, code);
        if (j && o_.json_output) {
            out_ << j->dump(2) << "\n";
            return std::nullopt;
        }
        return j;
    }

    int models() {
        int code = 0;
        auto j = listing("/api/v1/models", code);
        if (!j) return code;
        std::vector<std::vector<std::string>> rows{{"MODEL", "STAGE", "VERSIONS", "ROLLOUT"}};
        for (const auto& m : (*j)["models"]) {
            std::string versions;
            for (const auto& v : m["versions"]) {
                if (!versions.empty()) versions += ' ';
                versions += str(v, "name") + "=" +
                            percent(num(v, "weight_bp")) + (v.value("stable", false) ? "*" : "");
            }
            std::string ro = "-";
            if (m.contains("rollout") && m["rollout"].is_object()) {
                ro = str(m["rollout"], "candidate") + " " + str(m["rollout"], "phase");
            }
            rows.push_back({str(m, "name"), str(m, "stage"), versions, ro});
        }
        print_table(out_, rows);
        return exit_ok;
    }

    int rollouts() {
        int code = 0;
        auto j = listing("/api/v1/rollouts", code);
        if (!j) return code;
        std::vector<std::vector<std::string>> rows{
            {"MODEL", "STABLE", "CANDIDATE", "PHASE", "STAGE", "WEIGHT"}};
        for (const auto& r : (*j)["rollouts"]) {
            rows.push_back({str(r, "model"), str(r, "stable"), str(r, "candidate"),
                            str(r, "phase"), str(r, "stage"),
                            percent(num(r, "candidate_weight_bp"))});
        }
        print_table(out_, rows);
        return exit_ok;
    }

    // The versions' OpenAI streams since the stage began (what the stream gates judge), for
    // a model whose versions streamed: time to first token, time per output token (the
    // inter-token latency), output tokens per second, and how many streams failed.
    void render_streams(const json& metrics) {
        if (!metrics.is_object() || !metrics.contains("versions")) {
            return;
        }
        std::vector<std::vector<std::string>> rows{{"VERSION", "STREAMS", "TTFT P50", "TTFT P99",
                                                    "ITL P99", "TOK/S P50", "FAILED"}};
        for (const auto& v : metrics["versions"]) {
            const auto s = v.value("since_stage_start", json::object());
            if (!s.contains("stream_outcomes") || !s["stream_outcomes"].is_object()) {
                continue;  // shown only for a version that has streamed
            }
            const auto& ends = s["stream_outcomes"];
            double count = 0;
            for (const auto& [outcome, n] : ends.items()) {
                count += n.is_number() ? n.get<double>() : 0;
            }
            const double failed = num(ends, "cut_by_upstream") + num(ends, "cut_by_idle_timeout") +
                                  num(ends, "cut_by_total_timeout") + num(ends, "error_event");
            const auto ttft = s.value("time_to_first_token_seconds", json::object());
            const auto itl = s.value("time_per_output_token_seconds", json::object());
            const double rate = num(s.value("output_tokens_per_second", json::object()), "p50");
            rows.push_back({str(v, "version"), std::to_string(static_cast<long long>(count)),
                            millis(num(ttft, "p50")), millis(num(ttft, "p99")),
                            millis(num(itl, "p99")), rate > 0 ? fixed(rate, 1) : "-",
                            std::to_string(static_cast<long long>(failed))});
        }
        if (rows.size() > 1) {
            out_ << "\nStreams (since the stage began):\n";
            print_table(out_, rows);
        }
    }

    // The compact live view, as Argo Rollouts' kubectl plugin draws it.
    void render_status(const json& st, const json& metrics) {
        const std::string model = str(st, "model");
        const auto& stages = st["stages"];
        const auto stage_index = static_cast<std::size_t>(num(st, "stage_index"));
        const std::string phase = str(st, "phase");
        // The phase in the gateway's own vocabulary (an unknown word: neither live nor done).
        const auto phase_is = config::parse_rollout_phase(phase);
        const bool phase_live = phase_is && config::is_live(*phase_is);
        out_ << "Model:       " << model << "\n";
        if (st.contains("view") && st["view"].value("partial", false)) {
            out_ << "WARNING:     partial view from replica " << str(st["view"], "replica") << ": "
                 << str(st["view"], "why") << "\n";
        }
        out_ << "Rollout:     " << str(st, "candidate") << " replacing " << str(st, "stable")
             << "  [" << phase << "]\n";
        std::string line;
        for (std::size_t i = 0; i < stages.size(); ++i) {
            const bool live = phase_live;
            std::string mark = phase_is == config::rollout_phase::completed ||
                                       (live && i < stage_index)
                                   ? "done"
                               : live && i == stage_index                           ? "NOW"
                                                                                    : "-";
            if (!line.empty()) line += "  ";
            line += str(stages[i], "name") + " " +
                    percent(num(stages[i], "weight_bp")) + " (" + mark + ")";
        }
        out_ << "Stages:      " << line << "\n";
        out_ << "Stage:       " << str(st, "stage") << ", candidate at "
             << percent(num(st, "candidate_weight_bp"))
             << (st.value("manual_weight", false) ? " (set by hand)" : "") << "\n";
        if (st.contains("automation")) {
            out_ << "Automation:  " << str(st, "automation") << "\n";
        }
        out_ << "\n";
        std::vector<std::vector<std::string>> rows{
            {"VERSION", "ROLE", "WEIGHT", "RPS", "ERRORS", "P50", "P99", "STAGE REQS"}};
        if (metrics.is_object() && metrics.contains("versions")) {
            for (const auto& v : metrics["versions"]) {
                const auto& w = v["window"];
                const auto& s = v["since_stage_start"];
                std::string role = str(v, "version") == str(st, "candidate") ? "candidate"
                                   : v.value("stable", false)                 ? "stable"
                                                                              : "-";
                rows.push_back({str(v, "version"), role, percent(num(v, "weight_bp")),
                                fixed(num(w, "rps"), 1), fixed(num(w, "error_rate") * 100, 2) + "%",
                                millis(num(w["latency_seconds"], "p50")),
                                millis(num(w["latency_seconds"], "p99")),
                                std::to_string(static_cast<long long>(num(s, "requests")))});
            }
        }
        print_table(out_, rows);
        render_streams(metrics);
        out_ << "\nGates:\n";
        if (st["gates"].empty()) {
            out_ << "  (not judged yet)\n";
        }
        for (const auto& g : st["gates"]) {
            std::string verdict = str(g, "verdict");
            for (auto& ch : verdict) ch = static_cast<char>(std::toupper(ch));
            // 29: the longest gate name (client_error_rate_vs_stable) and a space.
            out_ << "  " << std::left << std::setw(14) << verdict << std::setw(29) << str(g, "gate")
                 << str(g, "explanation") << "\n";
        }
        if (st.value("awaiting_pre_checks", false)) {
            out_ << "\nPre-checks:  the candidate waits at 0 % until its pre-checks answer 2xx\n";
        }
        if (st.value("pending_approval", false)) {
            out_ << "\nApproval:    PENDING - gates passed; `stagegatectl promote " << model
                 << "` widens it\n";
        }
        if (st.contains("last_checks") && st["last_checks"].is_object()) {
            const auto& lc = st["last_checks"];
            out_ << "\nChecks (" << str(lc, "kind") << ", " << str(lc, "stage") << "):"
                 << (st.value("checks_in_flight", false) ? " running again\n" : "\n");
            for (const auto& c : lc["checks"]) {
                out_ << "  " << std::left << std::setw(14) << (c.value("passed", false) ? "PASS" : "FAIL")
                     << str(c, "url") << "  " << static_cast<int>(num(c, "status")) << " "
                     << str(c, "detail").substr(0, 60) << "\n";
            }
        } else if (st.value("checks_in_flight", false)) {
            out_ << "\nChecks:      running\n";
        }
        if (phase_live) {
            std::string waits;
            if (num(st, "bake_seconds_left") > 0) {
                waits += fixed(num(st, "bake_seconds_left"), 0) + " s more bake time";
            }
            if (num(st, "requests_needed") > 0) {
                waits += std::string(waits.empty() ? "" : ", ") +
                         std::to_string(static_cast<long long>(num(st, "requests_needed"))) +
                         " more candidate requests";
            }
            out_ << "\nNext decision in " << fixed(num(st, "next_evaluation_seconds"), 1) << " s"
                 << (waits.empty() ? "" : "; waits for " + waits) << "\n";
        }
        out_ << "Last:        " << str(st, "last_reason") << "\n";
        if (st.contains("webhooks")) {
            for (const auto& w : st["webhooks"]) {
                out_ << "Webhook:     " << str(w, "name") << ": " << num(w, "delivered")
                     << " delivered, " << num(w, "queued") << " queued, "
                     << num(w, "failed_attempts") << " failed attempts, " << num(w, "dropped")
                     << " dropped";
                if (w.contains("last") && w["last"].is_object()) {
                    out_ << "; last: " << (w["last"].value("ok", false) ? "ok" : "failed") << " "
                         << static_cast<int>(num(w["last"], "status"));
                }
                out_ << "\n";
            }
        }
    }

    // A model's rollout; null JSON for a model the server has without one (a fixed split),
    // whose status is then its versions' live metrics alone.
    std::optional<json> rollout_or_none(const std::string& target, int& code) {
        auto r = exchange("GET", target, {});
        if (r && r->status == 404) {
            const auto j = parse_json(r->body);
            if (j.is_object() && j.contains("error") && j["error"].is_object() &&
                str(j["error"], "code") == "unknown_rollout" && !model_is_unknown()) {
                code = exit_ok;
                return json(nullptr);
            }
        }
        if (r && r->status < 300) {
            auto j = parse_json(r->body);
            if (!j.is_discarded()) {
                code = exit_ok;
                return j;
            }
        }
        return call("GET", target, nullptr, code);  // says what went wrong
    }

    // A model without a rollout: its versions, weights and live metrics.
    void render_fixed(const std::string& model, const json& metrics) {
        out_ << "Model:       " << model << "\n";
        out_ << "Rollout:     none (the config's fixed split; `stagegatectl start " << model
             << " -f ROLLOUT.json` starts one)\n\n";
        std::vector<std::vector<std::string>> rows{
            {"VERSION", "ROLE", "WEIGHT", "RPS", "ERRORS", "P50", "P99"}};
        if (metrics.is_object() && metrics.contains("versions")) {
            for (const auto& v : metrics["versions"]) {
                const auto& w = v["window"];
                rows.push_back({str(v, "version"), v.value("stable", false) ? "stable" : "-",
                                percent(num(v, "weight_bp")), fixed(num(w, "rps"), 1),
                                fixed(num(w, "error_rate") * 100, 2) + "%",
                                millis(num(w["latency_seconds"], "p50")),
                                millis(num(w["latency_seconds"], "p99"))});
            }
        }
        print_table(out_, rows);
        render_streams(metrics);
    }

    int status() {
        const std::string model = model_arg();
        const std::string target = "/api/v1/rollouts/" + percent_encode(model);
        const bool tty = ::isatty(STDOUT_FILENO) && &out_ == &std::cout;
        for (long n = 1;; ++n) {
            int code = 0;
            auto st = rollout_or_none(target, code);
            if (!st) return code;
            auto metrics = call("GET", "/api/v1/models/" + percent_encode(model) + "/metrics",
                                nullptr, code);
            if (!metrics) return code;
            if (o_.json_output) {
                out_ << json{{"rollout", *st}, {"metrics", *metrics}}.dump(o_.watch ? -1 : 2)
                     << "\n";
            } else {
                if (o_.watch) {
                    if (tty) {
                        out_ << "\033[H\033[2J";  // redraw in place
                    } else if (n > 1) {
                        out_ << "----\n";
                    }
                }
                if (st->is_null()) {
                    render_fixed(model, *metrics);
                } else {
                    render_status(*st, *metrics);
                }
            }
            out_.flush();
            if (!o_.watch || (o_.count && n >= o_.count)) {
                return exit_ok;
            }
            std::this_thread::sleep_for(
                std::chrono::milliseconds(static_cast<long>(o_.interval_s * 1000)));
        }
    }

    int print_result(const json& j, const std::string& done) {
        if (o_.json_output) {
            out_ << j.dump(2) << "\n";
        } else {
            out_ << done << "\n";
            if (j.contains("last_reason")) {
                out_ << "  " << str(j, "last_reason") << "\n";
            }
        }
        return exit_ok;
    }

    // The whole of the -f file.
    std::string file_text() const {
        std::ifstream in(o_.file);
        if (!in) {
            throw usage_error{"cannot read " + o_.file};
        }
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }

    int start() {
        const std::string model = model_arg();
        if (o_.file.empty()) {
            throw usage_error{"start: -f ROLLOUT.json is required"};
        }
        auto spec = parse_json(file_text(), nullptr, /*comments=*/true);
        if (spec.is_discarded()) {
            throw usage_error{o_.file + " is not valid JSON"};
        }
        int code = 0;
        auto j = call("POST", "/api/v1/rollouts",
                      with_reason({{"model", model}, {"rollout", spec}}), code);
        if (!j) return code;
        return print_result(*j, "started rollout of " + model + " " + str(*j, "candidate"));
    }

    // pause, resume, promote, rollback, abort, restart: a POST named as the command.
    int command() {
        const std::string& name = o_.command;
        const std::string model = model_arg();
        json body = json::object();
        if (name == "promote" && o_.full) {
            body["full"] = true;
        }
        int code = 0;
        auto j = call("POST", "/api/v1/rollouts/" + percent_encode(model) + "/" + name,
                      with_reason(body), code);
        if (!j) return code;
        return print_result(*j, model + ": " + str(*j, "phase") + " at " + str(*j, "stage") +
                                    ", candidate " + percent(num(*j, "candidate_weight_bp")));
    }

    int weight() {
        const std::string model = model_arg(1);
        double pct = parse_number("weight", o_.positional[1], 0, 100);
        int code = 0;
        auto j = call("PUT", "/api/v1/rollouts/" + percent_encode(model) + "/weight",
                      with_reason({{"percent", pct}}), code);
        if (!j) return code;
        return print_result(*j, model + ": candidate at " +
                                    percent(num(*j, "candidate_weight_bp")) +
                                    " by hand; automation paused until resume");
    }

    void print_event(const json& e) {
        if (o_.json_output) {
            out_ << e.dump() << "\n";
        } else {
            out_ << clock_time(num(e, "time_ms")) << "  #"
                 << static_cast<long long>(num(e, "id")) << "  " << std::left << std::setw(12)
                 << str(e, "type") << " " << str(e, "text") << "\n";
        }
        out_.flush();
    }

    int rollout_report() {
        return report(model_arg(), o_.json_output, out_, [&](const std::string& t, int& code) {
            return call("GET", t, nullptr, code);
        });
    }

    int events() {
        const std::string model = model_arg();
        int code = 0;
        auto j = call("GET",
                      "/api/v1/rollouts/" + percent_encode(model) + "/events?limit=" +
                          std::to_string(o_.limit),
                      nullptr, code);
        if (!j) return code;
        std::uint64_t last = 0;
        for (const auto& e : (*j)["events"]) {
            print_event(e);
            last = std::max(last, e.value("id", std::uint64_t{0}));
        }
        if (!o_.follow) {
            return exit_ok;
        }
        long seen = 0;
        auto r = exchange(
            "GET", "/api/v1/events?model=" + percent_encode(model) + "&since=" + std::to_string(last),
            {}, [&](const std::string& data) {
                auto e = parse_json(data);
                if (!e.is_discarded()) {
                    print_event(e);
                    ++seen;
                }
                return !(o_.count && seen >= o_.count);
            });
        if (!r) {
            err_ << "stagegatectl: cannot follow events: " << r.error().message << "\n";
            return exit_unreachable;
        }
        if (r->status != 200) {
            report_refusal(r->status, parse_json(r->body), r->body);
            return exit_refused;
        }
        return exit_ok;
    }

    int feedback() {
        if (!o_.positional.empty() || o_.file.empty()) {
            throw usage_error{"feedback: -f LABELS is required and takes no other arguments"};
        }
        const std::string all = file_text();
        json labels = json::array();
        const auto first = all.find_first_not_of(" \t\r\n");
        if (first != std::string::npos && all[first] == '[') {
            labels = parse_json(all);
            if (labels.is_discarded() || !labels.is_array()) {
                throw usage_error{o_.file + " is not a valid JSON array"};
            }
        } else {
            std::istringstream lines(all);
            std::size_t number = 0;
            for (std::string line; std::getline(lines, line);) {
                ++number;
                if (line.find_first_not_of(" \t\r") == std::string::npos) {
                    continue;
                }
                auto item = parse_json(line);
                if (item.is_discarded()) {
                    throw usage_error{o_.file + ":" + std::to_string(number) +
                                      ": not valid JSON"};
                }
                labels.push_back(std::move(item));
            }
        }
        if (labels.empty()) {
            throw usage_error{o_.file + " holds no labels"};
        }
        constexpr std::size_t batch = 10000;
        json totals = {{"received", 0}, {"matched", 0}, {"late", 0},
                       {"unmatched", 0}, {"duplicate", 0}, {"ambiguous", 0},
                       {"unusable", 0}};
        for (std::size_t at = 0; at < labels.size(); at += batch) {
            json part(labels.begin() + static_cast<std::ptrdiff_t>(at),
                      labels.begin() + static_cast<std::ptrdiff_t>(std::min(labels.size(), at + batch)));
            int code = 0;
            auto j = call("POST", "/api/v1/feedback", with_reason({{"labels", part}}), code);
            if (!j) {
                if (at > 0) {
                    err_ << "stagegatectl: the first " << at << " labels were taken\n";
                }
                return code;
            }
            for (auto& [key, value] : totals.items()) {
                value = value.get<std::uint64_t>() + j->value(key, std::uint64_t{0});
            }
        }
        if (o_.json_output) {
            out_ << totals.dump(2) << "\n";
        } else {
            out_ << totals["received"] << " labels: " << totals["matched"] << " matched ("
                 << totals["late"] << " late), " << totals["unmatched"] << " unmatched, "
                 << totals["duplicate"] << " duplicate, " << totals["ambiguous"] << " ambiguous, "
                 << totals["unusable"] << " unusable\n";
        }
        return exit_ok;
    }

    int reload() {
        if (!o_.positional.empty()) {
            throw usage_error{"reload takes no arguments"};
        }
        int code = 0;
        auto j = call("POST", "/api/v1/config/reload", with_reason(json::object()), code);
        if (!j) return code;
        if (o_.json_output) {
            out_ << j->dump(2) << "\n";
        } else {
            out_ << "config reloaded: routes generation " << j->value("generation", 0) << "\n";
        }
        return exit_ok;
    }

    // `completion bash|zsh`: the script, for `source <(stagegatectl completion bash)`.
    int completion_script() {
        const std::string shell = o_.positional.size() == 1 ? o_.positional[0] : "";
        if (shell == "bash") {
            out_ << bash_completion_script();
        } else if (shell == "zsh") {
            out_ << zsh_completion_script();
        } else {
            throw usage_error{"completion: expects bash or zsh"};
        }
        return exit_ok;
    }

    // The completion scripts' helper (hidden): a model name a line, from the models list, else
    // from the rollouts list. Prints nothing when neither answers, so the shell offers nothing.
    int model_names() {
        struct source {
            const char* target;
            const char* list;
            const char* name;
        };
        for (const auto& from : {source{"/api/v1/models", "models", "name"},
                                 source{"/api/v1/rollouts", "rollouts", "model"}}) {
            auto r = exchange("GET", from.target, {});
            if (!r || r->status != 200) {
                continue;
            }
            const auto j = parse_json(r->body);
            if (!j.is_object() || !j.contains(from.list) || !j[from.list].is_array()) {
                continue;
            }
            for (const auto& item : j[from.list]) {
                if (const auto name = str(item, from.name); !name.empty()) {
                    out_ << name << "\n";
                }
            }
            return exit_ok;
        }
        return exit_unreachable;
    }

    // One call to the admin API (a stream of events when `on_event` is set).
    result<http_reply> exchange(const std::string& method, const std::string& target,
                                const std::string& body,
                                std::function<bool(const std::string&)> on_event = {}) {
        http_call c = base_;
        c.method = method;
        c.url.target = target;
        c.body = body;
        c.headers.emplace_back("Accept", on_event ? "text/event-stream" : "application/json");
        if (!body.empty()) {
            c.headers.emplace_back("Content-Type", "application/json");
        }
        if (on_event) {
            c.on_body = event_feed(std::move(on_event));
            // A feed lasts as long as it is followed: no bound on all it may bring.
            c.max_body = std::numeric_limits<std::size_t>::max();
        }
        return http_blocking(std::move(c));
    }

private:
    options o_;
    std::ostream& out_;
    std::ostream& err_;
    http_call base_;
    std::string model_;  // the command's MODEL, once read
};

namespace {

constexpr option_spec options_table[] = {
    {.long_name = "server", .short_name = 's', .value_name = "URL",
     .help = "admin API (default $STAGEGATE_SERVER or http://127.0.0.1:9901)",
     .connection = true},
    {.long_name = "token-file", .short_name = 0, .value_name = "FILE",
     .help = "bearer token (default $STAGEGATE_TOKEN_FILE)", .value = completes::file,
     .connection = true},
    {.long_name = "ca-file", .short_name = 0, .value_name = "FILE",
     .help = "https: trust this CA", .value = completes::file, .connection = true},
    {.long_name = "insecure", .short_name = 0, .value_name = nullptr,
     .help = "https: skip certificate verification", .connection = true},
    {.long_name = "timeout", .short_name = 0, .value_name = "SECONDS",
     .help = "per request (default 10)"},
    {.long_name = "output", .short_name = 'o', .value_name = "FORMAT",
     .help = "text (tables, the default) or json (the server's JSON)",
     .value = completes::choice, .choices = "text json"},
    {.long_name = "help", .short_name = 'h', .value_name = nullptr, .help = "print this help"},
    {.long_name = "file", .short_name = 'f', .value_name = "FILE",
     .help = "start: the rollout; feedback: the labels", .value = completes::file,
     .global = false},
    {.long_name = "reason", .short_name = 0, .value_name = "TEXT",
     .help = "recorded with a change in the event log", .global = false},
    {.long_name = "full", .short_name = 0, .value_name = nullptr,
     .help = "promote: straight to 100 %", .global = false},
    {.long_name = "watch", .short_name = 'w', .value_name = nullptr,
     .help = "status: redraw every --interval seconds", .global = false},
    {.long_name = "interval", .short_name = 0, .value_name = "SECONDS",
     .help = "status --watch: seconds between views (default 2)", .global = false},
    {.long_name = "count", .short_name = 0, .value_name = "N",
     .help = "status --watch, events --follow: stop after N views or events", .global = false},
    {.long_name = "follow", .short_name = 'F', .value_name = nullptr,
     .help = "events: then stream new events as they happen", .global = false},
    {.long_name = "limit", .short_name = 0, .value_name = "N",
     .help = "events: how many past events (default 20)", .global = false},
};

constexpr command_spec commands_table[] = {
    {"models", "", "models, versions, weights and stages", completes::nothing, "", "",
     [](session& s) { return s.models(); }},
    {"rollouts", "", "every rollout and its phase", completes::nothing, "", "",
     [](session& s) { return s.rollouts(); }},
    {"status", "MODEL [--watch] [--interval SECONDS] [--count N]",
     "a rollout's stage, weights, live metrics and gates (a model without one: its versions)",
     completes::model, "", "watch interval count", [](session& s) { return s.status(); }},
    {"start", "MODEL -f ROLLOUT.json", "start a rollout (the file holds candidate, stages, gates)",
     completes::model, "", "file reason", [](session& s) { return s.start(); }},
    {"pause", "MODEL", "hold at the current stage (gates still judged, rollback stays armed)",
     completes::model, "", "reason", [](session& s) { return s.command(); }},
    {"resume", "MODEL", "resume automation (also ends a manual weight)", completes::model, "",
     "reason", [](session& s) { return s.command(); }},
    {"promote", "MODEL [--full]", "widen to the next stage (--full: straight to 100 %)",
     completes::model, "", "full reason", [](session& s) { return s.command(); }},
    {"rollback", "MODEL", "send all traffic back to the stable version", completes::model, "",
     "reason", [](session& s) { return s.command(); }},
    {"abort", "MODEL", "stop the rollout without judging the candidate", completes::model, "",
     "reason", [](session& s) { return s.command(); }},
    {"restart", "MODEL", "start a rolled-back or aborted rollout again from its first stage",
     completes::model, "", "reason", [](session& s) { return s.command(); }},
    {"weight", "MODEL PERCENT", "set the candidate's weight by hand (pauses automation)",
     completes::model, "", "reason", [](session& s) { return s.weight(); }},
    {"events", "MODEL [--limit N] [--follow] [--count N]",
     "the rollout's history; --follow streams new events", completes::model, "",
     "limit follow count", [](session& s) { return s.events(); }},
    {"report", "MODEL", "each stage's time, requests, gate effects and decision",
     completes::model, "", "", [](session& s) { return s.rollout_report(); }},
    {"reload", "", "re-read the gateway's config file and apply it", completes::nothing, "",
     "reason", [](session& s) { return s.reload(); }},
    {"feedback", "-f LABELS",
     "send ground-truth labels: a JSON array or JSON lines of {\"request_id\", \"label\"} "
     "(posted 10000 at a time)",
     completes::nothing, "", "file reason", [](session& s) { return s.feedback(); }},
    {"completion", "bash|zsh", "print a shell completion script (see README)", completes::choice,
     "bash zsh", "", [](session& s) { return s.completion_script(); }, /*offline=*/true},
    {"__models", "", "model names, for the completion scripts", completes::nothing, "", "",
     [](session& s) { return s.model_names(); }, /*offline=*/false, /*hidden=*/true},
};

}  // namespace

std::span<const option_spec> option_table() { return options_table; }
std::span<const command_spec> command_table() { return commands_table; }

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    try {
        session s(parse_args(args), out, err);
        return s.run();
    } catch (const usage_error& e) {
        err << "stagegatectl: " << e.message << "\n(stagegatectl --help shows the usage)\n";
        return exit_usage;
    }
}

}  // namespace stagegate::ctl
