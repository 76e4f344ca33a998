#include "stagegate/rollout/state_store.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace stagegate::rollout {
namespace {

using test::temp_dir;

TEST(StateStore, SaveReplacesAtomicallyAndLoadsBack) {
    temp_dir d;
    auto store = state_store::open(d.path + "/state");
    ASSERT_TRUE(store) << store.error().describe();
    ASSERT_TRUE(store->save("fraud", {{"model", "fraud"}, {"stage_index", 1}}));
    ASSERT_TRUE(store->save("fraud", {{"model", "fraud"}, {"stage_index", 2}}));
    ASSERT_TRUE(store->save("rank/v2", {{"model", "rank/v2"}, {"stage_index", 0}}));
    // A temp file left by a crash mid-write is ignored.
    std::ofstream(d.path + "/state/rollout-fraud.json.tmp") << "{\"model\": \"fr";
    auto all = store->load_all();
    ASSERT_TRUE(all) << all.error().describe();
    ASSERT_EQ(all->size(), 2u);
    EXPECT_EQ(all->at("fraud")["stage_index"], 2);
    EXPECT_EQ(all->at("rank/v2")["stage_index"], 0);
}

TEST(StateStore, CorruptStateIsReportedNotSkipped) {
    temp_dir d;
    auto store = state_store::open(d.path);
    ASSERT_TRUE(store);
    std::ofstream(d.path + "/rollout-x.json") << "not json";
    auto all = store->load_all();
    ASSERT_FALSE(all);
    EXPECT_EQ(all.error().code, "state_corrupt");
}

TEST(StateStore, EventLogSkipsATornLastLineAndRotatesBySize) {
    temp_dir d;
    auto store = state_store::open(d.path, /*max_log_bytes=*/200);
    ASSERT_TRUE(store);
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(store->append_event({{"model", "m"}, {"n", i}}));
    }
    {
        std::ofstream torn(d.path + "/events.jsonl", std::ios::app);
        torn << "{\"model\": \"m\", \"n\": 9";  // a crash mid-append: no newline
    }
    auto events = store->recent_events(10, "m");
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events.back()["n"], 2);
    for (int i = 3; i < 12; ++i) {
        ASSERT_TRUE(store->append_event({{"model", "m"}, {"n", i}}));
    }
    EXPECT_TRUE(std::filesystem::exists(d.path + "/events.jsonl.1"));
    EXPECT_LT(std::filesystem::file_size(d.path + "/events.jsonl"), 400u);
}

TEST(StateStore, UnusableDirectoryIsAClearError) {
    auto store = state_store::open("/proc/stagegate-cannot-exist");
    ASSERT_FALSE(store);
    EXPECT_EQ(store.error().code, "state_io_failed");
}

}  // namespace
}  // namespace stagegate::rollout
