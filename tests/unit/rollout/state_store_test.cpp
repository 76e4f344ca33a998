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

TEST(StateStore, EventIdsSurviveReopenAndATornTailIsCutOff) {
    temp_dir d;
    {
        auto store = state_store::open(d.path);
        ASSERT_TRUE(store);
        std::vector<std::uint64_t> heard;
        store->set_listener([&](const nlohmann::json& e) { heard.push_back(e["id"]); });
        for (int i = 0; i < 3; ++i) {
            ASSERT_TRUE(store->append_event({{"model", "m"}, {"n", i}}));
        }
        EXPECT_EQ(heard, (std::vector<std::uint64_t>{1, 2, 3}));
    }
    {
        std::ofstream torn(d.path + "/events.jsonl", std::ios::app);
        torn << "{\"model\": \"m\", \"id\": 4, \"n\"";  // a crash mid-append
    }
    auto store = state_store::open(d.path);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->last_event_id(), 3u);
    ASSERT_TRUE(store->append_event({{"model", "m"}, {"n", 3}}));
    auto events = store->recent_events(10, "m");
    ASSERT_EQ(events.size(), 4u);  // the torn line is gone, the new event whole
    EXPECT_EQ(events.back()["id"], 4);
    EXPECT_EQ(events.back()["n"], 3);
    // Cut off, not merely ended: every line of the file is a whole record.
    std::ifstream log(d.path + "/events.jsonl");
    int lines = 0;
    for (std::string line; std::getline(log, line); ++lines) {
        EXPECT_TRUE(nlohmann::json::accept(line)) << line;
    }
    EXPECT_EQ(lines, 4);
}

TEST(StateStore, EventsPageBackwardsAcrossRotation) {
    temp_dir d;
    auto store = state_store::open(d.path, /*max_log_bytes=*/100);
    ASSERT_TRUE(store);
    for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE(store->append_event({{"model", i % 2 ? "a" : "b"}, {"n", i}}));
    }
    ASSERT_TRUE(std::filesystem::exists(d.path + "/events.jsonl.1"));
    auto newest = store->events(3, "", 0);
    ASSERT_EQ(newest.events.size(), 3u);
    EXPECT_EQ(newest.events.front()["id"], 8);
    EXPECT_EQ(newest.events.back()["id"], 10);
    EXPECT_TRUE(newest.more);
    auto older = store->events(3, "", 8);
    ASSERT_EQ(older.events.size(), 3u);
    EXPECT_EQ(older.events.back()["id"], 7);
    auto only_a = store->events(100, "a", 0);
    EXPECT_FALSE(only_a.more);
    for (const auto& e : only_a.events) {
        EXPECT_EQ(e["model"], "a");
    }
    auto after = store->events(100, "", 0, 9);
    ASSERT_EQ(after.events.size(), 1u);
    EXPECT_EQ(after.events[0]["id"], 10);
}

// Pages come from an index kept in memory (the lines of a page are read, not the log): over
// many rotations every page equals what a scan of both files gives, in the store that
// appended and in one that reopened the directory.
TEST(StateStore, IndexedPagesMatchAScanOfTheFiles) {
    temp_dir d;
    auto store = state_store::open(d.path, /*max_log_bytes=*/2000);
    ASSERT_TRUE(store);
    for (int i = 0; i < 300; ++i) {
        nlohmann::json e = {{"n", i}, {"pad", std::string(static_cast<std::size_t>(i % 37), 'x')}};
        if (i % 5 != 0) {
            e["model"] = i % 3 ? "a" : "b";  // every fifth names no model
        }
        ASSERT_TRUE(store->append_event(e));
    }
    std::vector<nlohmann::json> scanned;
    for (const char* file : {"/events.jsonl.1", "/events.jsonl"}) {
        std::ifstream in(d.path + file);
        for (std::string line; std::getline(in, line);) {
            scanned.push_back(nlohmann::json::parse(line));
        }
    }
    ASSERT_GT(scanned.size(), 20u);
    auto expected = [&](std::size_t limit, const std::string& model, std::uint64_t before,
                        std::uint64_t after) {
        std::vector<nlohmann::json> all;
        for (const auto& e : scanned) {
            const auto id = e["id"].get<std::uint64_t>();
            if ((before && id >= before) || id <= after ||
                (!model.empty() && e.value("model", "") != model)) {
                continue;
            }
            all.push_back(e);
        }
        const bool more = all.size() > limit;
        if (more) {
            all.erase(all.begin(), all.end() - static_cast<std::ptrdiff_t>(limit));
        }
        return std::pair{all, more};
    };
    auto reopened = state_store::open(d.path, 2000);
    ASSERT_TRUE(reopened);
    const auto last = scanned.back()["id"].get<std::uint64_t>();
    for (const std::string model : {"", "a", "b", "nobody"}) {
        for (std::uint64_t before : {std::uint64_t{0}, last, last - 3, last - 17}) {
            for (std::uint64_t after : {std::uint64_t{0}, last - 25}) {
                for (std::size_t limit : {std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
                    const auto [events, more] = expected(limit, model, before, after);
                    for (const auto* s : {&*store, &*reopened}) {
                        auto page = s->events(limit, model, before, after);
                        EXPECT_EQ(page.events, events)
                            << model << " " << before << " " << after << " " << limit;
                        EXPECT_EQ(page.more, more)
                            << model << " " << before << " " << after << " " << limit;
                    }
                }
            }
        }
    }
}

// A decision is one record: its event carries the state. When the snapshot could not follow
// (a crash right after the log line, or a snapshot write that failed), the log's record wins
// at the next load; the newest record of each model wins, in the log's order.
TEST(StateStore, TheLogsRecordWinsOverAnOlderSnapshot) {
    temp_dir d;
    auto store = state_store::open(d.path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->record("m", {{"model", "m"}, {"sequence", 1}, {"phase", "progressing"}},
                              {{"model", "m"}, {"type", "started"}, {"sequence", 1}}));
    ASSERT_TRUE(store->record("n", {{"model", "n"}, {"sequence", 4}, {"phase", "paused"}},
                              {{"model", "n"}, {"type", "command"}, {"sequence", 4}}));
    const auto snapshot_after_first = [&] {
        std::ifstream in(d.path + "/rollout-m.json");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    ASSERT_TRUE(store->record("m", {{"model", "m"}, {"sequence", 2}, {"phase", "rolled_back"}},
                              {{"model", "m"}, {"type", "rolled_back"}, {"sequence", 2}}));
    auto events = store->recent_events(10, "m");
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events.back()["type"], "rolled_back");
    EXPECT_EQ(events.back()["state"]["phase"], "rolled_back");
    EXPECT_EQ(events.back()["id"], 3);
    // Play the crash between the log line and the snapshot: the snapshot is one behind.
    std::ofstream(d.path + "/rollout-m.json", std::ios::trunc) << snapshot_after_first;
    auto all = store->load_all();
    ASSERT_TRUE(all) << all.error().describe();
    EXPECT_EQ(all->at("m")["phase"], "rolled_back");
    EXPECT_EQ(all->at("m")["sequence"], 2);
    EXPECT_EQ(all->at("n")["phase"], "paused");
    // The next open catches the snapshot up with the log.
    ASSERT_TRUE(state_store::open(d.path));
    std::ifstream caught_up(d.path + "/rollout-m.json");
    EXPECT_EQ(nlohmann::json::parse(caught_up)["sequence"], 2);
    // Without any snapshot the log alone rebuilds every model's state.
    std::filesystem::remove(d.path + "/rollout-m.json");
    std::filesystem::remove(d.path + "/rollout-n.json");
    all = store->load_all();
    ASSERT_TRUE(all);
    EXPECT_EQ(all->size(), 2u);
    EXPECT_EQ(all->at("m")["sequence"], 2);
}

// A 0-byte snapshot (a disk that failed under it) is harmless when the log holds the record.
TEST(StateStore, ADamagedSnapshotIsCoveredByTheLogsRecord) {
    temp_dir d;
    auto store = state_store::open(d.path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->record("m", {{"model", "m"}, {"sequence", 3}, {"phase", "paused"}},
                              {{"model", "m"}, {"type", "command"}, {"sequence", 3}}));
    std::ofstream(d.path + "/rollout-m.json", std::ios::trunc).flush();
    auto all = store->load_all();
    ASSERT_TRUE(all) << all.error().describe();
    EXPECT_EQ(all->at("m")["phase"], "paused");
    std::ofstream(d.path + "/rollout-other.json", std::ios::trunc).flush();  // no record
    all = store->load_all();
    ASSERT_FALSE(all);
    EXPECT_EQ(all.error().code, "state_corrupt");
    ASSERT_EQ(all.error().problems.size(), 1u);
    EXPECT_NE(all.error().problems[0].path.find("rollout-other.json"), std::string::npos);
}

TEST(StateStore, UnusableDirectoryIsAClearError) {
    auto store = state_store::open("/proc/stagegate-cannot-exist");
    ASSERT_FALSE(store);
    EXPECT_EQ(store.error().code, "state_io_failed");
}

}  // namespace
}  // namespace stagegate::rollout
