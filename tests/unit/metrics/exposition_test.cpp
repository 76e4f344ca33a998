// metrics::text_writer and metrics::registry: families in order with HELP and TYPE lines,
// escaped labels, histograms, and collectors rendered in the order they were added.
#include "stagegate/metrics/exposition.hpp"

#include <gtest/gtest.h>

namespace stagegate::metrics {
namespace {

TEST(Exposition, FamiliesKeepTheirOrderAndEmptyOnesStillDeclareThemselves) {
    text_writer out;
    auto& requests = out.counter("a_requests_total", "Requests.");
    out.gauge("b_empty", "Nothing yet.");
    requests.add({{"model", "m"}}, 3);
    out.single("c_up", "Up.", metric_type::gauge, 1);
    EXPECT_EQ(out.text(),
              "# HELP a_requests_total Requests.\n"
              "# TYPE a_requests_total counter\n"
              "a_requests_total{model=\"m\"} 3\n"
              "# HELP b_empty Nothing yet.\n"
              "# TYPE b_empty gauge\n"
              "# HELP c_up Up.\n"
              "# TYPE c_up gauge\n"
              "c_up 1\n");
}

TEST(Exposition, LabelValuesAndHelpAreEscaped) {
    text_writer out;
    out.gauge("g", "Back\\slash and\nnewline.")
        .add({{"name", "a \"quoted\" \\ value\nwith a newline"}}, 0.5);
    EXPECT_EQ(out.text(),
              "# HELP g Back\\\\slash and\\nnewline.\n"
              "# TYPE g gauge\n"
              "g{name=\"a \\\"quoted\\\" \\\\ value\\nwith a newline\"} 0.5\n");
}

TEST(Exposition, LatencyHistogramsAreWrittenInSecondsWithAnInfBucket) {
    latency_histogram h;
    h.record(500);      // 0.5 ms
    h.record(20'000);   // 20 ms
    h.record(900'000);  // 0.9 s
    text_writer out;
    const std::array<double, 2> bounds = {0.001, 0.1};
    out.histogram("d_seconds", "Durations.").add({{"v", "1"}}, h, bounds);
    const auto text = out.text();
    EXPECT_NE(text.find("# TYPE d_seconds histogram\n"), std::string::npos) << text;
    EXPECT_NE(text.find("d_seconds_count{v=\"1\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("d_seconds_sum{v=\"1\"} 0.9205\n"), std::string::npos) << text;
    EXPECT_NE(text.find("d_seconds_bucket{v=\"1\",le=\"0.001\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("d_seconds_bucket{v=\"1\",le=\"0.1\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("d_seconds_bucket{v=\"1\",le=\"+Inf\"} 3\n"), std::string::npos) << text;
}

// As Prometheus' own clients write summaries: quantile values in their shortest form ("0.5",
// not "0.500000"), then _sum and _count.
TEST(Exposition, SummariesWriteTheirQuantilesSumAndCount) {
    text_writer out;
    out.summary("s_diff", "Differences.")
        .add({{"kind", "abs"}}, summary_value{4, 1.5, {{0.5, 0.25}, {0.9, 0.5}, {0.99, 0.75}}});
    EXPECT_EQ(out.text(),
              "# HELP s_diff Differences.\n"
              "# TYPE s_diff summary\n"
              "s_diff_count{kind=\"abs\"} 4\n"
              "s_diff_sum{kind=\"abs\"} 1.5\n"
              "s_diff{kind=\"abs\",quantile=\"0.5\"} 0.25\n"
              "s_diff{kind=\"abs\",quantile=\"0.9\"} 0.5\n"
              "s_diff{kind=\"abs\",quantile=\"0.99\"} 0.75\n");
}

TEST(Exposition, TheRegistryRendersItsCollectorsInTheOrderAdded) {
    registry r;
    int calls = 0;
    r.add([&](text_writer& out) {
        ++calls;
        out.gauge("second_added_first", "First.").add({}, 1);
    });
    r.add([&](text_writer& out) {
        ++calls;
        out.counter("first_added_second_total", "Second.").add({}, 2);
    });
    EXPECT_EQ(r.size(), 2u);
    const auto text = r.render();
    EXPECT_EQ(calls, 2);
    EXPECT_LT(text.find("second_added_first 1"), text.find("first_added_second_total 2"));
    EXPECT_EQ(registry{}.render(), "");
}

TEST(Exposition, ProcessMetricsComeFromProc) {
    text_writer out;
    write_process_metrics(out);
    const auto text = out.text();
    for (const char* name : {"process_cpu_seconds_total", "process_start_time_seconds",
                             "process_resident_memory_bytes", "process_open_fds"}) {
        EXPECT_NE(text.find(std::string("\n") + name + " "), std::string::npos) << name;
    }
}

}  // namespace
}  // namespace stagegate::metrics
