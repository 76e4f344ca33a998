// The access log's formats, a worker buffer's sampling, cap and hand-over, and the writer.
#include "stagegate/proxy/access_log.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace stagegate::proxy {
namespace {

using json = nlohmann::json;
using std::chrono::system_clock;

access_entry routed_entry() {
    access_entry e;
    e.request_id = "abc";
    e.client = "10.0.0.1";
    e.method = "POST";
    e.path = "/v1/models/m:predict";
    e.model = "m";
    e.version = "v2";
    e.stage = "canary-5";
    e.route = "sticky";
    e.status = 200;
    e.bytes_received = 21;
    e.bytes_sent = 345;
    e.upstream = "127.0.0.1:8001";
    e.upstream_head_us = 1234;
    e.duration_us = 2500;
    return e;
}

// 2026-12-04T18:00:00.500Z, the request having started 2.5 ms before.
system_clock::time_point at_end() {
    return system_clock::time_point(std::chrono::seconds(1796407200)) +
           std::chrono::microseconds(502500);
}

TEST(AccessFormat, JsonIsOneObjectWithEveryFieldAndNullsForWhatIsAbsent) {
    access_format f("json");
    std::string out;
    f.append(out, routed_entry(), at_end());
    ASSERT_EQ(out.back(), '\n');
    auto j = json::parse(out);
    EXPECT_EQ(j.size(), config::access_log_fields.size());
    EXPECT_EQ(j["time"], "2026-12-04T18:00:00.500Z");
    EXPECT_EQ(j["request_id"], "abc");
    EXPECT_EQ(j["protocol"], "HTTP/1.1");
    EXPECT_EQ(j["route"], "sticky");
    EXPECT_EQ(j["status"], 200);
    EXPECT_TRUE(j["code"].is_null());
    EXPECT_EQ(j["bytes_sent"], 345);
    EXPECT_DOUBLE_EQ(j["upstream_head_ms"].get<double>(), 1.234);
    EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 2.5);
    EXPECT_TRUE(j["ttft_ms"].is_null());
    EXPECT_EQ(j["cut_short"], false);
}

TEST(AccessFormat, JsonEscapesWhatAClientSent) {
    access_format f("json");
    auto e = routed_entry();
    e.path = "/a\"b\\c\x01\n";
    std::string out;
    f.append(out, e, at_end());
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);  // one line whatever the input
    EXPECT_EQ(json::parse(out)["path"], "/a\"b\\c\x01\n");
}

TEST(AccessFormat, TemplatesReplaceFieldsAndEscapeValues) {
    access_format f(R"(%time% "%method% %path% %protocol%" %status% %code% %ttft_ms% 50%%)");
    auto e = routed_entry();
    e.path = "/x\"y\x7f";
    std::string out;
    f.append(out, e, at_end());
    EXPECT_EQ(out, "2026-12-04T18:00:00.500Z \"POST /x\\x22y\\x7f HTTP/1.1\" 200 - - 50%\n");
    out.clear();
    e.client_version = 10;
    e.ttft_us = 40;
    e.code = "upstream_timeout";
    f.append(out, e, at_end());
    EXPECT_NE(out.find("HTTP/1.0\" 200 upstream_timeout 0.040 50%"), std::string::npos) << out;
}

// The cached second must follow the clock, also backwards (entries of one buffer are ended
// in order, but the start time is what is printed).
TEST(AccessFormat, TheCachedSecondFollowsTheTime) {
    access_format f("%time%");
    std::string out;
    auto e = routed_entry();
    f.append(out, e, at_end());
    f.append(out, e, at_end() + std::chrono::seconds(61));
    f.append(out, e, at_end());
    EXPECT_EQ(out,
              "2026-12-04T18:00:00.500Z\n2026-12-04T18:01:01.500Z\n2026-12-04T18:00:00.500Z\n");
}

TEST(AccessLogBuffer, SamplingLeavesOutSuccessesButNeverErrors) {
    access_log_buffer b("%status%", 0.25);
    auto e = routed_entry();
    b.add(e, 0.2);   // drawn in
    b.add(e, 0.3);   // drawn out
    e.status = 503;
    b.add(e, 0.9);   // an error: always
    e.status = 200;
    e.cut_short = true;
    b.add(e, 0.9);   // cut short: always
    e.cut_short = false;
    e.status = 404;
    e.code = "unknown_model";
    b.add(e, 0.9);   // the gateway's own error: always
    EXPECT_EQ(b.remaining(), "200\n503\n200\n404\n");
}

TEST(AccessLogBuffer, HandsOverWholeLinesAndHoldsTheRestWhileTheWriterHasTheOther) {
    access_log_buffer b("%request_id%", 1.0);
    EXPECT_EQ(b.take(), nullptr);
    auto e = routed_entry();
    b.add(e, 0);
    b.tick();
    std::string* first = b.take();
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(*first, "abc\n");
    EXPECT_EQ(b.take(), nullptr);  // nothing new
    b.add(e, 0);
    b.tick();  // the writer still has `first`: the line waits
    EXPECT_EQ(b.take(), nullptr);
    EXPECT_EQ(b.remaining(), "abc\n");
    b.give_back(first);
    b.tick();
    std::string* second = b.take();
    ASSERT_NE(second, nullptr);
    EXPECT_EQ(*second, "abc\n");
    b.give_back(second);
}

TEST(AccessLogBuffer, PastItsCapLinesAreDroppedAndCounted) {
    access_log_buffer b("%path%", 1.0);
    std::string long_path(4096, 'p');
    auto e = routed_entry();
    e.path = long_path;
    std::string* held = nullptr;
    b.add(e, 0);
    b.tick();
    held = b.take();  // the writer is stuck with this one
    ASSERT_NE(held, nullptr);
    const std::size_t fits = access_log_buffer::cap_bytes / (long_path.size() + 1) + 1;
    for (std::size_t i = 0; i < fits + 10; ++i) {
        b.add(e, 0);
    }
    EXPECT_EQ(b.dropped(), 10u);
    EXPECT_GE(b.remaining().size(), access_log_buffer::cap_bytes);
    b.give_back(held);
}

TEST(AccessLogWriter, WritesWhatEveryWorkerHandsOverAndTheRestWhenItStops) {
    test::temp_dir dir;
    config::access_log cfg;
    cfg.path = dir.path + "/access.log";
    cfg.format = "%request_id%";
    std::string problem;
    {
        access_log_writer w(cfg, 2, problem);
        ASSERT_EQ(problem, "");
        auto e = routed_entry();
        e.request_id = "w0";
        w.buffer(0).add(e, 0);
        w.buffer(0).tick();
        w.flush_now();
        std::ifstream in(cfg.path);
        std::stringstream text;
        text << in.rdbuf();
        EXPECT_EQ(text.str(), "w0\n");
        e.request_id = "w1";
        w.buffer(1).add(e, 0);  // never handed over: written when the writer stops
    }
    std::ifstream in(cfg.path);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_EQ(text.str(), "w0\nw1\n");
}

TEST(AccessLogWriter, AFileThatCannotBeOpenedIsReported) {
    config::access_log cfg;
    cfg.path = "/nonexistent-dir/access.log";
    std::string problem;
    access_log_writer w(cfg, 1, problem);
    EXPECT_NE(problem.find("/nonexistent-dir/access.log"), std::string::npos) << problem;
}

}  // namespace
}  // namespace stagegate::proxy
