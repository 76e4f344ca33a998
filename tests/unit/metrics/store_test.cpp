#include "stagegate/metrics/shard.hpp"
#include "stagegate/metrics/store.hpp"
#include "stagegate/metrics/wire.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace stagegate::metrics {
namespace {

using namespace std::chrono_literals;

shard_delta delta_with(std::uint32_t series, unsigned status, int n) {
    shard s;
    for (int i = 0; i < n; ++i) {
        s.record(series, status, 1000, 0);
    }
    return s.take();
}

TEST(Shard, TakeHandsOverOnlyTouchedSeriesAndResets) {
    shard s;
    s.record(3, 200, 500, 7);
    s.record(3, 503, 900, 7);
    s.record_failure(3, upstream_failure::timeout);
    s.record_unrouted(unrouted_reason::unknown_model);
    auto d = s.take();
    ASSERT_EQ(d.series.size(), 1u);
    EXPECT_EQ(d.series[0].first, 3u);
    EXPECT_EQ(d.series[0].second.requests(), 2u);
    EXPECT_EQ(d.series[0].second.server_errors(), 1u);
    EXPECT_EQ(d.series[0].second.upstream_failures[1], 1u);
    EXPECT_EQ(d.unrouted[1], 1u);
    auto again = s.take();
    EXPECT_TRUE(again.series.empty());
    EXPECT_EQ(again.unrouted[1], 0u);
}

TEST(Shard, SuccessLatencyAndUnitBucketsKeepWhatTheGatesJudge) {
    shard s;
    s.record(1, 200, 20000, 5);
    s.record(1, 503, 100, 5);
    s.record(1, 400, 200, 261);  // units wrap at 256: bucket 5 again
    s.record(1, 200, 30000, 6);
    const auto c = s.take().series[0].second;
    EXPECT_EQ(c.latency.count(), 4u);
    EXPECT_EQ(c.success_latency.count(), 2u);  // fast failures never make a version faster
    EXPECT_EQ(c.units.requests[5], 3u);
    EXPECT_EQ(c.units.server_errors[5], 1u);
    EXPECT_EQ(c.units.client_errors[5], 1u);
    EXPECT_EQ(c.units.requests[6], 1u);
}

// A stream cut after its 200 went out: counted under 200, and as a failure everywhere the
// gates and the cluster look (server errors, unit buckets, not a success latency); a 5xx cut
// short is a failure once, not twice.
TEST(Shard, AnAnswerCutShortIsAFailureUnderItsOwnCode) {
    shard s;
    s.record(2, 200, 5000, 3, true);
    s.record(2, 503, 100, 3, true);
    s.record(2, 200, 4000, 3);
    auto c = s.take().series[0].second;
    EXPECT_EQ(c.codes[code_slot(200)], 2u);
    EXPECT_EQ(c.cut_short, 1u);
    EXPECT_EQ(c.server_errors(), 2u);
    EXPECT_EQ(c.units.server_errors[3], 2u);
    EXPECT_EQ(c.success_latency.count(), 1u);

    series_counts replica;
    ASSERT_TRUE(add_from_wire(to_wire(c), replica));
    EXPECT_EQ(replica.cut_short, 1u);
    EXPECT_EQ(replica.server_errors(), 2u);
    series_counts merged = c;
    merged.merge(replica);
    EXPECT_EQ(merged.cut_short, 2u);
    merged.clear();
    EXPECT_EQ(merged.cut_short, 0u);
}

// An OpenAI stream's timing: its time to first token, and the mean gap between its later
// events; carried to other replicas like every count (a replica of an older release sends
// none, which reads as none).
TEST(Shard, StreamTimingsAreRecordedAndCrossTheWire) {
    shard s;
    s.record_stream(1, 250000, 900000, 10);  // 9 gaps over 900 ms: 100 ms per token
    s.record_stream(1, 150000, 0, 1);        // one event: no time per token
    auto c = s.take().series[0].second;
    EXPECT_EQ(c.streams, 2u);
    EXPECT_EQ(c.stream_events, 11u);
    EXPECT_EQ(c.time_to_first_token.count(), 2u);
    EXPECT_EQ(c.time_to_first_token.sum_micros(), 400000u);
    ASSERT_EQ(c.time_per_output_token.count(), 1u);
    EXPECT_EQ(c.time_per_output_token.sum_micros(), 100000u);

    series_counts replica;
    ASSERT_TRUE(add_from_wire(to_wire(c), replica));
    EXPECT_EQ(replica.streams, 2u);
    EXPECT_EQ(replica.stream_events, 11u);
    EXPECT_EQ(replica.time_to_first_token.sum_micros(), 400000u);
    EXPECT_EQ(replica.time_per_output_token.count(), 1u);
    auto old = to_wire(c);
    for (const char* key : {"streams", "stream_events", "ttft", "ttft_sum", "tpot", "tpot_sum"}) {
        old.erase(key);
    }
    series_counts from_old;
    ASSERT_TRUE(add_from_wire(old, from_old));
    EXPECT_EQ(from_old.streams, 0u);
    EXPECT_EQ(from_old.requests(), c.requests());
}

// OpenAI tokens by source, streams by outcome and completed streams' output rates: recorded
// per series, merged, cleared and carried to other replicas (an older one sends none).
TEST(Shard, TokensStreamEndingsAndTokenRatesAreRecordedAndCrossTheWire) {
    shard s;
    s.record_tokens(2, 12, 40, token_source::usage);
    s.record_tokens(2, 0, 7, token_source::counted);
    s.record_stream_end(2, stream_outcome::completed);
    s.record_stream_end(2, stream_outcome::completed);
    s.record_stream_end(2, stream_outcome::cut_by_idle_timeout);
    s.record_stream_end(2, stream_outcome::error_event);
    s.record_token_rate(2, 41, 2000000);  // 40 tokens after the first over 2 s: 20 tokens/s
    s.record_token_rate(2, 1, 1000000);   // one token: no rate
    s.record_token_rate(2, 10, 0);        // no span: no rate
    auto c = s.take().series[0].second;
    EXPECT_EQ(c.input_tokens, 12u);
    EXPECT_EQ(c.output_tokens[static_cast<std::size_t>(token_source::usage)], 40u);
    EXPECT_EQ(c.output_tokens[static_cast<std::size_t>(token_source::counted)], 7u);
    EXPECT_EQ(c.stream_ends[static_cast<std::size_t>(stream_outcome::completed)], 2u);
    EXPECT_EQ(c.stream_ends[static_cast<std::size_t>(stream_outcome::cut_by_idle_timeout)], 1u);
    EXPECT_EQ(c.stream_ends[static_cast<std::size_t>(stream_outcome::error_event)], 1u);
    ASSERT_EQ(c.output_tokens_per_second.count(), 1u);
    EXPECT_EQ(c.output_tokens_per_second.sum_micros(), 20000u);  // 20 tokens/s x 1000
    EXPECT_NEAR(c.output_tokens_per_second.quantile_micros(0.5) / token_rate_scale, 20.0,
                20.0 * latency_histogram::max_relative_error);
    EXPECT_STREQ(stream_outcome_label(static_cast<std::size_t>(stream_outcome::client_gone)),
                 "client_gone");
    EXPECT_STREQ(token_source_label(static_cast<std::size_t>(token_source::counted)), "counted");

    series_counts replica;
    ASSERT_TRUE(add_from_wire(to_wire(c), replica));
    EXPECT_EQ(replica.input_tokens, 12u);
    EXPECT_EQ(replica.output_tokens, c.output_tokens);
    EXPECT_EQ(replica.stream_ends, c.stream_ends);
    EXPECT_EQ(replica.output_tokens_per_second.count(), 1u);
    EXPECT_EQ(replica.output_tokens_per_second.sum_micros(), 20000u);
    series_counts merged = c;
    merged.merge(replica);
    EXPECT_EQ(merged.input_tokens, 24u);
    EXPECT_EQ(merged.stream_ends[0], 4u);
    EXPECT_EQ(merged.output_tokens_per_second.count(), 2u);
    merged.clear();
    EXPECT_EQ(merged.input_tokens, 0u);
    EXPECT_EQ(merged.output_tokens_per_second.count(), 0u);

    auto old = to_wire(c);
    for (const char* key :
         {"input_tokens", "output_tokens", "stream_ends", "token_rate", "token_rate_sum"}) {
        old.erase(key);
    }
    series_counts from_old;
    ASSERT_TRUE(add_from_wire(old, from_old));
    EXPECT_EQ(from_old.input_tokens, 0u);
    EXPECT_EQ(from_old.output_tokens_per_second.count(), 0u);
}

TEST(SeriesCounts, PredictionDifferenceSumsCrossTheWire) {
    series_counts c;
    c.predictions.abs_diff.record(0.5);
    c.predictions.abs_diff.record(0.25);
    c.predictions.rel_diff.record(2);
    series_counts replica;
    ASSERT_TRUE(add_from_wire(to_wire(c), replica));
    EXPECT_EQ(replica.predictions.abs_diff.count(), 2u);
    EXPECT_EQ(replica.predictions.abs_diff.sum(), 0.75);
    EXPECT_EQ(replica.predictions.rel_diff.sum(), 2);
    // A replica of an older release sends no sums: its differences count, summing to 0.
    auto old = to_wire(c);
    old["predictions"].erase("abs_diff_sum");
    old["predictions"].erase("rel_diff_sum");
    series_counts from_old;
    ASSERT_TRUE(add_from_wire(old, from_old));
    EXPECT_EQ(from_old.predictions.abs_diff.count(), 2u);
    EXPECT_EQ(from_old.predictions.abs_diff.sum(), 0);
}

TEST(SeriesCounts, CodesOutsideTheTrackedSetCountByClass) {
    series_counts c;
    c.codes[code_slot(201)]++;
    c.codes[code_slot(418)]++;
    c.codes[code_slot(599)]++;
    EXPECT_EQ(code_label(code_slot(201)), "2xx");
    EXPECT_EQ(code_label(code_slot(418)), "4xx");
    EXPECT_EQ(code_label(code_slot(504)), "504");
    EXPECT_EQ(c.server_errors(), 1u);
}

TEST(Store, WindowKeepsTheLastSixtySecondsAndRollsOverAtSlotBoundaries) {
    const auto t0 = clock::time_point{} + 1000s;
    store st(t0);
    st.merge(delta_with(0, 200, 5), t0 + 100ms);   // second 0
    st.merge(delta_with(0, 200, 7), t0 + 900ms);   // still second 0
    st.merge(delta_with(0, 200, 11), t0 + 1s);     // second 1: a new slot
    EXPECT_EQ(st.window(0, t0 + 1500ms).counts.requests(), 23u);
    EXPECT_EQ(st.window(0, t0 + 59s + 999ms).counts.requests(), 23u);  // second 59: both in
    EXPECT_EQ(st.window(0, t0 + 60s).counts.requests(), 11u);   // second 0 has left the window
    EXPECT_EQ(st.window(0, t0 + 61s).counts.requests(), 0u);
    // A slot reused 60 s later starts from zero.
    st.merge(delta_with(0, 200, 2), t0 + 60s);
    EXPECT_EQ(st.window(0, t0 + 60s).counts.requests(), 13u);
    EXPECT_EQ(st.total(0)->requests(), 25u);
    EXPECT_DOUBLE_EQ(st.window(0, t0 + 30s).seconds, 30.0);
    EXPECT_DOUBLE_EQ(st.window(0, t0 + 600s).seconds, 60.0);
}

TEST(Store, StageCountsResetWithoutTouchingTotals) {
    const auto t0 = clock::time_point{} + 5s;
    store st(t0);
    st.merge(delta_with(1, 500, 4), t0);
    st.reset_stage(1, t0 + 2s);
    st.merge(delta_with(1, 200, 3), t0 + 3s);
    EXPECT_EQ(st.stage(1)->requests(), 3u);
    EXPECT_EQ(st.stage(1)->server_errors(), 0u);
    EXPECT_EQ(st.total(1)->requests(), 7u);
    EXPECT_EQ(st.stage_started(1), t0 + 2s);
    EXPECT_EQ(st.total(9), nullptr);
}

TEST(Store, MergeFromConcurrentShardsLosesNothing) {
    // Each writer owns its shard (as each worker thread does); the merge happens on one thread.
    constexpr int writers = 4;
    constexpr int per_writer = 50000;
    std::vector<shard> shards(writers);
    std::vector<std::thread> threads;
    for (int t = 0; t < writers; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_writer; ++i) {
                shards[t].record(static_cast<std::uint32_t>(i % 3), 200,
                                 static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(i));
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    store st;
    for (auto& s : shards) {
        st.merge(s.take(), clock::now());
    }
    std::uint64_t total = 0;
    for (std::uint32_t id = 0; id < 3; ++id) {
        total += st.total(id)->requests();
        EXPECT_EQ(st.total(id)->latency.count(), st.total(id)->requests());
    }
    EXPECT_EQ(total, static_cast<std::uint64_t>(writers * per_writer));
}

}  // namespace
}  // namespace stagegate::metrics
