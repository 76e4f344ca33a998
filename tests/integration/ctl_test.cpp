// stagegatectl end to end against a running gateway: in process through ctl::run (output
// captured) and as the real executable.
#include "stagegate/ctl/ctl.hpp"
#include "support/admin.hpp"
#include "support/load.hpp"
#include "support/ports.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <sstream>
#include <sys/wait.h>
#include <thread>

namespace stagegate::test {
namespace {

struct ctl_result {
    int code = -1;
    std::string out;
    std::string err;
};

struct ctl_stack : admin_stack {
    using admin_stack::admin_stack;

    ctl_result run(std::vector<std::string> args, const std::string& token_file = "operator") {
        std::vector<std::string> full = {"--server", "http://127.0.0.1:" + std::to_string(admin)};
        if (!token_file.empty()) {
            full.push_back("--token-file");
            full.push_back(dir.path + "/" + token_file + ".token");
        }
        full.insert(full.end(), args.begin(), args.end());
        std::ostringstream out;
        std::ostringstream err;
        ctl_result r;
        r.code = ctl::run(full, out, err);
        r.out = out.str();
        r.err = err.str();
        return r;
    }
};

int count_of(const std::string& text, const std::string& needle) {
    int n = 0;
    for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) {
        ++n;
    }
    return n;
}

TEST(Ctl, ListsModelsAndRollouts) {
    ctl_stack s;
    auto models = s.run({"models"});
    EXPECT_EQ(models.code, 0) << models.err;
    EXPECT_NE(models.out.find("v1=95%* v2=5%"), std::string::npos) << models.out;
    EXPECT_NE(models.out.find("v2 progressing"), std::string::npos) << models.out;

    auto rollouts = s.run({"rollouts"}, "viewer");
    EXPECT_EQ(rollouts.code, 0);
    EXPECT_NE(rollouts.out.find("canary-5"), std::string::npos) << rollouts.out;

    auto as_json = s.run({"-o", "json", "rollouts"});
    auto j = nlohmann::json::parse(as_json.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << as_json.out;
    EXPECT_EQ(j["rollouts"][0]["model"], "m");
}

TEST(Ctl, StatusShowsStageWeightsMetricsAndGates) {
    ctl_stack s;
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(request(s.s.port, "POST", "/v1/models/m:predict", "{}").status, 200);
    }
    auto st = s.run({"status", "m"});
    EXPECT_EQ(st.code, 0) << st.err;
    for (const char* expected : {"Model:       m", "v2 replacing v1  [progressing]",
                                 "canary-5 5% (NOW)", "canary-25 25% (-)", "VERSION", "candidate",
                                 "Next decision in", "more candidate requests"}) {
        EXPECT_NE(st.out.find(expected), std::string::npos) << expected << "\n" << st.out;
    }
    // No version streamed: no stream figures.
    EXPECT_EQ(st.out.find("Streams"), std::string::npos) << st.out;
}

TEST(Ctl, StatusShowsStreamFiguresOnceAVersionHasStreamed) {
    ctl_stack s;
    for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(request(s.s.port, "POST", "/v1/chat/completions",
                          R"({"model":"m","stream":true,"messages":[]})")
                      .status,
                  200);
    }
    ctl_result st;
    EXPECT_TRUE(wait_until([&] {
        st = s.run({"status", "m"});
        return st.out.find("Streams (since the stage began):") != std::string::npos;
    })) << st.out;
    for (const char* expected : {"STREAMS", "TTFT P50", "TTFT P99", "ITL P99", "TOK/S P50",
                                 "FAILED"}) {
        EXPECT_NE(st.out.find(expected), std::string::npos) << expected << "\n" << st.out;
    }
}

TEST(Ctl, WatchRedrawsForEachRefresh) {
    ctl_stack s;
    auto w = s.run({"status", "m", "--watch", "--interval", "0.1", "--count", "3"});
    EXPECT_EQ(w.code, 0) << w.err;
    EXPECT_EQ(count_of(w.out, "Model:       m"), 3) << w.out;
    EXPECT_EQ(count_of(w.out, "----\n"), 2) << w.out;
}

TEST(Ctl, CommandsChangeTheRolloutAndRecordTheReason) {
    ctl_stack s;
    auto paused = s.run({"pause", "m", "--reason", "looking at drift"});
    EXPECT_EQ(paused.code, 0) << paused.err;
    EXPECT_NE(paused.out.find("m: paused at canary-5"), std::string::npos) << paused.out;

    auto again = s.run({"pause", "m"});
    EXPECT_EQ(again.code, ctl::exit_refused);
    EXPECT_NE(again.err.find("409 invalid_state"), std::string::npos) << again.err;

    EXPECT_EQ(s.run({"resume", "m"}).code, 0);
    EXPECT_EQ(s.run({"promote", "m"}).code, 0);
    EXPECT_EQ(body_of(api(s.admin, "GET", "/api/v1/rollouts/m"))["stage"], "canary-25");
    auto weight = s.run({"weight", "m", "12.5"});
    EXPECT_EQ(weight.code, 0) << weight.err;
    EXPECT_EQ(body_of(api(s.admin, "GET", "/api/v1/rollouts/m"))["candidate_weight_bp"], 1250);
    EXPECT_EQ(s.run({"promote", "m", "--full"}).code, 0);
    EXPECT_EQ(body_of(api(s.admin, "GET", "/api/v1/rollouts/m"))["phase"], "completed");

    auto events = s.run({"events", "m"});
    EXPECT_EQ(events.code, 0);
    EXPECT_NE(events.out.find("by alice (looking at drift)"), std::string::npos) << events.out;
    EXPECT_EQ(count_of(events.out, "\n"), 6) << events.out;  // started + 5 commands

    auto viewer = s.run({"rollback", "m"}, "viewer");
    EXPECT_EQ(viewer.code, ctl::exit_refused);
    EXPECT_NE(viewer.err.find("403 forbidden"), std::string::npos) << viewer.err;
}

// A short real rollout: the controller widens canary-20 to canary-50 on client traffic, an
// operator rolls it back there; the report (API, ctl's table and -o json) tells both stages,
// and is the same after the gateway restarts from its state directory.
TEST(Ctl, ReportTellsEachStageOfARealRolloutAndIsTheSameAfterARestart) {
    config::gateway saved;
    ctl_stack s(true, [&](config::gateway& c) {
        auto& r = *c.models[0].rollout_spec;
        r.stages = {stage(2000), stage(5000)};
        r.stages[0].min_bake = 200ms;  // canary-20 widens after 30 candidate answers
        r.stages[0].min_requests = 30;
        r.gates.min_requests = 30;
        r.gates.max_error_rate = 0.05;
        // Two mock servers on a loaded machine differ in latency for real: this test is about
        // the report, not the latency test.
        r.gates.sequential_latency = false;
        saved = c;
    });
    {
        load traffic(s.s.port, 1, header_list{}, 2ms);
        ASSERT_TRUE(wait_until(
            [&] { return s.s.gateway->rollout_status("m")["stage"] == "canary-50"; }, 30s))
            << s.s.gateway->rollout_status("m").dump(2);
    }
    auto rolled_back = s.run({"rollback", "m", "--reason", "seen enough"});
    ASSERT_EQ(rolled_back.code, 0) << rolled_back.err;

    const auto report = body_of(api(s.admin, "GET", "/api/v1/rollouts/m/report", "", viewer_token));
    ASSERT_TRUE(report.is_object()) << report;
    EXPECT_EQ(report["phase"], "rolled_back") << report.dump(2);
    EXPECT_EQ(report["candidate"], "v2");
    EXPECT_EQ(report["stable"], "v1");
    EXPECT_EQ(report["complete_history"], true);
    EXPECT_FALSE(report["ended_ms"].is_null());
    const auto& stages = report["stages"];
    ASSERT_EQ(stages.size(), 2u) << report.dump(2);
    EXPECT_EQ(stages[0]["name"], "canary-20");
    EXPECT_GE(stages[0]["candidate_requests"].get<std::uint64_t>(), 30u) << report.dump(2);
    EXPECT_GT(stages[0]["stable_requests"].get<std::uint64_t>(), 0u) << report.dump(2);
    EXPECT_GE(stages[0]["seconds"].get<double>(), 0.2) << report.dump(2);  // its bake time
    EXPECT_EQ(stages[0]["decision"]["type"], "promoted") << report.dump(2);
    EXPECT_EQ(stages[0]["decision"]["next_stage"], "canary-50");
    ASSERT_FALSE(stages[0]["gates"].empty()) << report.dump(2);
    for (const auto& g : stages[0]["gates"]) {
        EXPECT_NE(g["verdict"], "fail") << g.dump();
        EXPECT_TRUE(g.contains("candidate_low") && g.contains("ratio")) << g.dump();
    }
    EXPECT_EQ(stages[1]["name"], "canary-50");
    EXPECT_EQ(stages[1]["current"], false);
    EXPECT_EQ(stages[1]["decision"]["command"], "rollback") << report.dump(2);
    EXPECT_EQ(stages[1]["decision"]["actor"], "alice");
    EXPECT_EQ(stages[1]["decision"]["reason"], "seen enough");

    auto table = s.run({"report", "m"}, "viewer");
    EXPECT_EQ(table.code, 0) << table.err;
    for (const char* expected :
         {"Rollout:   v2 replacing v1  [rolled_back]", "STAGE", "CANDIDATE REQS", "DECISION",
          "promoted to canary-50", "rollback by alice", "error_rate", "CANDIDATE INTERVAL",
          "decision: promoted m v2 at canary-20"}) {
        EXPECT_NE(table.out.find(expected), std::string::npos) << expected << "\n" << table.out;
    }
    auto as_json = s.run({"-o", "json", "report", "m"});
    EXPECT_EQ(nlohmann::json::parse(as_json.out, nullptr, false), report) << as_json.out;

    // A restart from the same state directory: the finished rollout's report is unchanged.
    s.s.gateway.reset();
    s.s.gateway = std::make_unique<app::gateway>(saved);
    ASSERT_TRUE(s.s.gateway->start());
    s.admin = s.s.gateway->admin_port();
    EXPECT_EQ(body_of(api(s.admin, "GET", "/api/v1/rollouts/m/report")), report);
}

TEST(Ctl, StartsARolloutFromAFile) {
    ctl_stack s(false);
    write_file(s.dir.path + "/rollout.json", R"({
      // comments are fine here, as in the config
      "candidate": "v2", "stages": [{"weight_bp": 2000, "min_bake_ms": 3600000}]})");
    auto started = s.run({"start", "m", "-f", s.dir.path + "/rollout.json", "--reason", "new"});
    EXPECT_EQ(started.code, 0) << started.err;
    EXPECT_EQ(body_of(api(s.admin, "GET", "/api/v1/rollouts/m"))["candidate_weight_bp"], 2000);

    write_file(s.dir.path + "/bad.json", R"({"candidate": "v7", "stages": []})");
    ASSERT_EQ(s.run({"abort", "m"}).code, 0);
    auto bad = s.run({"start", "m", "-f", s.dir.path + "/bad.json"});
    EXPECT_EQ(bad.code, ctl::exit_refused);
    EXPECT_NE(bad.err.find("/rollout/candidate"), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("/rollout/stages"), std::string::npos) << bad.err;
}

TEST(Ctl, SendsFeedbackFromJsonLines) {
    ctl_stack s(false, [](config::gateway& c) {
        config::predictions p;
        p.value = "/predictions/0";
        p.feedback = true;
        c.models[0].prediction = p;
    });
    for (const char* id : {"r1", "r2", "r3"}) {
        auto r = request(s.s.port, "POST", "/v1/models/m:predict", R"({"instances":[[1,2]]})",
                         {{"X-Request-Id", id}});
        ASSERT_EQ(r.status, 200u);
    }
    write_file(s.dir.path + "/labels.jsonl", "{\"request_id\": \"r1\", \"label\": 0.8}\n\n"
                                             "{\"request_id\": \"r2\", \"label\": 0.9}\n"
                                             "{\"request_id\": \"nope\", \"label\": 1}\n");
    auto sent = s.run({"feedback", "-f", s.dir.path + "/labels.jsonl"});
    EXPECT_EQ(sent.code, 0) << sent.err;
    EXPECT_NE(sent.out.find("3 labels: 2 matched (0 late), 1 unmatched, 0 duplicate"),
              std::string::npos)
        << sent.out;
    write_file(s.dir.path + "/bad.jsonl", "{\"request_id\": \"r3\"}\n");
    auto bad = s.run({"feedback", "-f", s.dir.path + "/bad.jsonl"});
    EXPECT_EQ(bad.code, ctl::exit_refused);
    EXPECT_NE(bad.err.find("/labels/0/label"), std::string::npos) << bad.err;
    EXPECT_EQ(s.run({"feedback", "-f", s.dir.path + "/bad.jsonl"}, "viewer").code,
              ctl::exit_refused);
    EXPECT_EQ(s.run({"feedback"}).code, ctl::exit_usage);
}

TEST(Ctl, FollowsEventsLive) {
    ctl_stack s;
    ctl_result followed;
    std::atomic<bool> done{false};
    std::thread follower([&] {
        followed = s.run({"events", "m", "--follow", "--count", "2"});
        done = true;
    });
    // The follower prints the history, then streams from the last id it printed; commands go
    // on until it has streamed two, however the two steps interleave with them.
    bool paused = false;
    EXPECT_TRUE(wait_until([&] {
        api(s.admin, "POST", std::string("/api/v1/rollouts/m/") + (paused ? "resume" : "pause"));
        paused = !paused;
        return done.load();
    }));
    follower.join();
    EXPECT_EQ(followed.code, 0) << followed.err;
    EXPECT_GE(count_of(followed.out, "command"), 2) << followed.out;
}

TEST(Ctl, ExitCodesForUsageRefusalAndUnreachable) {
    ctl_stack s;
    auto unknown = s.run({"status", "nope"});
    EXPECT_EQ(unknown.code, ctl::exit_refused);
    EXPECT_NE(unknown.err.find("404"), std::string::npos);

    EXPECT_EQ(s.run({"bogus"}).code, ctl::exit_usage);
    EXPECT_EQ(s.run({"status"}).code, ctl::exit_usage);
    EXPECT_EQ(s.run({"weight", "m", "150"}).code, ctl::exit_usage);
    EXPECT_EQ(s.run({"--frobnicate", "models"}).code, ctl::exit_usage);
    EXPECT_EQ(s.run({"models"}, "missing").code, ctl::exit_usage);
    EXPECT_EQ(s.run({"models"}, "").code, ctl::exit_refused);  // no token: 401

    std::ostringstream out;
    std::ostringstream err;
    refused_port nobody;  // held: no other test's server can answer on it
    const int code = ctl::run(
        {"--server", "http://127.0.0.1:" + std::to_string(nobody.port()), "models"}, out, err);
    EXPECT_EQ(code, ctl::exit_unreachable);
    EXPECT_NE(err.str().find("cannot reach"), std::string::npos) << err.str();
    EXPECT_EQ(ctl::run({"--server", "ftp://x", "models"}, out, err), ctl::exit_usage);
}

// GNU style, as kubectl and curl take them: an option's value may follow it after '='.
TEST(Ctl, OptionValuesMayFollowAnEqualsSign) {
    ctl_stack s;
    std::ostringstream out;
    std::ostringstream err;
    const int code = ctl::run({"--server=http://127.0.0.1:" + std::to_string(s.admin),
                               "--token-file=" + s.dir.path + "/operator.token", "--output=json",
                               "--timeout=5", "rollouts"},
                              out, err);
    EXPECT_EQ(code, 0) << err.str();
    auto j = nlohmann::json::parse(out.str(), nullptr, false);
    ASSERT_TRUE(j.is_object()) << out.str();
    EXPECT_EQ(j["rollouts"][0]["model"], "m");

    auto paused = s.run({"pause", "m", "--reason=a=b c"});  // only the first '=' splits
    EXPECT_EQ(paused.code, 0) << paused.err;
    auto events = s.run({"events", "m", "--limit=1"});
    EXPECT_EQ(events.code, 0) << events.err;
    EXPECT_EQ(count_of(events.out, "\n"), 1) << events.out;
    EXPECT_NE(events.out.find("by alice (a=b c)"), std::string::npos) << events.out;
    auto watch = s.run({"status", "m", "--watch", "--interval=0.1", "--count=2"});
    EXPECT_EQ(watch.code, 0) << watch.err;
    EXPECT_EQ(count_of(watch.out, "Model:       m"), 2) << watch.out;

    auto flag = s.run({"--insecure=yes", "models"});
    EXPECT_EQ(flag.code, ctl::exit_usage);
    EXPECT_NE(flag.err.find("--insecure takes no value"), std::string::npos) << flag.err;
    EXPECT_EQ(s.run({"--timeout=", "models"}).code, ctl::exit_usage);
    EXPECT_EQ(s.run({"--bogus=1", "models"}).code, ctl::exit_usage);
}

// The server answers "no rollout" for a model it does not have at all; the CLI tells them apart.
TEST(Ctl, AnUnknownModelIsSaidToBeUnknown) {
    ctl_stack s(true, [](config::gateway& c) {
        auto fixed = c.models[0];
        fixed.name = "fixed";
        fixed.rollout_spec.reset();
        c.models.push_back(fixed);
    });
    for (const char* command : {"status", "pause", "events"}) {
        auto unknown = s.run({command, "nope"});
        EXPECT_EQ(unknown.code, ctl::exit_refused) << command;
        EXPECT_NE(unknown.err.find("unknown model \"nope\" (404 unknown_model)"),
                  std::string::npos) << command << ": " << unknown.err;
        EXPECT_EQ(unknown.err.find("has no rollout"), std::string::npos) << unknown.err;
    }
    // A model with a fixed split and no rollout: its status is its versions' live view.
    auto fixed = s.run({"status", "fixed"});
    EXPECT_EQ(fixed.code, 0) << fixed.err;
    EXPECT_NE(fixed.out.find("Rollout:     none"), std::string::npos) << fixed.out;
    EXPECT_NE(fixed.out.find("VERSION"), std::string::npos) << fixed.out;
    EXPECT_NE(fixed.out.find("stable"), std::string::npos) << fixed.out;
    auto as_json = s.run({"-o", "json", "status", "fixed"});
    EXPECT_EQ(as_json.code, 0) << as_json.err;
    EXPECT_TRUE(nlohmann::json::parse(as_json.out)["rollout"].is_null()) << as_json.out;
    // Commands that need a rollout still say there is none.
    auto pause = s.run({"pause", "fixed"});
    EXPECT_EQ(pause.code, ctl::exit_refused);
    EXPECT_NE(pause.err.find("model \"fixed\" has no rollout (404 unknown_rollout)"),
              std::string::npos) << pause.err;
}

TEST(Ctl, ATokenRefusalSaysWhichFlagOrFile) {
    ctl_stack s;
    auto none = s.run({"models"}, "");
    EXPECT_EQ(none.code, ctl::exit_refused);
    EXPECT_NE(none.err.find("pass --token-file FILE"), std::string::npos) << none.err;
    EXPECT_NE(none.err.find("401 missing_token"), std::string::npos) << none.err;
    EXPECT_EQ(none.err.find("Authorization"), std::string::npos) << none.err;

    write_file(s.dir.path + "/wrong.token", "not-the-right-token-0123456789\n");
    auto wrong = s.run({"models"}, "wrong");
    EXPECT_EQ(wrong.code, ctl::exit_refused);
    EXPECT_NE(wrong.err.find("401 invalid_token"), std::string::npos) << wrong.err;
    EXPECT_NE(wrong.err.find(s.dir.path + "/wrong.token (--token-file)"), std::string::npos)
        << wrong.err;
}

TEST(Ctl, SpeaksHttpsAndVerifiesTheServer) {
    auto cert = make_test_certificate();
    ctl_stack s(true, [&](config::gateway& c) {
        c.admin_listener.tls = config::tls_server{cert.cert_file, cert.key_file};
    });
    const std::string url = "https://127.0.0.1:" + std::to_string(s.admin);
    std::ostringstream out;
    std::ostringstream err;
    auto run = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = {"--server", url, "--token-file",
                                         s.dir.path + "/operator.token"};
        args.insert(args.end(), extra.begin(), extra.end());
        out.str("");
        err.str("");
        return ctl::run(args, out, err);
    };
    EXPECT_EQ(run({"--ca-file", cert.cert_file, "rollouts"}), 0) << err.str();
    EXPECT_NE(out.str().find("progressing"), std::string::npos);
    // The system trust store does not know the test CA: refused before any request is sent.
    EXPECT_EQ(run({"rollouts"}), ctl::exit_unreachable);
    EXPECT_NE(err.str().find("TLS handshake failed"), std::string::npos) << err.str();
    EXPECT_EQ(run({"--insecure", "rollouts"}), 0) << err.str();
}

// The options as Boost.Program_options reads them: an error names the option, and --help is
// written from the command and option tables (the completion command included).
TEST(Ctl, OptionErrorsNameTheOptionAndHelpIsTheTable) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(ctl::run({"--timeout", "1", "models", "--timeout=2"}, out, err), ctl::exit_usage);
    EXPECT_NE(err.str().find("--timeout given more than once"), std::string::npos) << err.str();
    err.str("");
    EXPECT_EQ(ctl::run({"models", "--server"}, out, err), ctl::exit_usage);
    EXPECT_NE(err.str().find("--server needs a value"), std::string::npos) << err.str();
    err.str("");
    EXPECT_EQ(ctl::run({"weight", "m", "-5"}, out, err), ctl::exit_usage);  // a number, not -5
    EXPECT_NE(err.str().find("weight expects a number from 0 to 100, got \"-5\""),
              std::string::npos) << err.str();
    EXPECT_EQ(ctl::run({"--help"}, out, err), ctl::exit_ok);
    for (const char* line : {"completion bash|zsh", "restart MODEL", "--token-file FILE",
                             "--watch", "command options:"}) {
        EXPECT_NE(out.str().find(line), std::string::npos) << line << " in\n" << out.str();
    }
}

// What a shell completes with the bash script sourced: `line` typed (up to the cursor), then
// the completion function; its candidates, sorted, a line each.
std::string bash_completions(const std::string& line) {
    const std::string ctl = std::string(STAGEGATE_BIN_DIR) + "/stagegatectl";
    const std::string cmd =
        "bash -c 'source <(\"$0\" completion bash) && COMP_LINE=$1 && COMP_POINT=${#1} && "
        "_stagegatectl && for w in \"${COMPREPLY[@]}\"; do echo \"$w\"; done | sort' " +
        ctl + " '" + ctl + " " + line + "' 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) {
        out.append(buf, n);
    }
    ::pclose(p);
    return out;
}

TEST(Ctl, BashCompletionOffersCommandsOptionsAndTheServersModels) {
    ctl_stack s;
    EXPECT_EQ(bash_completions("sta"), "start\nstatus\n");
    EXPECT_EQ(bash_completions("status m --w"), "--watch\n");  // status's own option
    EXPECT_EQ(bash_completions("-o j"), "json\n");
    EXPECT_EQ(bash_completions("completion "), "bash\nzsh\n");
    // Models from the server the line names (its URL holds ':', which COMP_WORDS splits at).
    const std::string server = "--server=http://127.0.0.1:" + std::to_string(s.admin) +
                               " --token-file " + s.dir.path + "/viewer.token";
    EXPECT_EQ(bash_completions(server + " pause "), "m\n");
    EXPECT_EQ(bash_completions(server + " events m "), "");  // MODEL is given already
    refused_port nobody;
    EXPECT_EQ(bash_completions("--server http://127.0.0.1:" + std::to_string(nobody.port()) +
                               " status "),
              "");
}

TEST(Ctl, TheExecutableTalksToTheGateway) {
    ctl_stack s;
    const std::string cmd = std::string(STAGEGATE_BIN_DIR) + "/stagegatectl --server http://127.0.0.1:" +
                            std::to_string(s.admin) + " --token-file " + s.dir.path +
                            "/operator.token rollouts 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) {
        out.append(buf, n);
    }
    const int status = ::pclose(p);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
    EXPECT_NE(out.find("MODEL"), std::string::npos) << out;
    EXPECT_NE(out.find("progressing"), std::string::npos) << out;
}

}  // namespace
}  // namespace stagegate::test
