#include "stagegate/config/config.hpp"
#include "stagegate/config/admin_tokens.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <set>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

namespace stagegate::config {
namespace {

const char* minimal = R"({
  "listeners": [{"port": 8080}],
  "models": [{"name": "m", "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]}],
              "stable": "v1"}]
})";

bool has_problem(const error& e, const std::string& path, const std::string& fragment) {
    return std::any_of(e.problems.begin(), e.problems.end(), [&](const problem& p) {
        return p.path == path && p.message.find(fragment) != std::string::npos;
    });
}

std::string with_state(const std::string& state) {
    return R"({"listeners": [{"port": 8080}], "state": )" + state + R"(,
      "models": [{"name": "m", "versions": [{"name": "v1", "endpoints": ["h:1"]}],
                  "stable": "v1"}]})";
}

TEST(ConfigState, EtcdStoreForSeveralReplicas) {
    auto cfg = parse(with_state(R"({"store": "etcd", "endpoints": ["http://10.0.0.1:2379",
        "https://10.0.0.2:2379"], "prefix": "/stagegate/prod", "lease_ttl_ms": 3000,
        "replica": "gw-1", "advertise_admin": "http://10.0.0.5:9090", "history_ms": 60000})"));
    ASSERT_TRUE(cfg) << cfg.error().describe();
    ASSERT_TRUE(cfg->etcd);
    EXPECT_EQ(cfg->etcd->endpoints.size(), 2u);
    EXPECT_EQ(cfg->etcd->prefix, "/stagegate/prod");
    EXPECT_EQ(cfg->etcd->lease_ttl.count(), 3000);
    EXPECT_EQ(cfg->etcd->replica, "gw-1");
    EXPECT_EQ(cfg->etcd->history.count(), 60000);
    EXPECT_FALSE(parse(minimal)->etcd);  // the file store stays the default
}

TEST(ConfigState, EtcdStoreProblemsSayWhere) {
    auto bad = parse(with_state(R"({"store": "etcd", "endpoints": ["not a url"],
        "prefix": "stagegate/", "lease_ttl_ms": 100, "cert_file": "/c.pem", "dir": "/x",
        "history_ms": 10})"));
    ASSERT_FALSE(bad);
    EXPECT_TRUE(has_problem(bad.error(), "/state/endpoints/0", "etcd client URL"));
    EXPECT_TRUE(has_problem(bad.error(), "/state/prefix", "leading slash"));
    EXPECT_TRUE(has_problem(bad.error(), "/state/lease_ttl_ms", ""));
    EXPECT_TRUE(has_problem(bad.error(), "/state/history_ms", ""));
    EXPECT_TRUE(has_problem(bad.error(), "/state/key_file", "both"));
    EXPECT_TRUE(has_problem(bad.error(), "/state/dir", "only for"));
    auto no_endpoints = parse(with_state(R"({"store": "etcd", "prefix": "/p"})"));
    ASSERT_FALSE(no_endpoints);
    EXPECT_TRUE(has_problem(no_endpoints.error(), "/state/endpoints", ""));
    auto unknown = parse(with_state(R"({"store": "zookeeper"})"));
    ASSERT_FALSE(unknown);
    EXPECT_TRUE(has_problem(unknown.error(), "/state/store", "\"file\" or \"etcd\""));
    auto file_with_etcd_keys = parse(with_state(R"({"dir": "/x", "prefix": "/p"})"));
    ASSERT_FALSE(file_with_etcd_keys);
    EXPECT_TRUE(has_problem(file_with_etcd_keys.error(), "/state/prefix", "only for"));
}

TEST(ConfigRollout, KeepsItsSourceToPersistWithItsState) {
    auto r = parse_rollout(R"({"candidate": "v2", "stages": [{"weight_bp": 500}]})", "/rollout");
    ASSERT_TRUE(r) << r.error().describe();
    auto again = parse_rollout(r->source, "/rollout");
    ASSERT_TRUE(again) << again.error().describe();
    EXPECT_EQ(*again, *r);
}

TEST(ConfigParse, MinimalConfigGetsDefaults) {
    auto cfg = parse(minimal);
    ASSERT_TRUE(cfg) << cfg.error().describe();
    ASSERT_EQ(cfg->models.size(), 1u);
    const auto& m = cfg->models[0];
    EXPECT_EQ(m.split.weights.at("v1"), 10000u);  // stable takes everything by default
    EXPECT_TRUE(m.route.kserve_v1);
    EXPECT_TRUE(m.route.openai);
    EXPECT_EQ(m.timeouts.connect.count(), 1000);
    // Made for streams: a stream may run as long as it keeps moving.
    EXPECT_EQ(m.timeouts.first_byte.count(), 30000);
    EXPECT_EQ(m.timeouts.stream_idle.count(), 60000);
    EXPECT_EQ(m.timeouts.total.count(), 0);
    EXPECT_EQ(cfg->listeners[0].address, "0.0.0.0");
    EXPECT_TRUE(cfg->admin_listener.enabled);
    EXPECT_EQ(cfg->admin_listener.address, "127.0.0.1");
    EXPECT_EQ(cfg->admin_listener.port, 9901);
    EXPECT_TRUE(cfg->record_metrics);
}

TEST(ConfigParse, AdminAndMetricsSections) {
    auto cfg = parse(R"({"listeners": [{"port": 8080}],
      "admin": {"address": "0.0.0.0", "port": 0, "enabled": false},
      "metrics": {"enabled": false},
      "models": [{"name": "m", "versions": [{"name": "v1", "endpoints": ["h:1"]}],
                  "stable": "v1"}]})");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    EXPECT_FALSE(cfg->admin_listener.enabled);
    EXPECT_EQ(cfg->admin_listener.port, 0);
    EXPECT_FALSE(cfg->record_metrics);
    auto bad = parse(R"({"listeners": [{"port": 8080}], "metrics": {"enable": true},
      "models": [{"name": "m", "versions": [{"name": "v1", "endpoints": ["h:1"]}],
                  "stable": "v1"}]})");
    ASSERT_FALSE(bad);
    EXPECT_TRUE(has_problem(bad.error(), "/metrics/enable", "unknown key"));
}

const char* with_admin(const std::string& admin) {
    static std::string text;
    text = R"({"listeners": [{"port": 8080}], "admin": )" + admin + R"(,
      "models": [{"name": "m", "versions": [{"name": "v1", "endpoints": ["h:1"]}],
                  "stable": "v1"}]})";
    return text.c_str();
}

TEST(ConfigAdmin, TokensRolesTlsAndMetricsAuth) {
    auto cfg = parse(with_admin(R"({"address": "0.0.0.0", "metrics_auth": "token",
        "tls": {"cert_file": "c.pem", "key_file": "k.pem"},
        "tokens": [{"name": "ci", "role": "operator", "file": "/run/ci.token"},
                   {"name": "dash", "role": "viewer", "file": "/run/dash.token"}]})"));
    ASSERT_TRUE(cfg) << cfg.error().describe();
    const auto& a = cfg->admin_listener;
    ASSERT_EQ(a.tokens.size(), 2u);
    EXPECT_EQ(a.tokens[0].role, admin_role::operator_);
    EXPECT_EQ(a.tokens[1].role, admin_role::viewer);
    EXPECT_TRUE(a.metrics_need_token);
    ASSERT_TRUE(a.tls);
    EXPECT_EQ(a.tls->key_file, "k.pem");

    auto bad = parse(with_admin(R"({"metrics_auth": "sometimes",
        "tokens": [{"name": "x", "role": "admin", "file": "f"}, {"name": "x", "role": "viewer"}]})"));
    ASSERT_FALSE(bad);
    EXPECT_TRUE(has_problem(bad.error(), "/admin/metrics_auth", "\"open\" or \"token\""));
    EXPECT_TRUE(has_problem(bad.error(), "/admin/tokens/0/role", "viewer"));
    EXPECT_TRUE(has_problem(bad.error(), "/admin/tokens/1/file", "missing"));

    auto dup = parse(with_admin(R"({"tokens": [{"name": "x", "role": "viewer", "file": "a"},
                                                {"name": "x", "role": "viewer", "file": "b"}]})"));
    ASSERT_FALSE(dup);
    EXPECT_TRUE(has_problem(dup.error(), "/admin/tokens/1/name", "duplicate"));
}

TEST(ConfigAdmin, AnOpenAdminApiMustStayOnLoopback) {
    auto open = parse(with_admin(R"({"address": "0.0.0.0"})"));
    ASSERT_FALSE(open);
    EXPECT_TRUE(has_problem(open.error(), "/admin/tokens", "non-loopback"));
    EXPECT_TRUE(parse(with_admin(R"({"address": "127.0.0.1"})")));
    EXPECT_TRUE(parse(with_admin(R"({"address": "0.0.0.0", "enabled": false})")));
}

TEST(ConfigReload, ReportsEverySectionThatNeedsARestart) {
    auto base = parse(minimal);
    ASSERT_TRUE(base);
    auto next = *base;
    EXPECT_TRUE(reload_problems(*base, next).empty());
    next.models[0].versions[0].endpoints[0].port = 9999;  // models reload freely
    EXPECT_TRUE(reload_problems(*base, next).empty());
    next.listeners[0].port = 8081;
    next.workers = 3;
    next.limit.max_header_bytes = 4096;
    next.admin_listener.tokens.push_back({"t", admin_role::viewer, "f"});
    next.state_dir = "elsewhere";
    auto problems = reload_problems(*base, next);
    std::vector<std::string> paths;
    for (const auto& p : problems) {
        paths.push_back(p.path);
        EXPECT_NE(p.message.find("needs a restart"), std::string::npos);
    }
    EXPECT_EQ(paths, (std::vector<std::string>{"/listeners", "/admin", "/state", "/workers",
                                               "/limits"}));
}

TEST(ConfigRollout, ParsesARolloutOnItsOwn) {
    auto spec = parse_rollout(R"({"candidate": "v2", "stages": [{"weight_bp": 100}],
                                  "gates": {"max_error_rate": 0.01}})", "/rollout");
    ASSERT_TRUE(spec) << spec.error().describe();
    EXPECT_EQ(spec->stages[0].name, "canary-1");
    EXPECT_EQ(*spec->gates.max_error_rate, 0.01);
    auto bad = parse_rollout(R"({"candidate": 2, "stages": [{"weight_bp": 0}], "x": 1})", "/rollout");
    ASSERT_FALSE(bad);
    EXPECT_TRUE(has_problem(bad.error(), "/rollout/candidate", "string"));
    EXPECT_TRUE(has_problem(bad.error(), "/rollout/stages/0/weight_bp", "between"));
    EXPECT_TRUE(has_problem(bad.error(), "/rollout/x", "unknown key"));
    EXPECT_EQ(parse_rollout("[", "/rollout").error().code, "invalid_json");
}

// The calendar is <chrono>'s: a 29th of February only in a leap year, 31 days only where a
// month has them.
TEST(ConfigStaleness, TrainedAtIsACalendarDate) {
    EXPECT_EQ(parse_rfc3339("2000-02-29T00:00:00Z"), 951782400);  // 2000 is a leap year
    for (const char* bad : {"2025-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
                            "2026-04-31T00:00:00Z", "2026-00-10T00:00:00Z"}) {
        EXPECT_FALSE(parse_rfc3339(bad)) << bad;
    }
}

TEST(ConfigStaleness, TrainedAtAndMaxAge) {
    EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
    EXPECT_EQ(parse_rfc3339("2026-11-27T12:30:15Z"), 1795782615);
    EXPECT_EQ(parse_rfc3339("2026-11-27T14:30:15.250+02:00"), 1795782615);
    EXPECT_EQ(parse_rfc3339("2024-02-29T00:00:00-01:00"), 1709168400);
    for (const char* bad : {"2026-11-27", "2026-13-01T00:00:00Z", "2026-11-27T25:00:00Z",
                            "2026-11-27T12:00:00", "2026-11-27T12:00:00+2:00",
                            "2026-11-27T12:00:00.Z", "yesterday"}) {
        EXPECT_FALSE(parse_rfc3339(bad)) << bad;
    }
    auto cfg = parse(R"({"listeners": [{"port": 8080}],
      "models": [{"name": "m", "stable": "v1", "max_version_age_hours": 720,
                  "versions": [{"name": "v1", "endpoints": ["h:1"],
                                "trained_at": "2026-11-01T00:00:00Z"}]}]})");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    EXPECT_EQ(cfg->models[0].max_version_age, std::chrono::hours(720));
    EXPECT_EQ(cfg->models[0].versions[0].trained_at, parse_rfc3339("2026-11-01T00:00:00Z"));
    auto bad = parse(R"({"listeners": [{"port": 8080}],
      "models": [{"name": "m", "stable": "v1", "max_version_age_hours": 0,
                  "versions": [{"name": "v1", "endpoints": ["h:1"], "trained_at": "soon"}]}]})");
    ASSERT_FALSE(bad);
    EXPECT_TRUE(has_problem(bad.error(), "/models/0/versions/0/trained_at", "RFC 3339"));
    EXPECT_TRUE(has_problem(bad.error(), "/models/0/max_version_age_hours", "between"));
}

TEST(ConfigParse, DemoConfigIsValid) {
    auto cfg = load_file(std::string(STAGEGATE_SOURCE_DIR) + "/config/demo.json");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    ASSERT_TRUE(cfg->models[0].rollout_spec);
    EXPECT_EQ(cfg->models[0].rollout_spec->candidate, "v2");
    EXPECT_EQ(cfg->models[0].rollout_spec->stages[0].weight, 500u);
    // The demo's second act: the bad v3's rollout, started once v2 is stable.
    std::ifstream in(std::string(STAGEGATE_SOURCE_DIR) + "/config/demo-bad-rollout.json");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto bad = parse_rollout(text, "");
    ASSERT_TRUE(bad) << bad.error().describe();
    EXPECT_TRUE(validate_rollout(*bad, {"v1", "v2", "v3"}, "v2", "").empty());
}

TEST(ConfigParse, UnknownKeysAreErrorsWithTheirPath) {
    auto cfg = parse(R"({
      "listeners": [{"port": 8080, "prot": 1}],
      "modles": [],
      "models": [{"name": "m", "versions": [{"name": "v1", "endpoints": ["a:1"], "tsl": {}}],
                  "stable": "v1", "trafic": {}}]
    })");
    ASSERT_FALSE(cfg);
    const auto& e = cfg.error();
    EXPECT_EQ(e.code, "invalid_config");
    EXPECT_TRUE(has_problem(e, "/listeners/0/prot", "unknown key"));
    EXPECT_TRUE(has_problem(e, "/modles", "unknown key"));
    EXPECT_TRUE(has_problem(e, "/models/0/versions/0/tsl", "unknown key"));
    EXPECT_TRUE(has_problem(e, "/models/0/trafic", "unknown key"));
    EXPECT_EQ(e.problems.size(), 4u) << e.describe();
}

TEST(ConfigParse, EveryShapeProblemIsReportedAtOnce) {
    auto cfg = parse(R"({
      "listeners": [{"port": 70000}, {"port": "80"}],
      "workers": -1,
      "models": [{"versions": [{"name": "v1", "endpoints": ["nocolon", "h:0", 5]}],
                  "stable": "v1", "timeouts": {"connect_ms": 1.5}}]
    })");
    ASSERT_FALSE(cfg);
    const auto& e = cfg.error();
    EXPECT_TRUE(has_problem(e, "/listeners/0/port", "between 0 and 65535"));
    EXPECT_TRUE(has_problem(e, "/listeners/1/port", "expected a non-negative integer"));
    EXPECT_TRUE(has_problem(e, "/workers", "must not be negative"));
    EXPECT_TRUE(has_problem(e, "/models/0/name", "missing"));
    EXPECT_TRUE(has_problem(e, "/models/0/versions/0/endpoints/0", "host:port"));
    EXPECT_TRUE(has_problem(e, "/models/0/versions/0/endpoints/1", "host:port"));
    EXPECT_TRUE(has_problem(e, "/models/0/versions/0/endpoints/2", "host:port"));
    EXPECT_TRUE(has_problem(e, "/models/0/timeouts/connect_ms", "integer"));
}

TEST(ConfigValidate, StreamTimeouts) {
    auto with = [](const std::string& timeouts) {
        return parse(R"({"listeners": [{"port": 8080}],
          "models": [{"name": "m", "stable": "v1",
                      "versions": [{"name": "v1", "endpoints": ["h:1"]}],
                      "timeouts": )" + timeouts + "}]}");
    };
    auto capped = with(R"({"first_byte_ms": 500, "stream_idle_ms": 0, "total_ms": 600000})");
    ASSERT_TRUE(capped) << capped.error().describe();
    EXPECT_EQ(capped->models[0].timeouts.stream_idle.count(), 0);
    EXPECT_EQ(capped->models[0].timeouts.total.count(), 600000);
    // Without a total cap the first byte may take as long as it is given.
    auto uncapped = with(R"({"first_byte_ms": 120000, "total_ms": 0})");
    ASSERT_TRUE(uncapped) << uncapped.error().describe();

    auto neither = with(R"({"stream_idle_ms": 0, "total_ms": 0})");
    ASSERT_FALSE(neither);
    EXPECT_TRUE(has_problem(neither.error(), "/models/0/timeouts/stream_idle_ms",
                            "must be above 0 when total_ms is 0"));
    auto late = with(R"({"first_byte_ms": 2000, "total_ms": 1000})");
    ASSERT_FALSE(late);
    EXPECT_TRUE(has_problem(late.error(), "/models/0/timeouts/first_byte_ms",
                            "must not exceed total_ms"));
    auto unknown = with(R"({"idle_ms": 5})");
    ASSERT_FALSE(unknown);
    EXPECT_TRUE(has_problem(unknown.error(), "/models/0/timeouts/idle_ms", "unknown key"));
}

TEST(ConfigValidate, WeightsMustSumToTenThousandAndNameVersions) {
    auto cfg = parse(R"({
      "listeners": [{"port": 8080}],
      "models": [{"name": "m", "stable": "v3",
                  "versions": [{"name": "v1", "endpoints": ["h:1"]},
                               {"name": "v1", "endpoints": ["h:2"]}],
                  "traffic": {"weights": {"v1": 9000, "vx": 500}}}]
    })");
    ASSERT_FALSE(cfg);
    const auto& e = cfg.error();
    EXPECT_TRUE(has_problem(e, "/models/0/traffic/weights", "sum to 10000, got 9500"));
    EXPECT_TRUE(has_problem(e, "/models/0/traffic/weights/vx", "names no version"));
    EXPECT_TRUE(has_problem(e, "/models/0/versions/1/name", "duplicate"));
    EXPECT_TRUE(has_problem(e, "/models/0/stable", "names no version"));
}

TEST(ConfigValidate, DuplicateModelsAndPrefixes) {
    auto cfg = parse(R"({
      "listeners": [{"port": 8080}],
      "models": [
        {"name": "a", "stable": "v1", "versions": [{"name": "v1", "endpoints": ["h:1"]}],
         "match": {"path_prefixes": ["/x"]}},
        {"name": "a", "stable": "v1", "versions": [{"name": "v1", "endpoints": ["h:1"]}],
         "match": {"path_prefixes": ["/x"]}}
      ]
    })");
    ASSERT_FALSE(cfg);
    EXPECT_TRUE(has_problem(cfg.error(), "/models/1/name", "duplicate model"));
    EXPECT_TRUE(has_problem(cfg.error(), "/models/1/match/path_prefixes/0", "already used"));
}

TEST(ConfigParse, InvalidJsonSaysWhere) {
    auto cfg = parse(R"({"listeners": [}")");
    ASSERT_FALSE(cfg);
    EXPECT_EQ(cfg.error().code, "invalid_json");
    ASSERT_EQ(cfg.error().problems.size(), 1u);
    EXPECT_NE(cfg.error().problems[0].message.find("line 1"), std::string::npos);
}

TEST(ConfigParse, CommentsAreAllowed) {
    auto cfg = parse(std::string("// leading comment\n") + minimal);
    EXPECT_TRUE(cfg) << cfg.error().describe();
}

TEST(ConfigParse, MissingFileIsAClearError) {
    auto cfg = load_file("/nonexistent/stagegate.json");
    ASSERT_FALSE(cfg);
    EXPECT_EQ(cfg.error().code, "config_unreadable");
}

TEST(HostPort, ParsesNamesIpv4AndBracketedIpv6) {
    endpoint ep;
    ASSERT_TRUE(parse_host_port("model-a.svc:8500", ep));
    EXPECT_EQ(ep.host, "model-a.svc");
    EXPECT_EQ(ep.port, 8500);
    ASSERT_TRUE(parse_host_port("[::1]:9000", ep));
    EXPECT_EQ(ep.host, "::1");
    EXPECT_FALSE(parse_host_port("::1:9000", ep));
    EXPECT_FALSE(parse_host_port("h:", ep));
    EXPECT_FALSE(parse_host_port(":80", ep));
    EXPECT_FALSE(parse_host_port("h:65536", ep));
    EXPECT_FALSE(parse_host_port("h:80x", ep));
}

}  // namespace
}  // namespace stagegate::config

namespace stagegate::config {
namespace {

const char* rollout_model = R"({"listeners": [{"port": 0}],
  "state": {"dir": "/tmp/x"},
  "models": [{"name": "m", "stable": "v1",
    "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
    "rollout": {"candidate": "v2", "interval_ms": 2000, "fast_rollback_consecutive_errors": 10,
      "stages": [{"weight_bp": 100, "min_bake_ms": 30000, "min_requests": 50},
                 {"name": "half", "weight_bp": 5000, "max_duration_ms": 600000,
                  "on_max_duration": "rollback"}],
      "gates": {"min_requests": 40, "max_error_rate": 0.02, "max_latency_ms": {"p99": 250},
                "max_error_rate_delta": 0.005, "max_latency_ratio": {"p99.9": 1.5},
                "sequential": {"alpha": 0.05, "latency": false}}}}]})";

TEST(ConfigRollout, ParsesStagesAndGates) {
    auto cfg = parse(rollout_model);
    ASSERT_TRUE(cfg) << cfg.error().describe();
    EXPECT_EQ(cfg->state_dir, "/tmp/x");
    const auto& r = *cfg->models[0].rollout_spec;
    EXPECT_EQ(r.candidate, "v2");
    EXPECT_EQ(r.interval.count(), 2000);
    EXPECT_EQ(r.fast_rollback_consecutive_errors, 10u);
    ASSERT_EQ(r.stages.size(), 2u);
    EXPECT_EQ(r.stages[0].name, "canary-1");
    EXPECT_EQ(r.stages[1].name, "half");
    EXPECT_TRUE(r.stages[1].rollback_on_max_duration);
    EXPECT_EQ(r.stages[1].max_duration->count(), 600000);
    EXPECT_EQ(r.gates.min_requests, 40u);
    EXPECT_DOUBLE_EQ(*r.gates.max_error_rate, 0.02);
    EXPECT_DOUBLE_EQ(r.gates.max_latency_seconds.at(0.99), 0.25);
    EXPECT_DOUBLE_EQ(r.gates.max_latency_ratio.at(0.999), 1.5);
    EXPECT_DOUBLE_EQ(r.gates.alpha, 0.05);
    EXPECT_FALSE(r.gates.sequential_latency);
    EXPECT_TRUE(r.gates.sequential_errors);
}

TEST(ConfigRollout, EveryRolloutProblemIsReported) {
    auto cfg = parse(R"({"listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
        "traffic": {"weights": {"v1": 10000}},
        "rollout": {"candidate": "v1",
          "stages": [{"weight_bp": 500, "on_max_duration": "panic"}, {"weight_bp": 500},
                     {"name": "stable", "weight_bp": 20000}],
          "gates": {"max_error_rate": 2, "max_latency_ms": {"median": 5}, "bogus": 1}}}]})");
    ASSERT_FALSE(cfg);
    const auto& e = cfg.error();
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/stages/0/on_max_duration", "hold"));
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/stages/2/weight_bp", "between 1 and 10000"));
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/gates/max_error_rate", "between"));
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/gates/max_latency_ms/median", "quantile"));
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/gates/bogus", "unknown key"));
}

TEST(ConfigRollout, TokenRateFloorsAbsoluteAndRelativeToStable) {
    auto with = [](const std::string& gates) {
        return parse(R"({"listeners": [{"port": 0}],
          "models": [{"name": "m", "stable": "v1",
            "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
            "rollout": {"candidate": "v2", "stages": [{"weight_bp": 500}],
                        "gates": )" + gates + "}}]}");
    };
    auto ok = with(R"({"min_tokens_per_second": {"p50": 20},
                       "min_tokens_per_second_ratio": {"p10": 0.8, "p50": 1}})");
    ASSERT_TRUE(ok) << ok.error().describe();
    const auto& g = ok->models[0].rollout_spec->gates;
    EXPECT_DOUBLE_EQ(g.min_tokens_per_second.at(0.5), 20);
    EXPECT_DOUBLE_EQ(g.min_tokens_per_second_ratio.at(0.1), 0.8);
    EXPECT_DOUBLE_EQ(g.min_tokens_per_second_ratio.at(0.5), 1);

    auto bad = with(R"({"min_tokens_per_second": {"p50": 0, "fastest": 3},
                        "min_tokens_per_second_ratio": {"p10": 1.5, "p50": 0, "p90": "half",
                                                        "slowest": 0.5}})");
    ASSERT_FALSE(bad);
    const auto& e = bad.error();
    const std::string gates = "/models/0/rollout/gates/";
    EXPECT_TRUE(has_problem(e, gates + "min_tokens_per_second/p50", "between"));
    EXPECT_TRUE(has_problem(e, gates + "min_tokens_per_second/fastest", "quantile"));
    EXPECT_TRUE(has_problem(e, gates + "min_tokens_per_second_ratio/p10", "at most 1"));
    EXPECT_TRUE(has_problem(e, gates + "min_tokens_per_second_ratio/p50", "above 0"));
    EXPECT_TRUE(has_problem(e, gates + "min_tokens_per_second_ratio/p90", "ratio"));
    EXPECT_TRUE(has_problem(e, gates + "min_tokens_per_second_ratio/slowest", "quantile"));
    auto not_object = with(R"({"min_tokens_per_second_ratio": 0.8})");
    ASSERT_FALSE(not_object);
    EXPECT_TRUE(has_problem(not_object.error(), gates + "min_tokens_per_second_ratio", "object"));
}

TEST(ConfigRollout, CrossFieldRules) {
    auto cfg = parse(R"({"listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
        "traffic": {"weights": {"v1": 10000}},
        "rollout": {"candidate": "v1",
          "stages": [{"weight_bp": 500}, {"weight_bp": 500}, {"name": "stable", "weight_bp": 900}]}}]})");
    ASSERT_FALSE(cfg);
    const auto& e = cfg.error();
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/candidate", "must differ"));
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/stages/1/weight_bp", "widen"));
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/stages/2/name", "reserved"));
    EXPECT_TRUE(has_problem(e, "/models/0/traffic/weights", "gets its weights from the rollout"));
}

TEST(ConfigPredictions, PresetsPointersMirrorAndQualityGates) {
    auto cfg = parse(R"({"listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
        "predictions": {"preset": "openai", "feedback": {"ttl_seconds": 60, "max_pending": 10}},
        "rollout": {"candidate": "v2", "mirror": {"max_in_flight": 4, "queue": 8},
          "stages": [{"weight_bp": 0, "mirror_percent": 50}, {"weight_bp": 100}],
          "gates": {"predictions": {"min_agreement": 0.9, "max_psi": 0.2,
                                    "max_accuracy_drop": 0.01, "max_candidate_age_hours": 24}}}}]})");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    const auto& m = cfg->models[0];
    ASSERT_TRUE(m.prediction);
    EXPECT_EQ(m.prediction->label, "/choices/0/finish_reason");
    EXPECT_EQ(m.prediction->value, "/choices/0/message/content");
    EXPECT_TRUE(m.prediction->feedback);
    EXPECT_EQ(m.prediction->feedback_capacity, 10u);
    const auto& r = *m.rollout_spec;
    EXPECT_EQ(r.stages[0].name, "shadow");
    EXPECT_EQ(r.stages[0].weight, 0u);
    EXPECT_EQ(r.stages[0].mirror, 5000u);
    EXPECT_EQ(r.mirror_max_in_flight, 4u);
    EXPECT_EQ(*r.gates.min_agreement, 0.9);
    EXPECT_EQ(r.gates.max_candidate_age->count(), 24);
}

TEST(ConfigPredictions, GatesNeedWhatThePredictionsProvide) {
    auto cfg = parse(R"({"listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
        "predictions": {"value": "/score", "bins": {"min": 1, "max": 0, "count": 99},
                        "preset": "sklearn"},
        "rollout": {"candidate": "v2", "stages": [{"weight_bp": 0}, {"weight_bp": 100}],
          "gates": {"predictions": {"min_agreement": 0.9, "max_accuracy_drop": 0.01}}}}]})");
    ASSERT_FALSE(cfg);
    const auto& e = cfg.error();
    EXPECT_TRUE(has_problem(e, "/models/0/predictions/preset", "tfserving"));
    EXPECT_TRUE(has_problem(e, "/models/0/predictions/bins/count", "between"));
    EXPECT_TRUE(has_problem(e, "/models/0/predictions/bins/max", "above min"));
    EXPECT_TRUE(has_problem(e, "/models/0/rollout/stages/0/weight_bp", "mirror_percent"));
    // Structurally valid, but the gates ask for what the predictions cannot give.
    auto unmet = parse(R"({"listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
        "predictions": {"value": "/score"},
        "rollout": {"candidate": "v2", "stages": [{"weight_bp": 100}],
          "gates": {"predictions": {"min_agreement": 0.9, "max_accuracy_drop": 0.01}}}}]})");
    ASSERT_FALSE(unmet);
    const auto& u = unmet.error();
    EXPECT_TRUE(has_problem(u, "/models/0/rollout/gates/predictions/min_agreement", "label"));
    EXPECT_TRUE(has_problem(u, "/models/0/rollout/gates/predictions/min_agreement", "mirror"));
    EXPECT_TRUE(has_problem(u, "/models/0/rollout/gates/predictions/max_accuracy_drop", "feedback"));
    auto no_predictions = parse(R"({"listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["h:1"]}, {"name": "v2", "endpoints": ["h:2"]}],
        "rollout": {"candidate": "v2", "stages": [{"weight_bp": 100}],
          "gates": {"predictions": {"max_psi": 0.1}}}}]})");
    ASSERT_FALSE(no_predictions);
    EXPECT_TRUE(has_problem(no_predictions.error(), "/models/0/rollout/gates/predictions/max_psi",
                            "predictions"));
}

// One word per enum value, each parsed back to itself, none shared: the admin API, metrics,
// webhooks and the state files all spell them this way.
TEST(Vocabulary, EveryPhaseAndEventTypeRoundTripsThroughItsName) {
    std::set<std::string> names;
    for (auto p : rollout_phases) {
        EXPECT_EQ(parse_rollout_phase(to_string(p)), p);
        EXPECT_TRUE(names.insert(to_string(p)).second) << to_string(p);
    }
    names.clear();
    for (auto t : event_types) {
        EXPECT_EQ(parse_event_type(to_string(t)), t);
        EXPECT_TRUE(names.insert(to_string(t)).second) << to_string(t);
    }
    EXPECT_FALSE(parse_rollout_phase("running"));
    EXPECT_FALSE(parse_event_type("Promoted"));
    EXPECT_TRUE(is_live(rollout_phase::paused));
    EXPECT_FALSE(is_live(rollout_phase::rolled_back));
}

// deploy/kubernetes/secret.yaml ships tokens anybody can read ("replace-me-..."): the files a
// config names are checked for them as for weak tokens, so --check-config (and start) refuse
// them and `kubectl apply -k` as shipped fails closed.
TEST(ConfigFiles, AdminTokensMustBeSecretsOfTheirOwn) {
    test::temp_dir dir;
    auto token_file = [&](const std::string& name, const std::string& text) {
        std::ofstream(dir.path + "/" + name) << text;
        return dir.path + "/" + name;
    };
    const std::string files[] = {
        token_file("operator", "replace-me-operator-token-0000000000\n"),
        token_file("viewer", "Replace-Me-viewer-token-00000000000"),
        token_file("short", "abc\n"),
        token_file("good", "0123456789abcdef0123456789abcdef\n"),
        dir.path + "/missing"};
    std::string tokens;
    for (std::size_t i = 0; i < std::size(files); ++i) {
        tokens += std::string(i ? "," : "") + R"({"name": "t)" + std::to_string(i) +
                  R"(", "role": "operator", "file": ")" + files[i] + R"("})";
    }
    auto cfg = parse(R"({"listeners": [{"port": 8080}], "admin": {"tokens": [)" + tokens +
                     R"(]}, "models": [{"name": "m", "stable": "v1",
                        "versions": [{"name": "v1", "endpoints": ["h:1"]}]}]})");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    error e{"bad_file", "", check_files(*cfg)};
    EXPECT_EQ(e.problems.size(), 4u) << e.describe();
    EXPECT_TRUE(has_problem(e, "/admin/tokens/0/file", "holds a placeholder")) << e.describe();
    EXPECT_TRUE(has_problem(e, "/admin/tokens/1/file", "holds a placeholder")) << e.describe();
    EXPECT_TRUE(has_problem(e, "/admin/tokens/2/file", "at least 16 characters")) << e.describe();
    EXPECT_TRUE(has_problem(e, "/admin/tokens/4/file", "cannot read")) << e.describe();
    for (const auto& p : e.problems) {
        EXPECT_EQ(p.message.find("replace-me-operator"), std::string::npos) << "never the token";
    }

    EXPECT_EQ(judge_admin_token("replace-me-operator-token-0000000000"),
              token_verdict::placeholder);
    EXPECT_EQ(judge_admin_token("0123456789abcdef"), token_verdict::ok);
    EXPECT_EQ(judge_admin_token("not-replace-me-0123456789"), token_verdict::ok);
    EXPECT_EQ(judge_admin_token("replace-me"), token_verdict::too_weak);
}

}  // namespace
}  // namespace stagegate::config

namespace stagegate::config {
namespace {

std::string with_logging(const std::string& logging) {
    return R"({"listeners": [{"port": 8080}], "logging": )" + logging + R"(,
      "models": [{"name": "m", "versions": [{"name": "v1", "endpoints": ["h:1"]}],
                  "stable": "v1"}]})";
}

TEST(ConfigLogging, AccessLogOffByDefaultAndReadWhenGiven) {
    auto plain = parse(minimal);
    ASSERT_TRUE(plain) << plain.error().describe();
    EXPECT_EQ(plain->log.access.path, "");
    EXPECT_EQ(plain->log.level, "info");
    auto on = parse(with_logging(
        R"({"level": "debug", "access_log": {"path": "stdout", "format": "%status% %path%", "sample": 0.5}})"));
    ASSERT_TRUE(on) << on.error().describe();
    EXPECT_EQ(on->log.level, "debug");
    EXPECT_EQ(on->log.access.path, "stdout");
    EXPECT_EQ(on->log.access.format, "%status% %path%");
    EXPECT_EQ(on->log.access.sample, 0.5);
}

TEST(ConfigLogging, ProblemsSayWhatIsWrongAndWhere) {
    auto r = parse(with_logging(
        R"({"level": "loud", "access_log": {"format": "%status% %latency%", "sample": 2, "rotate": 1}})"));
    ASSERT_FALSE(r);
    EXPECT_TRUE(has_problem(r.error(), "/logging/level", "debug, info, warn or error"))
        << r.error().describe();
    EXPECT_TRUE(has_problem(r.error(), "/logging/access_log/path", "required"));
    EXPECT_TRUE(has_problem(r.error(), "/logging/access_log/format", "unknown field %latency%"));
    EXPECT_TRUE(has_problem(r.error(), "/logging/access_log/format", "duration_ms"));  // the list
    EXPECT_TRUE(has_problem(r.error(), "/logging/access_log/sample", ""));
    EXPECT_TRUE(has_problem(r.error(), "/logging/access_log/rotate", "unknown key"));
    EXPECT_EQ(access_log_format_problem("%status"),
              "a % at offset 0 is not closed: write %field% or %%");
    EXPECT_EQ(access_log_format_problem("100%% %status%"), std::nullopt);
    EXPECT_NE(access_log_format_problem(""), std::nullopt);
}

TEST(ConfigLogging, ChangingItNeedsARestart) {
    auto a = parse(minimal);
    auto b = parse(with_logging(R"({"access_log": {"path": "stdout"}})"));
    ASSERT_TRUE(a && b);
    auto problems = reload_problems(*a, *b);
    EXPECT_TRUE(std::any_of(problems.begin(), problems.end(),
                            [](const problem& p) { return p.path == "/logging"; }));
}

TEST(ConfigLogging, CheckFilesNamesAnAccessLogThatCannotBeOpened) {
    auto cfg = parse(with_logging(R"({"access_log": {"path": "/nonexistent-dir/a.log"}})"));
    ASSERT_TRUE(cfg) << cfg.error().describe();
    auto problems = check_files(*cfg);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_EQ(problems[0].path, "/logging/access_log/path");
}

TEST(ConfigTls, CheckFilesNamesCertificatesAndKeysThatCannotBeRead) {
    // What --check-config reports before a start would fail on them.
    auto cfg = parse(R"({"listeners": [{"port": 8443, "tls": {"cert_file": "/nonexistent/l.pem",
                                                             "key_file": "/nonexistent/l.key"}}],
        "models": [{"name": "m", "stable": "v1", "versions": [
          {"name": "v1", "endpoints": ["h:1"]},
          {"name": "v2", "endpoints": ["h:2"], "tls": {"ca_file": "/nonexistent/ca.pem",
            "cert_file": "/nonexistent/c.pem", "key_file": "/nonexistent/c.key"}}]}]})");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    error e{"bad_file", "", check_files(*cfg)};
    EXPECT_EQ(e.problems.size(), 5u) << e.describe();
    EXPECT_TRUE(has_problem(e, "/listeners/0/tls/cert_file", "/nonexistent/l.pem"))
        << e.describe();
    EXPECT_TRUE(has_problem(e, "/listeners/0/tls/key_file", "cannot read")) << e.describe();
    EXPECT_TRUE(has_problem(e, "/models/0/versions/1/tls/ca_file", "cannot read"))
        << e.describe();
    EXPECT_TRUE(has_problem(e, "/models/0/versions/1/tls/cert_file", "/nonexistent/c.pem"))
        << e.describe();
    EXPECT_TRUE(has_problem(e, "/models/0/versions/1/tls/key_file", "cannot read"))
        << e.describe();
}

// README's "LLM serving" config: OpenAI matching only, stream timeouts, streaming gates.
TEST(ConfigParse, LlmExampleConfigIsValid) {
    auto cfg = load_file(std::string(STAGEGATE_SOURCE_DIR) + "/config/llm.json");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    const auto& m = cfg->models[0];
    EXPECT_FALSE(m.route.kserve_v1);
    EXPECT_TRUE(m.route.openai);
    EXPECT_EQ(m.timeouts.total.count(), 0);
    ASSERT_TRUE(m.rollout_spec);
    EXPECT_FALSE(m.rollout_spec->gates.max_ttft_ratio.empty());
    EXPECT_FALSE(m.rollout_spec->gates.min_tokens_per_second_ratio.empty());
}

// README's "gRPC" config: two h2c versions and a rollout.
TEST(ConfigParse, GrpcExampleConfigIsValid) {
    auto cfg = load_file(std::string(STAGEGATE_SOURCE_DIR) + "/config/grpc.json");
    ASSERT_TRUE(cfg) << cfg.error().describe();
    const auto& m = cfg->models[0];
    ASSERT_EQ(m.versions.size(), 2u);
    EXPECT_EQ(m.versions[0].protocol, upstream_protocol::h2c);
    EXPECT_EQ(m.versions[1].protocol, upstream_protocol::h2c);
    EXPECT_TRUE(m.route.kserve_v2);
    ASSERT_TRUE(m.rollout_spec);
    EXPECT_EQ(cfg->grpc.model_header, "x-model-name");
}

TEST(ConfigParse, VersionProtocolIsHttp1H2cOrH2OverTls) {
    auto with = [](const std::string& version) {
        return parse(R"({"listeners": [{"port": 8080}], "models": [{"name": "m", "stable": "v1",
            "versions": [)" + version + "]}]}");
    };
    auto plain = with(R"({"name": "v1", "endpoints": ["127.0.0.1:9001"]})");
    ASSERT_TRUE(plain) << plain.error().describe();
    EXPECT_EQ(plain->models[0].versions[0].protocol, upstream_protocol::http1);
    auto h2c = with(R"({"name": "v1", "protocol": "h2c", "endpoints": ["127.0.0.1:9001"]})");
    ASSERT_TRUE(h2c) << h2c.error().describe();
    EXPECT_EQ(h2c->models[0].versions[0].protocol, upstream_protocol::h2c);
    // "h2" is HTTP/2 over TLS: the version's "tls" settings, or TLS's defaults without them.
    auto h2 = with(R"({"name": "v1", "protocol": "h2", "endpoints": ["127.0.0.1:9001"]})");
    ASSERT_TRUE(h2) << h2.error().describe();
    EXPECT_EQ(h2->models[0].versions[0].protocol, upstream_protocol::h2);
    ASSERT_TRUE(h2->models[0].versions[0].tls);
    EXPECT_TRUE(h2->models[0].versions[0].tls->verify);
    auto h2_tls = with(R"({"name": "v1", "protocol": "h2", "endpoints": ["127.0.0.1:9001"],
                           "tls": {"ca_file": "/etc/ca.pem", "server_name": "triton"}})");
    ASSERT_TRUE(h2_tls) << h2_tls.error().describe();
    EXPECT_EQ(h2_tls->models[0].versions[0].tls->server_name, "triton");
    // Mutual TLS: a client certificate and its key, both or neither.
    auto mtls = with(R"({"name": "v1", "protocol": "h2", "endpoints": ["127.0.0.1:9001"],
                         "tls": {"cert_file": "/etc/gw.pem", "key_file": "/etc/gw.key"}})");
    ASSERT_TRUE(mtls) << mtls.error().describe();
    EXPECT_EQ(mtls->models[0].versions[0].tls->cert_file, "/etc/gw.pem");
    EXPECT_EQ(mtls->models[0].versions[0].tls->key_file, "/etc/gw.key");
    auto half = with(R"({"name": "v1", "protocol": "h2", "endpoints": ["127.0.0.1:9001"],
                         "tls": {"cert_file": "/etc/gw.pem"}})");
    ASSERT_FALSE(half);
    EXPECT_TRUE(has_problem(half.error(), "/models/0/versions/0/tls/key_file", "both"))
        << half.error().describe();
    auto typo = with(R"({"name": "v1", "protocol": "http2", "endpoints": ["127.0.0.1:9001"]})");
    ASSERT_FALSE(typo);
    EXPECT_TRUE(has_problem(typo.error(), "/models/0/versions/0/protocol", "\"h2c\""))
        << typo.error().describe();
    auto tls = with(R"({"name": "v1", "protocol": "h2c", "tls": {},
                        "endpoints": ["127.0.0.1:9001"]})");
    ASSERT_FALSE(tls);
    EXPECT_TRUE(has_problem(tls.error(), "/models/0/versions/0/protocol", "cleartext"))
        << tls.error().describe();
}

TEST(ConfigParse, GrpcModelHeaderIsAPlainMetadataKey) {
    auto with = [](const std::string& header) {
        return parse(R"({"listeners": [{"port": 8080}], "grpc": {"model_header": ")" + header +
                     R"("}, "models": [{"name": "m", "stable": "v1",
            "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]}]}]})");
    };
    auto plain = parse(minimal);
    ASSERT_TRUE(plain) << plain.error().describe();
    EXPECT_EQ(plain->grpc.model_header, "");  // off unless set
    auto named = with("x-model-name");
    ASSERT_TRUE(named) << named.error().describe();
    EXPECT_EQ(named->grpc.model_header, "x-model-name");
    // The protocol's own keys, binary metadata and non-key characters are refused.
    for (const std::string bad : {"grpc-model", "x-model-bin", "x model", "x:model"}) {
        auto refused = with(bad);
        ASSERT_FALSE(refused) << bad;
        EXPECT_TRUE(has_problem(refused.error(), "/grpc/model_header", "metadata key"))
            << refused.error().describe();
    }
}

TEST(ConfigLimits, MaxConcurrentStreamsDefaultsToNginxsAndIsBounded) {
    auto cfg = parse(minimal);
    ASSERT_TRUE(cfg) << cfg.error().describe();
    EXPECT_EQ(cfg->limit.max_concurrent_streams, 128u);
    auto with = [](const std::string& value) {
        return parse(R"({"listeners": [{"port": 8080}], "limits": {"max_concurrent_streams": )" +
                     value + R"(},
          "models": [{"name": "m", "stable": "v1",
                      "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]}]}]})");
    };
    auto set = with("1000");
    ASSERT_TRUE(set) << set.error().describe();
    EXPECT_EQ(set->limit.max_concurrent_streams, 1000u);
    auto zero = with("0");
    ASSERT_FALSE(zero);
    EXPECT_TRUE(has_problem(zero.error(), "/limits/max_concurrent_streams", ""))
        << zero.error().describe();
}

}  // namespace
}  // namespace stagegate::config
