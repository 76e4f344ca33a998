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
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

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
    // Every count below moves after its answer has gone out (and the pooled connection goes
    // back idle after the last v1 answer): wait until the exposition shows them all.
    const std::vector<std::string> counted = {
        R"(stagegate_requests_total{model="m",version="v1",stage="canary",code="200"} 30)",
        R"(stagegate_requests_total{model="m",version="v2",stage="canary",code="200"} 20)",
        R"(stagegate_unrouted_requests_total{reason="no_route"} 1)",
        R"(stagegate_unrouted_requests_total{reason="unknown_model"} 2)",
        R"(stagegate_upstream_connections{model="m",version="v1",state="idle"} 1)"};
    reply m;
    EXPECT_TRUE(wait_until([&] {
        m = request(s.gateway->admin_port(), "GET", "/metrics");
        for (const auto& line : counted) {
            if (m.body.find(line) == std::string::npos) {
                return false;
            }
        }
        return true;
    })) << m.body.substr(0, 4000);
    ASSERT_EQ(m.status, 200u);
    EXPECT_EQ(m.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_NE(m.body.find(R"(stagegate_traffic_weight_ratio{model="m",version="v1"} 1)"),
              std::string::npos);
    EXPECT_NE(m.body.find("stagegate_request_duration_seconds_bucket"), std::string::npos);
    EXPECT_NE(m.body.find(R"(stagegate_build_info{version="0.1.0",commit=")"), std::string::npos);
    EXPECT_NE(m.body.find("process_resident_memory_bytes"), std::string::npos);

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

// What `promtool check metrics` says of an exposition (empty when it finds nothing), and its
// exit status.
std::string promtool_check(const std::string& exposition, int& status) {
    auto promtool = tool("promtool");
    if (promtool.empty()) {
        status = -1;
        return "promtool not found: install Debian's prometheus package (.ci/run does)";
    }
    char path[] = "/tmp/stagegate-metrics-XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) {
        status = -1;
        return "mkstemp failed";
    }
    const bool written = ::write(fd, exposition.data(), exposition.size()) ==
                         static_cast<ssize_t>(exposition.size());
    ::close(fd);
    std::string out;
    status = -1;
    if (written) {
        std::string cmd = promtool + " check metrics < " + path + " 2>&1";
        FILE* p = ::popen(cmd.c_str(), "r");
        char buf[512];
        while (std::fgets(buf, sizeof buf, p)) {
            out += buf;
        }
        status = WEXITSTATUS(::pclose(p));
    }
    ::unlink(path);
    return out;
}

TEST(Metrics, ExpositionPassesPromtool) {
    ASSERT_FALSE(tool("promtool").empty())
        << "promtool not found: install Debian's prometheus package (.ci/run does)";
    auto s = stack::make(500, 2);
    send(s.port, "v1", 20);
    send(s.port, "v2", 5);
    request(s.port, "GET", "/nowhere");
    auto m = request(s.gateway->admin_port(), "GET", "/metrics");
    ASSERT_EQ(m.status, 200u);
    int status = 0;
    const auto out = promtool_check(m.body, status);
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, "") << "promtool found problems:\n" << out;
}

// A shadow stage: every request stable answers is mirrored to the candidate, whose predictions
// are stable's plus 0.25. The mirror series and the comparison of predictions
// (stagegate_prediction_diff, a summary) pass promtool too.
TEST(Metrics, ExpositionWithAMirrorStagePassesPromtool) {
    ASSERT_FALSE(tool("promtool").empty())
        << "promtool not found: install Debian's prometheus package (.ci/run does)";
    temp_dir state;
    mockmodel::options biased;
    biased.bias = 0.25;
    auto s = stack::make(
        0, 2,
        [&](config::gateway& c) {
            config::predictions p;
            p.preset = "tfserving";
            p.label = p.value = "/predictions/0";
            c.models[0].prediction = p;
            config::rollout_stage shadow;
            shadow.name = "shadow";
            shadow.mirror = 10000;
            shadow.min_bake = std::chrono::hours(1);  // stays in the stage for the test
            config::rollout r;
            r.candidate = "v2";
            r.stages = {shadow};
            r.gates.sequential_latency = false;
            c.models[0].rollout_spec = r;
            c.models[0].split.weights = {{"v1", 10000}};
            c.state_dir = state.path;
        },
        biased);
    {
        connection c(s.port);
        for (int i = 0; i < 30; ++i) {
            auto r = c.request("POST", "/v1/models/m:predict", predict_body);
            ASSERT_EQ(r.status, 200u);
            ASSERT_EQ(r.header("x-stagegate-version"), "v1");
        }
    }
    const std::string labels = R"({model="m",version="v2",stage="shadow/mirror",kind="abs")";
    reply m;
    // Mirrors go out after the client's answer: wait for their comparisons to be counted.
    ASSERT_TRUE(wait_until([&] {
        m = request(s.gateway->admin_port(), "GET", "/metrics");
        return m.body.find("stagegate_prediction_diff_count" + labels + "} 30\n") !=
               std::string::npos;
    })) << m.body;
    EXPECT_NE(m.body.find("# TYPE stagegate_prediction_diff summary\n"), std::string::npos);
    EXPECT_NE(m.body.find("stagegate_prediction_diff" + labels + R"(,quantile="0.5"} )"),
              std::string::npos) << m.body;
    EXPECT_NE(m.body.find("stagegate_prediction_diff" + labels + R"(,quantile="0.99"} )"),
              std::string::npos) << m.body;
    EXPECT_NE(m.body.find(R"(stagegate_requests_total{model="m",version="v2",stage="shadow/mirror",code="200"} 30)"),
              std::string::npos) << m.body;
    // The sum is the differences' own: 30 x 0.25.
    const std::string sum = "stagegate_prediction_diff_sum" + labels + "} ";
    const auto at = m.body.find(sum);
    ASSERT_NE(at, std::string::npos) << m.body;
    EXPECT_NEAR(std::stod(m.body.substr(at + sum.size())), 7.5, 1e-6);

    int status = 0;
    const auto out = promtool_check(m.body, status);
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, "") << "promtool found problems:\n" << out;
}

// --- A real Prometheus server -----------------------------------------------------------

std::string read_log(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

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

// A Prometheus server scraping one target every second, its files in `dir`. Prometheus cannot
// be given port 0 and say which port it got, so its port is picked before it binds it
// (pick_port) and another test may take it in between: then it exits saying so, and
// await_up() starts it again on a fresh port, a bounded number of times.
class prometheus_server {
public:
    prometheus_server(std::string binary, std::string dir, std::uint16_t target)
        : binary_(std::move(binary)), dir_(std::move(dir)) {
        std::ofstream cfg(dir_ + "/prometheus.yml");
        cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
               "scrape_configs:\n  - job_name: stagegate\n    static_configs:\n"
               "      - targets: ['127.0.0.1:"
            << target << "']\n";
        cfg.close();
        launch();
    }
    ~prometheus_server() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    prometheus_server(const prometheus_server&) = delete;
    prometheus_server& operator=(const prometheus_server&) = delete;

    std::uint16_t port() const { return port_; }
    std::string log() const { return dir_ + "/prometheus.log"; }

    // True once it listens on port(); false when it cannot come up.
    bool await_up() {
        for (int attempt = 1;; ++attempt) {
            switch (await_listening(pid_, {port_}, std::chrono::seconds(30))) {
                case listen_outcome::listening:
                    return true;
                case listen_outcome::exited:
                    pid_ = -1;  // reaped
                    if (attempt == port_attempts || !log_says_address_in_use(log(), log_from_)) {
                        return false;
                    }
                    launch();  // its port was taken between pick and bind
                    break;
                case listen_outcome::timed_out:
                    return false;
            }
        }
    }

private:
    void launch() {
        port_ = pick_port();
        log_from_ = file_size_or_zero(log());
        ++launches_;
        const std::string config = "--config.file=" + dir_ + "/prometheus.yml";
        // A fresh TSDB each time: nothing of an exited try's lock or head is in the way.
        const std::string storage =
            "--storage.tsdb.path=" + dir_ + "/data-" + std::to_string(launches_);
        const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
        const std::string log_path = log();
        pid_ = ::fork();
        if (pid_ == 0) {
            std::freopen(log_path.c_str(), "a", stderr);
            ::execl(binary_.c_str(), binary_.c_str(), config.c_str(), storage.c_str(),
                    listen.c_str(), "--log.level=warn", static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }

    std::string binary_;
    std::string dir_;
    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
    std::uintmax_t log_from_ = 0;  // where the running try's log lines begin
    int launches_ = 0;
};

TEST(Metrics, RealPrometheusScrapesExactCountsAndQuantiles) {
    auto prometheus = tool("prometheus");
    ASSERT_FALSE(prometheus.empty())
        << "prometheus not found: install Debian's prometheus package (.ci/run does)";
    auto s = stack::make(0, 2);
    temp_dir tmp;
    prometheus_server prom(prometheus, tmp.path, s.gateway->admin_port());

    // Known traffic: v1 gets 400 requests (10 % of them 40 ms slow), v2 gets 150. Sent while
    // Prometheus starts: it scrapes totals, so it need not be up before.
    send(s.port, "v1", 360, "2");
    send(s.port, "v1", 40, "40");
    send(s.port, "v2", 150, "2");
    ASSERT_TRUE(prom.await_up()) << read_log(prom.log());
    const auto prom_port = prom.port();
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
