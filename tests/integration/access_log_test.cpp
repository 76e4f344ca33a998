// The access log over real sockets: one line per request, what each line says for a routed
// answer, the gateway's own errors, a malformed request and a template format; sampling keeps
// every error.
#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

std::vector<std::string> lines_of(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

// Waits until the file holds `n` lines (the writer hands them over within a few ms).
std::vector<std::string> await_lines(const std::string& path, std::size_t n) {
    std::vector<std::string> got;
    EXPECT_TRUE(wait_until([&] {
        got = lines_of(path);
        return got.size() >= n;
    })) << "lines: " << got.size() << " of " << n;
    return got;
}

stack logging_stack(const std::string& path, const std::string& format, double sample = 1.0,
                    std::uint32_t candidate_bp = 0, mockmodel::options v2 = {}) {
    return stack::make(
        candidate_bp, 2,
        [&](config::gateway& cfg) {
            cfg.log.access.path = path;
            cfg.log.access.format = format;
            cfg.log.access.sample = sample;
        },
        v2);
}

TEST(AccessLog, EachRequestIsOneJsonLineSayingWhereItWentAndHowItEnded) {
    temp_dir dir;
    const auto path = dir.path + "/access.log";
    auto s = logging_stack(path, "json", 1.0, 10000);
    auto ok = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                      {{"X-Request-Id", "req-1"}, {"X-User", "alice"}});
    ASSERT_EQ(ok.status, 200u) << ok.error << ok.body;
    auto missing = request(s.port, "POST", "/v1/models/nope:predict", predict_body,
                           {{"X-Request-Id", "req-2"}});
    ASSERT_EQ(missing.status, 404u);
    auto forced = request(s.port, "POST", "/v1/models/m:predict", predict_body,
                          {{"X-Request-Id", "req-3"}, {"X-Stagegate-Force-Version", "v1"}});
    ASSERT_EQ(forced.status, 200u);
    connection bad(s.port);
    auto garbage = bad.raw(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx");
    ASSERT_EQ(garbage.status, 400u);

    const auto lines = await_lines(path, 4);
    ASSERT_EQ(lines.size(), 4u);
    std::map<std::string, json> by_id;
    json malformed;
    for (const auto& line : lines) {
        auto j = json::parse(line);  // every line is one JSON object
        ASSERT_TRUE(j.is_object()) << line;
        for (auto f : config::access_log_fields) {
            EXPECT_TRUE(j.contains(std::string(f))) << f << " missing in " << line;
        }
        EXPECT_TRUE(j["time"].is_string());
        EXPECT_EQ(j["time"].get<std::string>().size(), 24u) << line;  // 2026-12-04T18:00:00.123Z
        if (j["request_id"].is_string()) {
            by_id[j["request_id"].get<std::string>()] = j;
        }
        if (j["status"] == 400) {
            malformed = j;
        }
    }
    const auto& routed = by_id["req-1"];
    EXPECT_EQ(routed["method"], "POST");
    EXPECT_EQ(routed["path"], "/v1/models/m:predict");
    EXPECT_EQ(routed["protocol"], "HTTP/1.1");
    EXPECT_EQ(routed["model"], "m");
    EXPECT_EQ(routed["version"], "v2");
    EXPECT_EQ(routed["stage"], "canary");
    EXPECT_EQ(routed["route"], "sticky");
    EXPECT_EQ(routed["status"], 200);
    EXPECT_TRUE(routed["code"].is_null());
    EXPECT_EQ(routed["bytes_received"], predict_body.size());
    EXPECT_EQ(routed["bytes_sent"], ok.body.size());
    EXPECT_EQ(routed["upstream"], "127.0.0.1:" + std::to_string(s.v2->port()));
    EXPECT_GE(routed["duration_ms"].get<double>(), routed["upstream_head_ms"].get<double>());
    EXPECT_GT(routed["upstream_head_ms"].get<double>(), 0.0);
    EXPECT_EQ(routed["cut_short"], false);
    EXPECT_TRUE(routed["ttft_ms"].is_null());
    EXPECT_EQ(routed["client"].get<std::string>().rfind("127.0.0.1", 0), 0u) << routed.dump();

    const auto& unknown = by_id["req-2"];
    EXPECT_EQ(unknown["status"], 404);
    EXPECT_EQ(unknown["code"], "unknown_model");
    EXPECT_TRUE(unknown["model"].is_null());
    EXPECT_TRUE(unknown["upstream"].is_null());

    EXPECT_EQ(by_id["req-3"]["route"], "forced");
    EXPECT_EQ(by_id["req-3"]["version"], "v1");
    EXPECT_EQ(by_id["req-3"]["upstream"], "127.0.0.1:" + std::to_string(s.v1->port()));

    ASSERT_TRUE(malformed.is_object()) << "no line for the malformed request";
    EXPECT_EQ(malformed["code"], "invalid_content_length");
    EXPECT_EQ(malformed["path"], "/");
    EXPECT_EQ(malformed["method"], "POST");
}

// A template in nginx's style: %field%s replaced, %% a percent sign, absent values "-",
// quotes and control bytes escaped so a line always splits the same way.
TEST(AccessLog, ATemplateFormatWritesTheFieldsItNames) {
    temp_dir dir;
    const auto path = dir.path + "/access.log";
    auto s = logging_stack(path, R"(%method% "%path%" %status% %model%/%version% %code% 100%%)");
    ASSERT_EQ(request(s.port, "POST", "/v1/models/m:predict", predict_body).status, 200u);
    ASSERT_EQ(request(s.port, "GET", "/v1/models/nope?q=%22x%22").status, 404u);
    const auto lines = await_lines(path, 2);
    ASSERT_EQ(lines.size(), 2u);
    // Which line is first depends on the worker that took each connection.
    std::set<std::string> got(lines.begin(), lines.end());
    EXPECT_TRUE(got.count(R"(POST "/v1/models/m:predict" 200 m/v1 - 100%)")) << lines[0] << "\n"
                                                                              << lines[1];
    EXPECT_TRUE(got.count(R"(GET "/v1/models/nope?q=%22x%22" 404 -/- unknown_model 100%)"))
        << lines[0] << "\n" << lines[1];
}

// With sample 0 the successes go unlogged, the errors never (one connection, one worker: the
// lines keep their order): an on-call engineer always finds
// the failures.
TEST(AccessLog, SamplingNeverDropsErrors) {
    temp_dir dir;
    const auto path = dir.path + "/access.log";
    mockmodel::options failing;
    failing.error_rate = 1;
    failing.error_status = 503;
    auto s = logging_stack(path, "%status% %code%", 0.0, 0, failing);
    connection c(s.port);
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(c.request("POST", "/v1/models/m:predict", predict_body).status, 200u);
    }
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(c.request("POST", "/v1/models/nope:predict", predict_body).status, 404u);
    }
    ASSERT_EQ(c.request("POST", "/v1/models/m:predict", predict_body,
                        {{"X-Stagegate-Force-Version", "v2"}})
                  .status,
              503u);  // the backend's own error
    const auto lines = await_lines(path, 4);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines, (std::vector<std::string>{"404 unknown_model", "404 unknown_model",
                                               "404 unknown_model", "503 -"}));
}

TEST(AccessLog, AFileThatCannotBeOpenedStopsTheStartWithTheReason) {
    auto v1 = start_mock("v1");
    auto v2 = start_mock("v2");
    auto cfg = stack_config(v1->port(), v2->port(), 0);
    cfg.log.access.path = "/nonexistent-dir/access.log";
    app::gateway g(std::move(cfg));
    auto started = g.start();
    ASSERT_FALSE(started);
    EXPECT_NE(started.error().describe().find("/nonexistent-dir/access.log"), std::string::npos)
        << started.error().describe();
}

}  // namespace
}  // namespace stagegate::test
