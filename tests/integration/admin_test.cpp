// The admin API over real sockets: authentication and roles, every endpoint with good and bad
// input, the live event feed, concurrent commands, config reload under load, TLS.
#include "support/admin.hpp"
#include "support/load.hpp"
#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <csignal>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <latch>
#include <set>
#include <sstream>
#include <thread>

namespace stagegate::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

TEST(AdminAuth, HealthNeedsNoTokenApiDoes) {
    admin_stack a;
    EXPECT_EQ(api(a.admin, "GET", "/healthz", "", "").status, 200);
    EXPECT_EQ(api(a.admin, "GET", "/readyz", "", "").status, 200);
    EXPECT_EQ(api(a.admin, "GET", "/metrics", "", "").status, 200);  // open by default

    auto missing = api(a.admin, "GET", "/api/v1/models", "", "");
    EXPECT_EQ(missing.status, 401);
    EXPECT_EQ(code_of(missing), "missing_token");
    EXPECT_EQ(missing.header("www-authenticate"), "Bearer realm=\"stagegate-admin\"");

    auto wrong = api(a.admin, "GET", "/api/v1/models", "", "not-the-token-at-all-x");
    EXPECT_EQ(wrong.status, 401);
    EXPECT_EQ(code_of(wrong), "invalid_token");
    // A prefix of a real token is not that token.
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/models", "", operator_token.substr(0, 10)).status, 401);
    auto basic = request(a.admin, "GET", "/api/v1/models", "",
                         {{"Authorization", "Basic " + operator_token}});
    EXPECT_EQ(basic.status, 401);

    EXPECT_EQ(api(a.admin, "GET", "/api/v1/models", "", viewer_token).status, 200);
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/rollouts/m", "", viewer_token).status, 200);
    auto denied = api(a.admin, "POST", "/api/v1/rollouts/m/pause", "", viewer_token);
    EXPECT_EQ(denied.status, 403);
    EXPECT_EQ(code_of(denied), "forbidden");
    EXPECT_EQ(body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["phase"], "progressing");

    auto paused = api(a.admin, "POST", "/api/v1/rollouts/m/pause", R"({"reason":"look"})");
    EXPECT_EQ(paused.status, 200) << paused.body;
    EXPECT_EQ(body_of(paused)["phase"], "paused");
}

TEST(AdminAuth, MetricsCanRequireAToken) {
    admin_stack a(false, [](config::gateway& c) { c.admin_listener.metrics_need_token = true; });
    EXPECT_EQ(api(a.admin, "GET", "/metrics", "", "").status, 401);
    auto r = api(a.admin, "GET", "/metrics", "", viewer_token);
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("stagegate_build_info"), std::string::npos);
}

TEST(AdminAuth, TokenFilesAreCheckedAtStart) {
    temp_dir dir;
    write_file(dir.path + "/short.token", "abc\n");
    auto v1 = start_mock("v1");
    auto v2 = start_mock("v2");
    auto cfg = stack_config(v1->port(), v2->port(), 0);
    cfg.admin_listener.tokens = {{"x", config::admin_role::operator_, dir.path + "/short.token"}};
    {
        app::gateway gw(cfg);
        auto started = gw.start();
        ASSERT_FALSE(started);
        EXPECT_EQ(started.error().code, "token_too_weak");
        EXPECT_EQ(started.error().message.find("abc"), std::string::npos);  // never the token
    }
    // The placeholder deploy/kubernetes/secret.yaml ships: the pod does not start with it.
    write_file(dir.path + "/operator", "replace-me-operator-token-0000000000\n");
    cfg.admin_listener.tokens = {{"x", config::admin_role::operator_, dir.path + "/operator"}};
    {
        app::gateway gw(cfg);
        auto started = gw.start();
        ASSERT_FALSE(started);
        EXPECT_EQ(started.error().code, "token_placeholder");
        EXPECT_NE(started.error().message.find("holds a placeholder"), std::string::npos);
    }
    cfg.admin_listener.tokens = {{"x", config::admin_role::operator_, dir.path + "/missing"}};
    app::gateway gw(cfg);
    auto started = gw.start();
    ASSERT_FALSE(started);
    EXPECT_EQ(started.error().code, "token_unreadable");
}

TEST(AdminApi, ModelsAndTheirMetrics) {
    admin_stack a;
    auto list = body_of(api(a.admin, "GET", "/api/v1/models"));
    ASSERT_EQ(list["models"].size(), 1u);
    const auto& m = list["models"][0];
    EXPECT_EQ(m["name"], "m");
    EXPECT_EQ(m["stage"], "canary-5");
    EXPECT_EQ(m["rollout"]["candidate"], "v2");
    EXPECT_EQ(m["versions"][1]["weight_bp"], 500);
    EXPECT_EQ(m["versions"][0]["endpoints"].size(), 1u);

    EXPECT_EQ(body_of(api(a.admin, "GET", "/api/v1/models/m"))["name"], "m");
    auto unknown = api(a.admin, "GET", "/api/v1/models/nope");
    EXPECT_EQ(unknown.status, 404);
    EXPECT_EQ(code_of(unknown), "unknown_model");

    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(request(a.s.port, "POST", "/v1/models/m:predict", "{}",
                          {{"X-Stagegate-Force-Version", "v1"}})
                      .status,
                  200);
    }
    // A worker counts an answer just after sending it: wait for the count, never read once.
    std::uint64_t total = 0;
    EXPECT_TRUE(wait_until([&] {
        auto metrics = body_of(api(a.admin, "GET", "/api/v1/models/m/metrics"));
        total = 0;
        for (const auto& v : metrics["versions"]) {
            total += v["since_stage_start"]["requests"].get<std::uint64_t>();
        }
        return metrics["versions"].size() == 2u && total == 5u;
    })) << total;
}

// 100,000 nested brackets in a 200 KB body (under the 1 MiB limit) once overflowed the stack
// of a recursive walk over the parsed tree and took the whole gateway down.
TEST(AdminApi, ADeeplyNestedBodyIsRefusedAndTheGatewayKeepsServing) {
    admin_stack a(false, [](config::gateway& c) { c.admin_listener.max_body_bytes = 1 << 20; });
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    auto r = api(a.admin, "POST", "/api/v1/rollouts", R"({"model":"m","rollout":)" + deep + "}");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(code_of(r), "invalid_json");
    EXPECT_NE(r.body.find("nests 100001 levels deep; at most 64 are accepted"), std::string::npos)
        << r.body;
    EXPECT_EQ(api(a.admin, "GET", "/healthz", "", "").status, 200);
    EXPECT_EQ(request(a.s.port, "POST", "/v1/models/m:predict", "{}").status, 200u);
}

TEST(AdminApi, UnknownPathsAndWrongMethods) {
    admin_stack a;
    auto r = api(a.admin, "GET", "/api/v1/nothing");
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(code_of(r), "not_found");
    EXPECT_EQ(api(a.admin, "GET", "/elsewhere", "", "").status, 404);

    auto wrong = api(a.admin, "DELETE", "/api/v1/rollouts/m");
    EXPECT_EQ(wrong.status, 405);
    EXPECT_EQ(code_of(wrong), "method_not_allowed");
    EXPECT_EQ(wrong.header("allow"), "GET, HEAD");
    auto get_command = api(a.admin, "GET", "/api/v1/rollouts/m/pause");
    EXPECT_EQ(get_command.status, 405);
    EXPECT_EQ(get_command.header("allow"), "POST");
    EXPECT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/weight", R"({"percent":1})").status, 405);
    EXPECT_EQ(api(a.admin, "POST", "/healthz").status, 405);
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/models/%zz").status, 400);

    // Allow names every method served at the path, in the route table's order.
    auto on_collection = api(a.admin, "DELETE", "/api/v1/rollouts");
    EXPECT_EQ(on_collection.status, 405);
    EXPECT_EQ(on_collection.header("allow"), "GET, HEAD, POST");
    EXPECT_EQ(api(a.admin, "PUT", "/readyz").header("allow"), "GET, HEAD");
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/models/m/metrics/more").status, 404);
    // A wrong method is a 405 for a viewer too, not a 403.
    EXPECT_EQ(api(a.admin, "DELETE", "/api/v1/rollouts/m", "", viewer_token).status, 405);
    // Without a token nothing under /api/v1/ says whether it exists.
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/nothing", "", "").status, 401);
    EXPECT_EQ(api(a.admin, "DELETE", "/api/v1/rollouts", "", "").status, 401);
}

TEST(AdminApi, RolloutCommandsWalkTheStateMachine) {
    admin_stack a;
    const std::string base = "/api/v1/rollouts/m/";
    auto status = [&] { return body_of(api(a.admin, "GET", "/api/v1/rollouts/m")); };

    auto st = status();
    EXPECT_EQ(st["phase"], "progressing");
    EXPECT_EQ(st["stage"], "canary-5");
    EXPECT_EQ(st["requests_needed"], 100);
    EXPECT_GT(st["bake_seconds_left"].get<double>(), 3000.0);
    EXPECT_TRUE(st.contains("next_evaluation_seconds"));

    EXPECT_EQ(api(a.admin, "POST", base + "pause").status, 200);
    auto again = api(a.admin, "POST", base + "pause");
    EXPECT_EQ(again.status, 409);
    EXPECT_EQ(code_of(again), "invalid_state");
    EXPECT_EQ(api(a.admin, "POST", base + "resume").status, 200);

    auto promoted = api(a.admin, "POST", base + "promote", R"({"reason":"looks good"})");
    ASSERT_EQ(promoted.status, 200) << promoted.body;
    EXPECT_EQ(body_of(promoted)["stage"], "canary-25");
    EXPECT_TRUE(wait_until([&] {
        auto m = body_of(api(a.admin, "GET", "/api/v1/models/m"));
        return m["versions"][1]["weight_bp"] == 2500;
    }));

    auto manual = api(a.admin, "PUT", base + "weight", R"({"percent": 12.5})");
    ASSERT_EQ(manual.status, 200) << manual.body;
    EXPECT_EQ(body_of(manual)["candidate_weight_bp"], 1250);
    EXPECT_EQ(body_of(manual)["phase"], "paused");
    EXPECT_EQ(api(a.admin, "PUT", base + "weight", R"({"weight_bp": 700})").status, 200);
    EXPECT_EQ(status()["candidate_weight_bp"], 700);

    auto full = api(a.admin, "POST", base + "promote", R"({"full": true})");
    ASSERT_EQ(full.status, 200);
    EXPECT_EQ(body_of(full)["phase"], "completed");
    EXPECT_EQ(body_of(full)["stable"], "v2");
    EXPECT_EQ(api(a.admin, "POST", base + "rollback").status, 409);
    EXPECT_EQ(api(a.admin, "POST", base + "restart").status, 409);

    auto missing = api(a.admin, "POST", "/api/v1/rollouts/nope/pause");
    EXPECT_EQ(missing.status, 404);
    EXPECT_EQ(code_of(missing), "unknown_rollout");
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/rollouts/nope").status, 404);
}

TEST(AdminApi, RollbackAbortAndRestart) {
    admin_stack a;
    const std::string base = "/api/v1/rollouts/m/";
    auto rolled = api(a.admin, "POST", base + "rollback", R"({"reason":"bad output"})");
    ASSERT_EQ(rolled.status, 200);
    EXPECT_EQ(body_of(rolled)["phase"], "rolled_back");
    EXPECT_EQ(body_of(rolled)["candidate_weight_bp"], 0);
    auto restarted = api(a.admin, "POST", base + "restart");
    ASSERT_EQ(restarted.status, 200);
    EXPECT_EQ(body_of(restarted)["phase"], "progressing");
    EXPECT_EQ(body_of(restarted)["stage"], "canary-5");
    EXPECT_EQ(body_of(api(a.admin, "POST", base + "abort"))["phase"], "aborted");
}

// 90,000 unknown keys cost 2.9 s of the control thread when every one was listed back.
TEST(AdminApi, ABodyOfManyUnknownFieldsNamesAFewAndCountsTheRest) {
    admin_stack a(false, [](config::gateway& c) { c.admin_listener.max_body_bytes = 1 << 20; });
    std::string body = "{";
    for (int i = 0; i < 90000; ++i) {
        body += "\"k" + std::to_string(i) + "\":1,";
    }
    body.back() = '}';
    auto r = api(a.admin, "POST", "/api/v1/rollouts/m/pause", body);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(code_of(r), "invalid_argument");
    const auto problems = body_of(r)["error"]["problems"];
    ASSERT_EQ(problems.size(), 21u) << r.body.substr(0, 300);
    EXPECT_EQ(problems.back()["message"], "89980 more unknown fields") << problems.back();
    EXPECT_EQ(api(a.admin, "GET", "/healthz", "", "").status, 200);
}

TEST(AdminApi, BadBodiesGetSpecificErrors) {
    admin_stack a;
    const std::string weight = "/api/v1/rollouts/m/weight";
    struct bad {
        std::string method, target, body, code, path;
        unsigned status;
    };
    const std::vector<bad> cases = {
        {"PUT", weight, R"({"weight_bp": 20000})", "invalid_argument", "/weight_bp", 400},
        {"PUT", weight, R"({"weight_bp": -1})", "invalid_argument", "/weight_bp", 400},
        {"PUT", weight, R"({"weight_bp": "50"})", "invalid_argument", "/weight_bp", 400},
        {"PUT", weight, R"({"percent": 101})", "invalid_argument", "/percent", 400},
        {"PUT", weight, R"({"percent": 1.234})", "invalid_argument", "/percent", 400},
        {"PUT", weight, R"({"percent": 5, "weight_bp": 500})", "invalid_argument", "", 400},
        {"PUT", weight, R"({})", "invalid_argument", "", 400},
        {"PUT", weight, R"({"weight_bp": 5, "bogus": 1})", "invalid_argument", "/bogus", 400},
        {"POST", "/api/v1/rollouts/m/pause", R"({"reason": 5})", "invalid_argument", "/reason", 400},
        {"POST", "/api/v1/rollouts/m/promote", R"({"full": "yes"})", "invalid_argument", "/full", 400},
        {"POST", "/api/v1/rollouts/m/pause", R"({"reason": "x")", "invalid_json", "", 400},
        {"POST", "/api/v1/rollouts/m/pause", R"([1,2])", "invalid_argument", "", 400},
        {"POST", "/api/v1/rollouts/m/pause", "{\"reason\":\"" + std::string(5000, 'x') + "\"}",
         "payload_too_large", "", 413},
        {"POST", "/api/v1/rollouts/m/pause", "{\"reason\":\"" + std::string(2000, 'x') + "\"}",
         "invalid_argument", "/reason", 400},
    };
    for (const auto& c : cases) {
        auto r = api(a.admin, c.method, c.target, c.body);
        EXPECT_EQ(r.status, c.status) << c.body.substr(0, 80) << " -> " << r.body;
        EXPECT_EQ(code_of(r), c.code) << c.body.substr(0, 80);
        EXPECT_EQ(path_of(r), c.path) << c.body.substr(0, 80);
    }
    // None of it changed anything.
    EXPECT_EQ(body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["phase"], "progressing");
    EXPECT_EQ(body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["candidate_weight_bp"], 500);
}

TEST(AdminApi, StartARolloutOverHttp) {
    admin_stack a(false);
    auto models = body_of(api(a.admin, "GET", "/api/v1/models"));
    EXPECT_TRUE(models["models"][0]["rollout"].is_null());

    const std::string spec = R"({"candidate":"v2","interval_ms":100,
        "stages":[{"weight_bp":1000,"min_bake_ms":3600000},{"weight_bp":5000}],
        "gates":{"max_error_rate":0.05}})";
    auto started = api(a.admin, "POST", "/api/v1/rollouts",
                       R"({"model":"m","reason":"ship it","rollout":)" + spec + "}");
    ASSERT_EQ(started.status, 201) << started.body;
    EXPECT_EQ(body_of(started)["stage"], "canary-10");
    EXPECT_TRUE(wait_until([&] {
        return body_of(api(a.admin, "GET", "/api/v1/models/m"))["versions"][1]["weight_bp"] ==
               1000;
    }));

    auto conflict = api(a.admin, "POST", "/api/v1/rollouts", R"({"model":"m","rollout":)" + spec + "}");
    EXPECT_EQ(conflict.status, 409);
    EXPECT_EQ(code_of(conflict), "rollout_active");

    auto unknown = api(a.admin, "POST", "/api/v1/rollouts", R"({"model":"nope","rollout":)" + spec + "}");
    EXPECT_EQ(unknown.status, 404);

    auto missing = api(a.admin, "POST", "/api/v1/rollouts", R"({"rollout": 3, "x": 1})");
    EXPECT_EQ(missing.status, 400);
    EXPECT_EQ(path_of(missing), "/x");

    auto no_model = api(a.admin, "POST", "/api/v1/rollouts", R"({"rollout": {}})");
    EXPECT_EQ(no_model.status, 400);
    EXPECT_EQ(path_of(no_model), "/model");

    ASSERT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/abort").status, 200);
    auto invalid = api(a.admin, "POST", "/api/v1/rollouts",
                       R"({"model":"m","rollout":{"candidate":"v9",
                           "stages":[{"weight_bp":500},{"weight_bp":400}]}})");
    EXPECT_EQ(invalid.status, 400);
    EXPECT_EQ(code_of(invalid), "invalid_rollout");
    std::set<std::string> paths;
    const auto invalid_body = body_of(invalid);
    for (const auto& p : invalid_body["error"]["problems"]) {
        paths.insert(p["path"].get<std::string>());
    }
    EXPECT_TRUE(paths.count("/rollout/candidate")) << invalid.body;
    EXPECT_TRUE(paths.count("/rollout/stages/1/weight_bp")) << invalid.body;

    auto typo = api(a.admin, "POST", "/api/v1/rollouts",
                    R"({"model":"m","rollout":{"candidate":"v2","stages":[{"weight_bp":500}],
                        "gatez":{}}})");
    EXPECT_EQ(typo.status, 400);
    EXPECT_EQ(path_of(typo), "/rollout/gatez");

    // After an abort the model takes a new rollout.
    EXPECT_EQ(api(a.admin, "POST", "/api/v1/rollouts", R"({"model":"m","rollout":)" + spec + "}")
                  .status,
              201);
}

TEST(AdminApi, EventsRecordWhoAndWhyAndPage) {
    admin_stack a;
    const std::string base = "/api/v1/rollouts/m/";
    ASSERT_EQ(api(a.admin, "POST", base + "pause", R"({"reason":"checking drift"})").status, 200);
    ASSERT_EQ(api(a.admin, "POST", base + "resume").status, 200);
    ASSERT_EQ(api(a.admin, "POST", base + "pause").status, 200);

    auto all = body_of(api(a.admin, "GET", base + "events", "", viewer_token));
    ASSERT_EQ(all["events"].size(), 4u) << all.dump();  // started + 3 commands
    EXPECT_TRUE(all["next_before"].is_null());
    const auto& pause = all["events"][1];
    EXPECT_EQ(pause["actor"], "alice");
    EXPECT_EQ(pause["reason"], "checking drift");
    EXPECT_EQ(pause["command"], "pause");

    auto page = body_of(api(a.admin, "GET", base + "events?limit=2"));
    ASSERT_EQ(page["events"].size(), 2u);
    EXPECT_EQ(page["events"][1]["id"], all["events"][3]["id"]);
    ASSERT_FALSE(page["next_before"].is_null());
    auto older = body_of(api(a.admin, "GET", base + "events?limit=2&before=" +
                                                 page["next_before"].dump()));
    ASSERT_EQ(older["events"].size(), 2u);
    EXPECT_EQ(older["events"][0]["id"], all["events"][0]["id"]);
    EXPECT_TRUE(older["next_before"].is_null());

    EXPECT_EQ(api(a.admin, "GET", base + "events?limit=0").status, 400);
    EXPECT_EQ(api(a.admin, "GET", base + "events?limit=x").status, 400);
    auto unknown_param = api(a.admin, "GET", base + "events?page=2");
    EXPECT_EQ(unknown_param.status, 400);
    EXPECT_EQ(path_of(unknown_param), "?page");
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/rollouts/nope/events").status, 404);
}

TEST(AdminApi, LiveEventFeedStreamsAndResumes) {
    admin_stack a;
    connection feed(a.admin);
    ASSERT_TRUE(feed.write_raw("GET /api/v1/events?model=m HTTP/1.1\r\nHost: x\r\n"
                               "Authorization: Bearer " + viewer_token + "\r\n\r\n"));
    auto head = feed.read_until(": stagegate event feed\n\n");
    ASSERT_NE(head.find("Content-Type: text/event-stream"), std::string::npos) << head;

    ASSERT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/pause", R"({"reason":"live"})").status, 200);
    auto first = feed.read_until("\n\n");
    ASSERT_NE(first.find("\"reason\":\"live\""), std::string::npos) << first;
    ASSERT_EQ(first.rfind("id: ", 0), 0u) << first;
    const auto paused_id = std::stoull(first.substr(4));

    ASSERT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/resume").status, 200);
    auto second = feed.read_until("\n\n");
    EXPECT_NE(second.find("\"command\":\"resume\""), std::string::npos) << second;

    // A follower that lost the connection resumes after the last id it saw.
    connection again(a.admin);
    ASSERT_TRUE(again.write_raw("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                "Bearer " + viewer_token + "\r\nLast-Event-ID: " +
                                std::to_string(paused_id) + "\r\n\r\n"));
    auto replay = again.read_until("\"command\":\"resume\"");
    EXPECT_NE(replay.find("\"command\":\"resume\""), std::string::npos) << replay;
    EXPECT_EQ(replay.find("\"reason\":\"live\""), std::string::npos) << replay;

    EXPECT_EQ(api(a.admin, "GET", "/api/v1/events", "", "").status, 401);
    auto head_only = api(a.admin, "HEAD", "/api/v1/events");
    EXPECT_EQ(head_only.status, 200);
    EXPECT_EQ(head_only.header("content-type"), "text/event-stream");
    EXPECT_EQ(api(a.admin, "GET", "/api/v1/events?since=x").status, 400);
}

// Many operators at once: every acknowledged command is one event with the next sequence
// number, the last acknowledged state is what is persisted, and the rest are refused.
TEST(AdminApi, ConcurrentCommandsEndInOneConsistentPersistedState) {
    admin_stack a;
    const std::vector<std::pair<std::string, std::string>> commands = {
        {"POST", "promote"}, {"POST", "rollback"}, {"POST", "pause"}, {"POST", "resume"},
        {"POST", "abort"},   {"PUT", "weight"},    {"POST", "restart"}};
    constexpr int clients = 21;
    std::latch go(clients);
    std::atomic<int> accepted{0};
    std::atomic<int> refused{0};
    std::atomic<int> other{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
        threads.emplace_back([&, i] {
            const auto& [method, name] = commands[i % commands.size()];
            connection c(a.admin);
            go.arrive_and_wait();
            auto r = c.request(method, "/api/v1/rollouts/m/" + name,
                               name == "weight" ? R"({"percent": 10})" : "",
                               {{"Authorization", "Bearer " + operator_token}});
            (r.status == 200 ? accepted : r.status == 409 ? refused : other)++;
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(accepted + refused, clients);
    EXPECT_GE(accepted.load(), 1);

    auto st = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
    auto persisted = json::parse(read_file(a.dir.path + "/state/rollout-m.json"));
    EXPECT_EQ(persisted["phase"], st["phase"]);
    EXPECT_EQ(persisted["sequence"].get<int>(), accepted.load() + 1);  // + the start
    auto events = body_of(api(a.admin, "GET", "/api/v1/rollouts/m/events?limit=1000"));
    int commands_logged = 0;
    std::uint64_t last_sequence = 0;
    for (const auto& e : events["events"]) {
        const auto seq = e.value("sequence", std::uint64_t{0});
        EXPECT_EQ(seq, last_sequence + 1) << e.dump();
        last_sequence = seq;
        commands_logged += e["type"] == "command";
    }
    EXPECT_EQ(commands_logged, accepted.load());
}

// A config file for the reload tests: model m (v1, v2), optionally a second model, on the
// stack's mock ports.
std::string config_text(const stack& s, const std::string& state_dir, const std::string& m_traffic,
                        bool second_model = false, const std::string& extra = "",
                        bool with_v2 = true) {
    const auto v1 = std::to_string(s.v1->port());
    const auto v2 = std::to_string(s.v2->port());
    std::string text = R"({
      "listeners": [{"address": "127.0.0.1", "port": 0}],
      "admin": {"address": "127.0.0.1", "port": 0},
      "state": {"dir": ")" + state_dir + R"("},
      "workers": 2,
      "client_timeouts": {"drain_ms": 5000},)" + extra + R"(
      "models": [{
        "name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" + v1 + R"("]})" +
                       (with_v2 ? R"(, {"name": "v2", "endpoints": ["127.0.0.1:)" + v2 + R"("]})"
                                : "") +
                       R"(],
        )" + m_traffic + R"(
      })";
    if (second_model) {
        text += R"(, {"name": "m2", "stable": "a",
                     "versions": [{"name": "a", "endpoints": ["127.0.0.1:)" + v2 + R"("]}]})";
    }
    return text + "]}";
}

struct reload_stack {
    temp_dir dir;
    stack s;  // only its mocks
    std::unique_ptr<app::gateway> gw;
    std::string path;
    std::uint16_t port = 0;
    std::uint16_t admin = 0;

    explicit reload_stack(const std::string& m_traffic) {
        s.v1 = start_mock("v1");
        s.v2 = start_mock("v2");
        path = dir.path + "/stagegate.json";
        write(m_traffic);
        auto cfg = config::load_file(path);
        EXPECT_TRUE(cfg) << cfg.error().describe();
        gw = std::make_unique<app::gateway>(*cfg);
        gw->set_config_path(path);
        auto started = gw->start();
        EXPECT_TRUE(started) << started.error().describe();
        port = gw->ports()[0];
        admin = gw->admin_port();
    }
    void write(const std::string& m_traffic, bool second_model = false,
               const std::string& extra = "", bool with_v2 = true) {
        write_file(path,
                   config_text(s, dir.path + "/state", m_traffic, second_model, extra, with_v2));
    }
    json reload_ok() {
        auto r = api(admin, "POST", "/api/v1/config/reload", R"({"reason":"test"})");
        EXPECT_EQ(r.status, 200) << r.body;
        return body_of(r);
    }
};

TEST(ConfigReload, AppliesUnderLoadWithoutAFailedRequest) {
    reload_stack r(R"("traffic": {"weights": {"v1": 10000}})");
    load traffic(r.port);
    ASSERT_TRUE(wait_until([&] { return traffic.requests() > 200; }));

    r.write(R"("traffic": {"weights": {"v1": 5000, "v2": 5000}, "stage": "half"})", true);
    auto summary = r.reload_ok();
    EXPECT_EQ(summary["models"], 2);
    ASSERT_TRUE(wait_until([&] { return r.gw->applied_generation() >= summary["generation"]; }));
    EXPECT_EQ(request(r.port, "POST", "/v1/models/m2:predict", "{}").status, 200);
    auto m = body_of(api(r.admin, "GET", "/api/v1/models/m"));
    EXPECT_EQ(m["stage"], "half");
    EXPECT_EQ(m["versions"][1]["weight_bp"], 5000);

    // A refused reload changes nothing, and says every reason.
    r.write(R"("traffic": {"weights": {"v1": 10000}}, "bogus": 1)");
    auto bad = api(r.admin, "POST", "/api/v1/config/reload");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(code_of(bad), "invalid_config");
    EXPECT_EQ(path_of(bad), "/models/0/bogus");
    r.write(R"("traffic": {"weights": {"v1": 10000}})", false, R"("limits": {"max_header_bytes": 4096},)");
    auto restart = api(r.admin, "POST", "/api/v1/config/reload");
    EXPECT_EQ(restart.status, 400);
    EXPECT_EQ(path_of(restart), "/limits");
    EXPECT_EQ(body_of(api(r.admin, "GET", "/api/v1/models/m"))["stage"], "half");
    EXPECT_EQ(request(r.port, "POST", "/v1/models/m2:predict", "{}").status, 200);

    const int before = traffic.requests();
    ASSERT_TRUE(wait_until([&] { return traffic.requests() > before + 200; }));
    traffic.stop();
    EXPECT_EQ(traffic.failures(), 0) << "of " << traffic.requests();
}

TEST(ConfigReload, ActiveRolloutKeepsItsTrafficAndVersions) {
    const std::string rollout = R"("rollout": {"candidate": "v2", "interval_ms": 100,
        "stages": [{"weight_bp": 500, "min_bake_ms": 3600000}, {"weight_bp": 2500}]})";
    reload_stack r(rollout);
    ASSERT_EQ(api(r.admin, "PUT", "/api/v1/rollouts/m/weight", R"({"percent": 30})").status, 200);

    // Same rollout, stricter gates: the rollout keeps its phase and hand-set weight.
    r.write(R"("rollout": {"candidate": "v2", "interval_ms": 100, "gates": {"max_error_rate": 0.01},
        "stages": [{"weight_bp": 500, "min_bake_ms": 3600000}, {"weight_bp": 2500}]})",
            true);
    auto summary = r.reload_ok();
    EXPECT_EQ(summary["rollouts_updated"], json::array({"m"}));
    auto st = body_of(api(r.admin, "GET", "/api/v1/rollouts/m"));
    EXPECT_EQ(st["phase"], "paused");
    EXPECT_EQ(st["candidate_weight_bp"], 3000);
    EXPECT_EQ(body_of(api(r.admin, "GET", "/api/v1/models/m"))["versions"][1]["weight_bp"], 3000);

    // Dropping the candidate while its rollout is active is refused.
    r.write(R"("traffic": {})", false, "", /*with_v2=*/false);
    auto dropped = api(r.admin, "POST", "/api/v1/config/reload");
    EXPECT_EQ(dropped.status, 400) << dropped.body;
    EXPECT_EQ(path_of(dropped), "/models/0/versions");
    EXPECT_EQ(body_of(api(r.admin, "GET", "/api/v1/rollouts/m"))["candidate_weight_bp"], 3000);
}

TEST(ConfigReload, WithoutAConfigFileIsAConflict) {
    admin_stack a;
    auto r = api(a.admin, "POST", "/api/v1/config/reload");
    EXPECT_EQ(r.status, 409);
    EXPECT_EQ(code_of(r), "no_config_file");
    EXPECT_EQ(api(a.admin, "POST", "/api/v1/config/reload", "", viewer_token).status, 403);
}

// Every operation in the OpenAPI document is served (no 404 or 405), and the served document
// is docs/openapi.json.
TEST(AdminApi, OpenApiDocumentMatchesTheServedEndpoints) {
    admin_stack a;
    auto served = api(a.admin, "GET", "/api/v1/openapi.json");
    ASSERT_EQ(served.status, 200);
    auto doc = json::parse(served.body, nullptr, false);
    ASSERT_TRUE(doc.is_object());
    EXPECT_EQ(doc, json::parse(read_file(std::string(STAGEGATE_SOURCE_DIR) + "/docs/openapi.json")));
    int checked = 0;
    for (const auto& [path, ops] : doc["paths"].items()) {
        for (const auto& [method, op] : ops.items()) {
            if (path == "/api/v1/events") {
                continue;  // a stream: covered by LiveEventFeedStreamsAndResumes
            }
            std::string target = path;
            if (auto p = target.find("{model}"); p != std::string::npos) {
                target.replace(p, 7, "m");
            }
            if (auto p = target.find("{file}"); p != std::string::npos) {
                target.replace(p, 6, "index.html");  // the dashboard's page
            }
            std::string upper = method;
            for (auto& c : upper) c = static_cast<char>(std::toupper(c));
            auto r = api(a.admin, upper, target, upper == "PUT" ? R"({"percent": 1})" : "");
            EXPECT_NE(r.status, 405) << upper << " " << target;
            EXPECT_NE(code_of(r), "not_found") << upper << " " << target;
            ++checked;
        }
    }
    EXPECT_GE(checked, 17);
}

TEST(AdminApi, ServesOverTls) {
    auto cert = make_test_certificate();
    admin_stack a(true, [&](config::gateway& c) {
        c.admin_listener.tls = config::tls_server{cert.cert_file, cert.key_file};
    });
    connection c(a.admin, /*tls=*/true);
    ASSERT_TRUE(c.connected());
    auto r = c.request("GET", "/api/v1/rollouts/m", "",
                       {{"Authorization", "Bearer " + operator_token}});
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(body_of(r)["phase"], "progressing");
    connection plain(a.admin);
    EXPECT_NE(plain.request("GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace stagegate::test

namespace stagegate::test {
namespace {

// The state directory becomes unusable (here: replaced by a file, which even root cannot
// write into): commands are refused with a clear 503, nothing changes half-way, traffic keeps
// flowing, and commands work again once the directory is back.
TEST(AdminApi, UnwritableStateRefusesCommandsButTrafficFlows) {
    admin_stack a;
    const std::string state = a.dir.path + "/state";
    std::filesystem::rename(state, state + ".away");
    write_file(state, "not a directory");
    auto refused = api(a.admin, "POST", "/api/v1/rollouts/m/pause", R"({"reason":"disk"})");
    EXPECT_EQ(refused.status, 503);
    EXPECT_EQ(code_of(refused), "state_io_failed");
    EXPECT_NE(body_of(refused)["error"]["message"].get<std::string>().find(state),
              std::string::npos)
        << refused.body;
    auto st = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
    EXPECT_EQ(st["phase"], "progressing");  // nothing changed half-way
    EXPECT_EQ(st["candidate_weight_bp"], 500);
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(request(a.s.port, "POST", "/v1/models/m:predict", "{}").status, 200);
    }
    std::filesystem::remove(state);
    std::filesystem::rename(state + ".away", state);
    EXPECT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/pause").status, 200);
    auto persisted = nlohmann::json::parse(read_file(state + "/rollout-m.json"));
    EXPECT_EQ(persisted["phase"], "paused");
}


// `users` distinct sticky users all land on stable: the candidate gets no traffic.
void expect_only_stable(std::uint16_t port, int users) {
    for (int i = 0; i < users; ++i) {
        auto r = request(port, "POST", "/v1/models/m:predict", "{}",
                         {{"X-User", "user-" + std::to_string(i)}});
        ASSERT_EQ(r.status, 200);
        EXPECT_EQ(r.header("x-stagegate-version"), "v1") << "user-" << i;
    }
}

// Serving never depends on rollout state: a gateway whose state directory cannot be used at
// start (here a file stands where it should be; a damaged snapshot without a record behaves
// the same) starts, sends everything to stable, says why in /readyz and /metrics, refuses
// rollout changes, and resumes the rollout by itself once the directory is usable.
TEST(AdminApi, AGatewayStartsAndServesStableWhileItsStateIsUnavailable) {
    temp_dir blocked;
    const std::string state = blocked.path + "/state";
    write_file(state, "not a directory");
    admin_stack a(true, [&](config::gateway& c) { c.state_dir = state; });
    ASSERT_NE(a.s.port, 0);
    expect_only_stable(a.s.port, 40);
    auto ready = request(a.admin, "GET", "/readyz");
    EXPECT_EQ(ready.status, 200);
    EXPECT_EQ(body_of(ready)["rollout_state"]["available"], false) << ready.body;
    EXPECT_NE(ready.body.find(state), std::string::npos) << ready.body;
    EXPECT_NE(api(a.admin, "GET", "/metrics").body.find("stagegate_rollout_state_available 0"),
              std::string::npos);
    auto refused = api(a.admin, "POST", "/api/v1/rollouts/m/promote");
    EXPECT_EQ(refused.status, 503) << refused.body;
    EXPECT_EQ(code_of(refused), "state_io_failed");
    EXPECT_NE(refused.body.find("stable versions only"), std::string::npos) << refused.body;

    std::filesystem::remove(state);  // the directory can be created now
    ASSERT_TRUE(wait_until([&] {
        auto st = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
        return st.is_object() && st.value("phase", "") == "progressing" &&
               st.value("candidate_weight_bp", 0) == 500;
    }));
    EXPECT_FALSE(body_of(request(a.admin, "GET", "/readyz")).contains("rollout_state"));
    EXPECT_NE(api(a.admin, "GET", "/metrics").body.find("stagegate_rollout_state_available 1"),
              std::string::npos);
    EXPECT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/pause").status, 200);
}

// A gateway that started without its state cannot know whether its previous process rolled
// back without recording it: when the state is back, a resumed rollout holds its candidate
// at 0 % (a recorded decision, by "stagegate", automation paused) until an operator resumes.
TEST(AdminApi, ARolloutResumedAfterAnUnavailableStartHoldsItsCandidateUntilResumed) {
    temp_dir shared;
    const std::string state = shared.path + "/state";
    auto use_shared = [&](config::gateway& c) { c.state_dir = state; };
    {
        admin_stack first(true, use_shared);
        ASSERT_EQ(api(first.admin, "POST", "/api/v1/rollouts/m/promote").status, 200);
        ASSERT_EQ(body_of(api(first.admin, "GET", "/api/v1/rollouts/m"))["candidate_weight_bp"],
                  2500);
    }
    std::filesystem::rename(state, state + ".away");
    write_file(state, "not a directory");
    admin_stack a(true, use_shared);
    expect_only_stable(a.s.port, 20);
    std::filesystem::remove(state);
    std::filesystem::rename(state + ".away", state);
    nlohmann::json st;
    ASSERT_TRUE(wait_until([&] {
        st = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
        return st.is_object() && st.value("phase", "") == "paused";
    })) << st.dump();
    EXPECT_EQ(st["candidate_weight_bp"], 0);
    EXPECT_EQ(st["manual_weight"], true);
    EXPECT_EQ(st["stage_index"], 1);
    auto events = rollout::state_store::open(state)->recent_events(10, "m");
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back()["command"], "set_weight");
    EXPECT_EQ(events.back()["actor"], "stagegate");
    ASSERT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/resume").status, 200);
    EXPECT_EQ(body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["candidate_weight_bp"], 2500);
}

// A full disk, played by a file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail
// with EFBIG the way they fail with ENOSPC): a command whose record (one event log line, the
// state inside) cannot be written is refused with 503 and changes nothing, the log keeps only
// whole lines, traffic flows, and commands work again once there is room.
class file_size_limit {
public:
    explicit file_size_limit(rlim_t bytes) {
        ::getrlimit(RLIMIT_FSIZE, &saved_);
        old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
        set(bytes);
    }
    void set(rlim_t bytes) {
        rlimit limit = saved_;
        limit.rlim_cur = bytes;
        ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    ~file_size_limit() {
        ::setrlimit(RLIMIT_FSIZE, &saved_);
        std::signal(SIGXFSZ, old_handler_);
    }

private:
    rlimit saved_{};
    void (*old_handler_)(int) = nullptr;
};

TEST(AdminApi, FullDiskRefusesCommandsLeavesNothingHalfWrittenAndTrafficFlows) {
    admin_stack a;
    const std::string state = a.dir.path + "/state";
    const auto log_before = read_file(state + "/events.jsonl");
    ASSERT_FALSE(log_before.empty());
    {
        // Room for part of a log line, not for the whole record.
        file_size_limit limit(log_before.size() + 20);
        auto refused = api(a.admin, "POST", "/api/v1/rollouts/m/pause", R"({"reason":"disk"})");
        EXPECT_EQ(refused.status, 503) << refused.body;
        EXPECT_EQ(code_of(refused), "state_io_failed");
        EXPECT_EQ(read_file(state + "/events.jsonl"), log_before);  // no torn line
        EXPECT_EQ(body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["phase"], "progressing");
        for (int i = 0; i < 20; ++i) {
            ASSERT_EQ(request(a.s.port, "POST", "/v1/models/m:predict", "{}").status, 200);
        }
    }
    auto recorded = rollout::state_store::open(state)->load_all();
    ASSERT_TRUE(recorded);
    EXPECT_EQ(recorded->at("m")["phase"], "progressing");
    EXPECT_FALSE(std::filesystem::exists(state + "/rollout-m.json.tmp"));
    // Space again: commands work, and the log goes on with whole lines.
    EXPECT_EQ(api(a.admin, "POST", "/api/v1/rollouts/m/pause").status, 200);
    auto events = rollout::state_store::open(state)->recent_events(50, "m");
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back()["command"], "pause");
    EXPECT_EQ(events.back()["state"]["phase"], "paused");
    EXPECT_EQ(nlohmann::json::parse(read_file(state + "/rollout-m.json"))["phase"], "paused");
    const auto log_after = read_file(state + "/events.jsonl");
    EXPECT_EQ(log_after.back(), '\n');
    EXPECT_EQ(log_after.compare(0, log_before.size(), log_before), 0);
}

// A rollback when nothing can be written: the candidate is taken out of traffic at once (less
// exposure is the safe side), the answer says so without claiming durability (507,
// "applied": true, "durable": false), status and /metrics show it, and the record lands by
// itself once the directory is back, so a restart after that resumes rolled back.
TEST(AdminApi, ARollbackThatCannotBeRecordedIsAppliedReportedAndRecordedLater) {
    admin_stack a;
    const std::string state = a.dir.path + "/state";
    std::filesystem::rename(state, state + ".away");
    write_file(state, "not a directory");
    auto rolled = api(a.admin, "POST", "/api/v1/rollouts/m/rollback", R"({"reason":"bad"})");
    EXPECT_EQ(rolled.status, 507) << rolled.body;
    EXPECT_EQ(code_of(rolled), "not_durable");
    EXPECT_EQ(body_of(rolled)["applied"], true);
    EXPECT_EQ(body_of(rolled)["durable"], false);
    auto st = body_of(api(a.admin, "GET", "/api/v1/rollouts/m"));
    EXPECT_EQ(st["phase"], "rolled_back");
    EXPECT_EQ(st["candidate_weight_bp"], 0);
    EXPECT_EQ(st["durable"], false);
    expect_only_stable(a.s.port, 20);
    auto metrics = api(a.admin, "GET", "/metrics");
    EXPECT_NE(metrics.body.find("stagegate_rollout_state_recorded{model=\"m\"} 0"),
              std::string::npos);
    // Nothing else is recorded before the rollback is.
    auto restart = api(a.admin, "POST", "/api/v1/rollouts/m/restart");
    EXPECT_EQ(restart.status, 503) << restart.body;
    EXPECT_EQ(code_of(restart), "state_io_failed");

    std::filesystem::remove(state);
    std::filesystem::rename(state + ".away", state);
    ASSERT_TRUE(wait_until([&] {
        return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["durable"] == true;
    }));
    auto recorded = rollout::state_store::open(state)->load_all();
    ASSERT_TRUE(recorded);
    EXPECT_EQ(recorded->at("m")["phase"], "rolled_back");
    auto events = rollout::state_store::open(state)->recent_events(50, "m");
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back()["command"], "rollback");
    EXPECT_EQ(events.back()["state"]["phase"], "rolled_back");
}


}  // namespace
}  // namespace stagegate::test
