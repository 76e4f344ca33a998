// Live metrics end to end: counts per version and stage, the admin listener's /metrics and
// JSON views, promtool's verdict on the exposition, and a real Prometheus server scraping it.
#include "support/ports.hpp"
#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

#include "stagegate/metrics/exposition.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <functional>
#include <cstdio>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

namespace stagegate::test {
namespace {

using json = nlohmann::json;
const std::string predict_body = R"({"instances":[[1,2]]})";

void send(std::uint16_t port, const std::string& version, int n, const std::string& delay = "") {
    connection c(port);
    for (int i = 0; i < n; ++i) {
        header_list h{{"X-Stagegate-Force-Version", version}};
        if (!delay.empty()) {
            h.push_back({"X-Mock-Delay-Ms", delay});
        }
        ASSERT_EQ(c.request("POST", "/v1/models/m:predict", predict_body, h).status, 200u);
    }
}

const server::version_metrics* find(const std::vector<server::version_metrics>& all,
                                    const std::string& v);

// A response reaches the client a moment before its worker records it, so reads wait (with a
// deadline) for the expected count instead of assuming it is already there.
std::vector<server::version_metrics> read_when(app::gateway& gw,
                                                const std::function<bool(
                                                    const std::vector<server::version_metrics>&)>& ok) {
    std::vector<server::version_metrics> all;
    wait_until([&] {
        all = gw.read_metrics();
        return ok(all);
    });
    return all;
}

const server::version_metrics* find(const std::vector<server::version_metrics>& all,
                                    const std::string& v) {
    for (const auto& m : all) {
        if (m.version == v) {
            return &m;
        }
    }
    return nullptr;
}

TEST(Metrics, CountsPerVersionAndStageAreExact) {
    auto s = stack::make(0, 2);
    send(s.port, "v1", 300);
    send(s.port, "v2", 100);
    request(s.port, "POST", "/v1/models/nope:predict", predict_body);
    request(s.port, "POST", "/v1/models/m:predict", predict_body,
            {{"X-Stagegate-Force-Version", "v2"}, {"X-Mock-Status", "503"}});
    auto all = read_when(*s.gateway, [](const auto& a) {
        return find(a, "v1") && find(a, "v2") &&
               find(a, "v1")->since_stage_start.requests() >= 300 &&
               find(a, "v2")->since_stage_start.requests() >= 101;
    });
    const auto* v1 = find(all, "v1");
    const auto* v2 = find(all, "v2");
    ASSERT_TRUE(v1 && v2);
    EXPECT_EQ(v1->stage, "canary");
    EXPECT_EQ(v1->since_stage_start.requests(), 300u);
    EXPECT_EQ(v2->since_stage_start.requests(), 101u);
    EXPECT_EQ(v2->since_stage_start.server_errors(), 1u);
    EXPECT_EQ(v1->window.counts.requests(), 300u);
    EXPECT_EQ(v1->since_stage_start.latency.count(), 300u);
    EXPECT_GT(v1->since_stage_start.latency.quantile_micros(0.5), 0.0);

    // A new stage is a new series: counts since stage start begin at zero.
    ASSERT_TRUE(s.gateway->set_traffic("m", {{"v1", 7500}, {"v2", 2500}}, "canary-25"));
    ASSERT_TRUE(wait_until([&] { return s.gateway->applied_generation() >= 2; }));
    send(s.port, "v2", 10);
    all = read_when(*s.gateway, [](const auto& a) {
        return find(a, "v2")->since_stage_start.requests() >= 10;
    });
    EXPECT_EQ(find(all, "v2")->stage, "canary-25");
    EXPECT_EQ(find(all, "v2")->since_stage_start.requests(), 10u);
}

TEST(Metrics, UpstreamFailuresAreCountedByKind) {
    refused_port dead;  // held for the whole test: connects to it are refused, never accepted
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[1].endpoints[0].port = dead.port();
        c.models[0].timeouts.first_byte = std::chrono::milliseconds(200);
    });
    request(s.port, "POST", "/v1/models/m:predict", predict_body,
            {{"X-Stagegate-Force-Version", "v2"}});  // connect refused
    request(s.port, "POST", "/v1/models/m:predict", predict_body,
            {{"X-Mock-Delay-Ms", "2000"}});  // timeout on v1
    request(s.port, "POST", "/v1/models/m:predict", predict_body, {{"X-Mock-Reset", "1"}});
    request(s.port, "POST", "/v1/models/m:predict", predict_body, {{"X-Mock-Garbage", "1"}});
    auto all = read_when(*s.gateway, [](const auto& a) {
        return find(a, "v1")->since_stage_start.requests() >= 3 &&
               find(a, "v2")->since_stage_start.requests() >= 1;
    });
    const auto& v1 = find(all, "v1")->since_stage_start;
    const auto& v2 = find(all, "v2")->since_stage_start;
    EXPECT_EQ(v2.upstream_failures[0], 1u);  // connect
    EXPECT_EQ(v1.upstream_failures[1], 1u);  // timeout
    EXPECT_EQ(v1.upstream_failures[2], 1u);  // reset
    EXPECT_EQ(v1.upstream_failures[3], 1u);  // protocol
    EXPECT_EQ(v1.server_errors(), 3u);       // 504, 502, 502
    EXPECT_EQ(v2.codes[metrics::code_slot(502)], 1u);
}

TEST(Metrics, AdminListenerServesPrometheusTextAndJson) {
    auto s = stack::make(0, 2);
    ASSERT_NE(s.gateway->admin_port(), 0);
    send(s.port, "v1", 30);
    send(s.port, "v2", 20);
    request(s.port, "GET", "/nowhere");
    request(s.port, "POST", "/v1/models/nope:predict", predict_body);
    request(s.port, "POST", "/v1/chat/completions", R"({"model":"nope"})");
    read_when(*s.gateway, [](const auto& a) {
        return find(a, "v1")->since_stage_start.requests() >= 30 &&
               find(a, "v2")->since_stage_start.requests() >= 20;
    });
    auto m = request(s.gateway->admin_port(), "GET", "/metrics");
    ASSERT_EQ(m.status, 200u);
    EXPECT_EQ(m.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_NE(m.body.find(R"(stagegate_requests_total{model="m",version="v1",stage="canary",code="200"} 30)"),
              std::string::npos)
        << m.body.substr(0, 2000);
    EXPECT_NE(m.body.find(R"(stagegate_traffic_weight_ratio{model="m",version="v1"} 1)"),
              std::string::npos);
    EXPECT_NE(m.body.find("stagegate_request_duration_seconds_bucket"), std::string::npos);
    EXPECT_NE(m.body.find(R"(stagegate_build_info{version="0.1.0",commit=")"), std::string::npos);
    EXPECT_NE(m.body.find("process_resident_memory_bytes"), std::string::npos);
    EXPECT_NE(m.body.find(R"(stagegate_unrouted_requests_total{reason="no_route"} 1)"),
              std::string::npos);
    EXPECT_NE(m.body.find(R"(stagegate_unrouted_requests_total{reason="unknown_model"} 2)"),
              std::string::npos);
    EXPECT_NE(m.body.find(R"(stagegate_upstream_connections{model="m",version="v1",state="idle"} 1)"),
              std::string::npos);

    auto j = request(s.gateway->admin_port(), "GET", "/api/v1/models/m/metrics");
    ASSERT_EQ(j.status, 200u) << j.body;
    auto body = json::parse(j.body);
    ASSERT_EQ(body["versions"].size(), 2u);
    EXPECT_EQ(body["versions"][0]["version"], "v1");
    EXPECT_EQ(body["versions"][0]["since_stage_start"]["requests"], 30);
    EXPECT_EQ(body["versions"][1]["window"]["requests"], 20);
    EXPECT_GT(body["versions"][1]["window"]["rps"].get<double>(), 0.0);
    EXPECT_GT(body["versions"][0]["since_stage_start"]["latency_seconds"]["p99"].get<double>(), 0.0);

    auto unknown = request(s.gateway->admin_port(), "GET", "/api/v1/models/nope/metrics");
    EXPECT_EQ(unknown.status, 404u);
    EXPECT_EQ(json::parse(unknown.body)["error"]["code"], "unknown_model");
    EXPECT_EQ(request(s.gateway->admin_port(), "GET", "/healthz").status, 200u);
    EXPECT_EQ(request(s.gateway->admin_port(), "GET", "/readyz").status, 200u);
    EXPECT_EQ(request(s.gateway->admin_port(), "POST", "/metrics").status, 405u);
}

std::string tool(const std::string& name) {
    for (const char* dir : {"/usr/bin/", "/usr/local/bin/"}) {
        std::string path = std::string(dir) + name;
        if (::access(path.c_str(), X_OK) == 0) {
            return path;
        }
    }
    return {};
}

TEST(Metrics, ExpositionPassesPromtool) {
    auto promtool = tool("promtool");
    ASSERT_FALSE(promtool.empty())
        << "promtool not found: install Debian's prometheus package (.ci/run does)";
    auto s = stack::make(500, 2);
    send(s.port, "v1", 20);
    send(s.port, "v2", 5);
    request(s.port, "GET", "/nowhere");
    auto m = request(s.gateway->admin_port(), "GET", "/metrics");
    ASSERT_EQ(m.status, 200u);
    char path[] = "/tmp/stagegate-metrics-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, m.body.data(), m.body.size()), static_cast<ssize_t>(m.body.size()));
    ::close(fd);
    std::string cmd = promtool + " check metrics < " + path + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) {
        out += buf;
    }
    int status = ::pclose(p);
    EXPECT_EQ(WEXITSTATUS(status), 0) << out;
    EXPECT_EQ(out, "") << "promtool found problems:\n" << out;
    ::unlink(path);
}

// --- A real Prometheus server -----------------------------------------------------------

std::string url_encode(const std::string& s) {
    std::string out;
    char hex[4];
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            std::snprintf(hex, sizeof hex, "%%%02X", c);
            out += hex;
        }
    }
    return out;
}

// The value of a scalar-ish instant query (first sample), or NaN.
double query(std::uint16_t port, const std::string& promql) {
    auto r = request(port, "GET", "/api/v1/query?query=" + url_encode(promql));
    if (r.status != 200) {
        return std::nan("");
    }
    auto j = json::parse(r.body, nullptr, false);
    if (!j.is_object() || j["status"] != "success" || j["data"]["result"].empty()) {
        return std::nan("");
    }
    return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
}

TEST(Metrics, RealPrometheusScrapesExactCountsAndQuantiles) {
    auto prometheus = tool("prometheus");
    ASSERT_FALSE(prometheus.empty())
        << "prometheus not found: install Debian's prometheus package (.ci/run does)";
    auto s = stack::make(0, 2);
    temp_dir tmp;
    const std::string dir = tmp.path;
    std::uint16_t prom_port = closed_port();
    {
        std::ofstream cfg(dir + "/prometheus.yml");
        cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
               "scrape_configs:\n  - job_name: stagegate\n    static_configs:\n"
               "      - targets: ['127.0.0.1:"
            << s.gateway->admin_port() << "']\n";
    }
    pid_t pid = ::fork();
    if (pid == 0) {
        std::string config = "--config.file=" + dir + "/prometheus.yml";
        std::string storage = "--storage.tsdb.path=" + dir + "/data";
        std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(prom_port);
        std::freopen((dir + "/prometheus.log").c_str(), "w", stderr);
        ::execl(prometheus.c_str(), prometheus.c_str(), config.c_str(), storage.c_str(),
                listen.c_str(), "--log.level=warn", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    struct reaper {
        pid_t pid;
        ~reaper() {
            ::kill(pid, SIGTERM);
            ::waitpid(pid, nullptr, 0);
        }
    } reap{pid};

    // Known traffic: v1 gets 400 requests (10 % of them 40 ms slow), v2 gets 150.
    send(s.port, "v1", 360, "2");
    send(s.port, "v1", 40, "40");
    send(s.port, "v2", 150, "2");
    const std::string v1 = R"(sum(stagegate_requests_total{model="m",version="v1"}))";
    const std::string v2 = R"(sum(stagegate_requests_total{model="m",version="v2"}))";
    ASSERT_TRUE(wait_until([&] { return query(prom_port, v1) == 400 && query(prom_port, v2) == 150; },
                           std::chrono::seconds(60)))
        << "v1=" << query(prom_port, v1) << " v2=" << query(prom_port, v2);

    auto all = read_when(*s.gateway, [](const auto& a) {
        return find(a, "v1")->since_stage_start.requests() >= 400;
    });
    const auto& hist = find(all, "v1")->since_stage_start.latency;
    const double own_p99 = hist.quantile_micros(0.99) / 1e6;
    // Prometheus only sees the coarse buckets: its estimate must land in the bucket that
    // holds the gateway's own p99.
    double lower = 0;
    double upper = metrics::duration_buckets.back();
    for (double b : metrics::duration_buckets) {
        if (b >= own_p99) {
            upper = b;
            break;
        }
        lower = b;
    }
    const double prom_p99 = query(
        prom_port,
        R"(histogram_quantile(0.99, sum by (le) (stagegate_request_duration_seconds_bucket{model="m",version="v1"})))");
    EXPECT_GE(prom_p99, lower * (1 - metrics::latency_histogram::max_relative_error));
    EXPECT_LE(prom_p99, upper * (1 + metrics::latency_histogram::max_relative_error));
    EXPECT_GT(own_p99, 0.035);  // the 40 ms requests are the top 10 %
}

}  // namespace
}  // namespace stagegate::test
