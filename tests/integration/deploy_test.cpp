// Dashboards and rules never go stale: every metric name the Grafana dashboard and the
// Prometheus rules use is one a live stagegate exposes on /metrics (or a recording rule that
// the rules define).
#include "support/admin.hpp"

#include "stagegate/control/collectors.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

namespace stagegate::test {
namespace {

namespace fs = std::filesystem;

// Sample names in a Prometheus text exposition.
std::set<std::string> exposed_names(const std::string& text) {
    std::set<std::string> names;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        names.insert(line.substr(0, line.find_first_of("{ ")));
    }
    return names;
}

std::vector<fs::path> files_under(const std::string& dir, const std::string& extension) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.is_regular_file() && e.path().extension() == extension) {
            out.push_back(e.path());
        }
    }
    return out;
}

TEST(Deploy, DashboardAndRulesUseOnlyExposedMetricNames) {
    // Every kind of series present: a rollout whose stage has a maximum duration, versions
    // with a training time, a model with a maximum age, predictions read from its answers.
    admin_stack a(true, [](config::gateway& c) {
        c.models[0].rollout_spec->stages[0].max_duration = std::chrono::hours(2);
        c.models[0].versions[0].trained_at = 1'790'000'000;
        c.models[0].versions[1].trained_at = 1'795'000'000;
        c.models[0].max_version_age = std::chrono::hours(720);
        config::predictions p;
        p.label = p.value = "/predictions/0";
        c.models[0].prediction = p;
    });
    ASSERT_EQ(request(a.s.port, "POST", "/v1/models/m:predict", "{}").status, 200);
    // And one answer cut short (the backend promises more body than it sends).
    request(a.s.port, "POST", "/v1/models/m:predict", "{}", {{"X-Mock-Truncate", "1"}});
    // And an OpenAI answer with usage (its tokens).
    ASSERT_EQ(request(a.s.port, "POST", "/v1/chat/completions", R"({"model":"m","messages":[]})")
                  .status,
              200);
    // A request is counted once its last byte is out, which may be just after the client has
    // it: wait for its series.
    std::set<std::string> exposed;
    ASSERT_TRUE(wait_until([&] {
        auto metrics = api(a.admin, "GET", "/metrics");
        exposed = exposed_names(metrics.body);
        return metrics.status == 200 && exposed.count("stagegate_requests_total") &&
               exposed.count("stagegate_predictions_total") &&
               exposed.count("stagegate_responses_cut_short_total") &&
               exposed.count("stagegate_gen_ai_tokens_total");
    }));
    // Cluster mode's families ("store": "etcd"), as a replica renders them.
    metrics::text_writer cluster_only;
    control::cluster_gauges replica;
    replica.replica = "r0";
    replica.leader = true;
    replica.etcd_up = true;
    replica.endpoints_up = {{"http://127.0.0.1:2379", true}};
    control::write_cluster_metrics(cluster_only, replica);
    for (const auto& name : exposed_names(cluster_only.text())) {
        exposed.insert(name);
    }
    for (const char* expected :
         {"stagegate_cluster_etcd_up", "stagegate_cluster_leader",
          "stagegate_cluster_rollout_state_synced", "stagegate_cluster_rollout_state_revision",
          "stagegate_rollout_phase", "stagegate_rollout_stage_max_duration_seconds",
          "stagegate_model_age_seconds", "stagegate_model_max_age_seconds",
          "stagegate_version_role", "stagegate_rollout_decisions_total",
          "stagegate_predictions_total"}) {
        EXPECT_TRUE(exposed.count(expected)) << expected;
    }

    const std::string deploy = std::string(STAGEGATE_SOURCE_DIR) + "/deploy";
    std::vector<fs::path> files = files_under(deploy + "/grafana", ".json");
    auto rules = files_under(deploy + "/prometheus", ".yml");
    files.insert(files.end(), rules.begin(), rules.end());
    ASSERT_GE(files.size(), 4u);  // dashboard, scrape config, recording rules, alerts

    std::set<std::string> recorded;
    const std::regex record_re(R"(record:\s*([a-zA-Z_:][a-zA-Z0-9_:]*))");
    for (const auto& f : rules) {
        const auto text = read_file(f.string());
        for (std::sregex_iterator it(text.begin(), text.end(), record_re), end; it != end; ++it) {
            recorded.insert((*it)[1]);
        }
    }
    EXPECT_GE(recorded.size(), 7u);

    const std::regex name_re(R"(\bstagegate[_:][a-zA-Z0-9_:]*)");
    int checked = 0;
    for (const auto& f : files) {
        const auto text = read_file(f.string());
        std::set<std::string> used;
        for (std::sregex_iterator it(text.begin(), text.end(), name_re), end; it != end; ++it) {
            used.insert(it->str());
        }
        for (const auto& name : used) {
            if (name.find(':') != std::string::npos) {
                EXPECT_TRUE(recorded.count(name)) << f.filename() << " uses " << name
                                                  << ", which no recording rule defines";
            } else {
                EXPECT_TRUE(exposed.count(name)) << f.filename() << " uses " << name
                                                 << ", which stagegate does not expose";
            }
            ++checked;
        }
    }
    EXPECT_GE(checked, 20);
}

}  // namespace
}  // namespace stagegate::test
