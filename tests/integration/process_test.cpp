// The real executables: --check-config, the demo config, and SIGTERM exiting 0.
#include "support/shell.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <set>
#include <string>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

namespace stagegate::test {
namespace {

std::string bin(const std::string& name) {
    return std::string(STAGEGATE_BIN_DIR) + "/" + name;
}

std::string source(const std::string& rel) {
    return std::string(STAGEGATE_SOURCE_DIR) + "/" + rel;
}

// Children not yet waited for: a failed assertion must not leave them running (ctest would
// wait for them). Each test that spawns declares a reaper.
std::set<pid_t>& live_children() {
    static std::set<pid_t> pids;
    return pids;
}
struct reaper {
    ~reaper() {
        for (pid_t pid : live_children()) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        live_children().clear();
    }
};

// Starts a process; with `log`, its stderr goes to that file.
pid_t spawn(const std::vector<std::string>& args, const std::string& log = "") {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (!log.empty()) {
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 2);
        }
        std::vector<char*> argv;
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    live_children().insert(pid);
    return pid;
}


// A stagegate-mockmodel process of `version` on an ephemeral port, its port file in `dir`.
std::pair<pid_t, std::uint16_t> spawn_mock(const std::string& dir, const std::string& version) {
    const std::string port_file = dir + "/" + version + ".port";
    pid_t pid = spawn({bin("stagegate-mockmodel"), "--version", version, "--port-file", port_file});
    return {pid, read_port_file(port_file)};
}

int wait_exit(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    live_children().erase(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(Process, CheckConfigAcceptsTheDemo) {
    auto r = run(bin("stagegate") + " --check-config " + source("config/demo.json"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("ok"), std::string::npos);
}

// The gateway's flags as Program_options reads them: a value after '=', an unknown option or a
// stray word named in the error (exit 2), and --help generated from the option descriptions.
TEST(Process, FlagsTakeValuesAfterAnEqualsSignAndNameWhatIsWrong) {
    auto attached = run(bin("stagegate") + " --check-config=" + source("config/demo.json"));
    EXPECT_EQ(attached.exit_code, 0) << attached.output;
    auto unknown = run(bin("stagegate") + " --frobnicate=1 --config x.json");
    EXPECT_EQ(unknown.exit_code, 2);
    EXPECT_NE(unknown.output.find("stagegate: unknown option --frobnicate\n"), std::string::npos)
        << unknown.output;
    auto stray = run(bin("stagegate") + " --config x.json extra");
    EXPECT_EQ(stray.exit_code, 2);
    EXPECT_NE(stray.output.find("unexpected argument extra"), std::string::npos) << stray.output;
    auto missing = run(bin("stagegate") + " --config");
    EXPECT_EQ(missing.exit_code, 2);
    EXPECT_NE(missing.output.find("--config needs a value"), std::string::npos) << missing.output;
    auto help = run(bin("stagegate") + " --help");
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.output.find("--admin-port-file FILE"), std::string::npos) << help.output;
}

TEST(Process, CheckConfigListsEveryProblemAndFails) {
    temp_dir tmp;
    const std::string dir = tmp.path;
    std::ofstream(dir + "/bad.json") << R"({"listeners": [{"port": 8080, "bogus": 1}],
      "models": [{"name": "m", "stable": "v1", "versions": [{"name": "v1", "endpoints": ["x"]}],
                  "traffic": {"weights": {"v1": 5}}}]})";
    auto r = run(bin("stagegate") + " --check-config " + dir + "/bad.json");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("/listeners/0/bogus: unknown key"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("/models/0/versions/0/endpoints/0"), std::string::npos) << r.output;
}

TEST(Process, ServesAndExitsZeroOnSigterm) {
    reaper reap;
    temp_dir tmp;
    const std::string dir = tmp.path;
    auto [mock, mock_port] = spawn_mock(dir, "v1");
    ASSERT_NE(mock_port, 0);
    std::ofstream(dir + "/gw.json") << R"({"listeners": [{"address": "127.0.0.1", "port": 0}],
      "admin": {"port": 0},
      "workers": 2,
      "models": [{"name": "demo", "stable": "v1",
                  "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" << mock_port << R"("]}]}]})";
    pid_t gw = spawn({bin("stagegate"), "--config", dir + "/gw.json", "--port-file",
                      dir + "/gw.port", "--admin-port-file", dir + "/admin.port"});
    auto port = read_port_file(dir + "/gw.port");
    ASSERT_NE(port, 0);
    auto r = request(port, "POST", "/v1/models/demo:predict", R"({"instances":[[1,2]]})");
    EXPECT_EQ(r.status, 200u) << r.error;
    EXPECT_EQ(r.header("x-stagegate-version"), "v1");
    // The admin listener asked for port 0 and says which one it got, in a file written before
    // the port file: it is there, whole, once the port file is.
    std::uint16_t admin = 0;
    std::ifstream admin_file(dir + "/admin.port");
    admin_file >> admin;
    ASSERT_NE(admin, 0);
    EXPECT_NE(admin, port);
    EXPECT_EQ(request(admin, "GET", "/healthz").status, 200u);
    ::kill(gw, SIGTERM);
    EXPECT_EQ(wait_exit(gw), 0);
    ::kill(mock, SIGTERM);
    EXPECT_EQ(wait_exit(mock), 0);
}

// A file for an admin port that does not exist would be read as one: refused at start.
TEST(Process, AdminPortFileNeedsAnAdminListener) {
    temp_dir tmp;
    const std::string dir = tmp.path;
    std::ofstream(dir + "/gw.json") << R"({"listeners": [{"address": "127.0.0.1", "port": 0}],
      "admin": {"enabled": false},
      "models": [{"name": "demo", "stable": "v1",
                  "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9"]}]}]})";
    auto r = run(bin("stagegate") + " --config " + dir + "/gw.json --admin-port-file " + dir +
                 "/admin.port");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("disables the admin listener"), std::string::npos) << r.output;
    EXPECT_FALSE(std::ifstream(dir + "/admin.port").is_open());
}

// nginx's reload signal: the config file is read again and applied; a broken file is refused
// and the gateway keeps serving what it had.
TEST(Process, SighupReloadsTheConfig) {
    reaper reap;
    temp_dir tmp;
    const std::string dir = tmp.path;
    const auto spawned = spawn_mock(dir, "v1");
    const pid_t mock = spawned.first;
    const std::uint16_t mock_port = spawned.second;  // clang 14 lambdas cannot capture bindings
    ASSERT_NE(mock_port, 0);
    auto write_config = [&](const std::string& second_model) {
        std::ofstream(dir + "/gw.json.tmp") << R"({"listeners": [{"address": "127.0.0.1", "port": 0}],
          "admin": {"port": 0}, "workers": 1,
          "models": [{"name": "demo", "stable": "v1",
                      "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" << mock_port << R"("]}]})"
                                            << second_model << "]}";
        std::rename((dir + "/gw.json.tmp").c_str(), (dir + "/gw.json").c_str());
    };
    write_config("");
    pid_t gw = spawn({bin("stagegate"), "--config", dir + "/gw.json", "--port-file",
                      dir + "/gw.port"},
                     dir + "/gw.log");
    auto port = read_port_file(dir + "/gw.port");
    ASSERT_NE(port, 0);
    EXPECT_EQ(request(port, "POST", "/v1/models/other:predict", "{}").status, 404u);
    auto log_has = [&](const std::string& text) {
        std::ifstream in(dir + "/gw.log");
        std::stringstream s;
        s << in.rdbuf();
        return s.str().find(text) != std::string::npos;
    };

    write_config(R"(, {"name": "other", "stable": "a",
                      "versions": [{"name": "a", "endpoints": ["127.0.0.1:)" +
                 std::to_string(mock_port) + R"("]}]})");
    ::kill(gw, SIGHUP);
    EXPECT_TRUE(wait_until(
        [&] { return request(port, "POST", "/v1/models/other:predict", "{}").status == 200; }));

    std::ofstream(dir + "/gw.json") << "{ not json";
    ::kill(gw, SIGHUP);
    // The refusal is logged; traffic to both models goes on.
    EXPECT_TRUE(wait_until([&] { return log_has("reload refused"); }));
    EXPECT_EQ(request(port, "POST", "/v1/models/other:predict", "{}").status, 200u);
    EXPECT_EQ(request(port, "POST", "/v1/models/demo:predict", "{}").status, 200u);
    ::kill(gw, SIGTERM);
    EXPECT_EQ(wait_exit(gw), 0);
    ::kill(mock, SIGTERM);
    EXPECT_EQ(wait_exit(mock), 0);
}

TEST(Process, KilledMidRolloutComesBackAtTheSameStage) {
    reaper reap;
    temp_dir tmp;
    const std::string dir = tmp.path;
    auto [v1, p1] = spawn_mock(dir, "v1");
    auto [v2, p2] = spawn_mock(dir, "v2");
    ASSERT_TRUE(p1 && p2);
    std::ofstream(dir + "/gw.json") << R"({"listeners": [{"address": "127.0.0.1", "port": 0}],
      "admin": {"port": 0}, "workers": 2, "state": {"dir": ")" << dir << R"(/state"},
      "logging": {"access_log": {"path": ")" << dir << R"(/access.log", "format": "%status% %version% %stage%"}},
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" << p1 << R"("]},
                     {"name": "v2", "endpoints": ["127.0.0.1:)" << p2 << R"("]}],
        "rollout": {"candidate": "v2", "interval_ms": 100,
          "stages": [{"weight_bp": 1000, "min_bake_ms": 200, "min_requests": 20},
                     {"weight_bp": 2500, "min_bake_ms": 3600000, "min_requests": 20}],
          "gates": {"min_requests": 20, "sequential": {"latency": false}}}}]})";
    // (Two mock processes on a loaded machine differ in latency for real; this test is about
    // resuming after SIGKILL, so the latency test is off and only errors are judged.)
    auto start_gateway = [&](const std::string& port_file) {
        pid_t pid = spawn({bin("stagegate"), "--config", dir + "/gw.json", "--port-file", port_file},
                          port_file + ".log");
        return std::make_pair(pid, read_port_file(port_file));
    };
    const auto started = start_gateway(dir + "/gw1.port");
    const pid_t gw = started.first;
    const std::uint16_t port = started.second;  // plain variables: see above
    ASSERT_NE(port, 0);
    std::string stage_seen;
    ASSERT_TRUE(wait_until(
        [&] {
            auto r = request(port, "POST", "/v1/models/m:predict", R"({"instances":[[1]]})");
            stage_seen = r.header("x-stagegate-stage");
            return stage_seen == "canary-25";
        },
        std::chrono::seconds(60)))
        << "last stage seen: " << stage_seen << "\nevents:\n" << [&] {
               std::ifstream in(dir + "/state/events.jsonl");
               return std::string((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
           }();
    // The promotion is one line of the process log (what kubectl logs shows), and every
    // request one line of the access log, written while the process runs.
    auto file_text = [](const std::string& path) {
        std::ifstream in(path);
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    };
    std::string process_log;
    EXPECT_TRUE(wait_until([&] {
        process_log = file_text(dir + "/gw1.port.log");
        return process_log.find("event=promoted model=m candidate=v2 stage=canary-25") !=
               std::string::npos;
    })) << process_log;
    std::string access;
    EXPECT_TRUE(wait_until([&] {
        access = file_text(dir + "/access.log");
        return access.find("200 v2 canary-10\n") != std::string::npos &&
               access.find(" canary-25\n") != std::string::npos;
    })) << access;
    ::kill(gw, SIGKILL);
    EXPECT_EQ(wait_exit(gw), 128 + SIGKILL);

    auto [gw2, port2] = start_gateway(dir + "/gw2.port");
    ASSERT_NE(port2, 0);
    auto r = request(port2, "POST", "/v1/models/m:predict", R"({"instances":[[1]]})");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("x-stagegate-stage"), "canary-25");
    std::ifstream state(dir + "/state/rollout-m.json");
    std::string text((std::istreambuf_iterator<char>(state)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("\"stage_index\": 1"), std::string::npos) << text;
    ::kill(gw2, SIGTERM);
    EXPECT_EQ(wait_exit(gw2), 0);
    ::kill(v1, SIGTERM);
    ::kill(v2, SIGTERM);
    wait_exit(v1);
    wait_exit(v2);
}

}  // namespace
}  // namespace stagegate::test
