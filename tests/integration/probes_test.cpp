// Kubernetes' probes against the admin API while viewers read a large event history: the
// control thread answers /healthz between the viewers' requests, so its latency does not grow
// with the log (#21 item 3: four viewers re-reading 2 x 16 MB pushed /healthz to 1.1 s, past
// the default 1 s probe timeout, and a healthy replica would have been taken out of service).
#include "support/admin.hpp"
#include "support/gateway_process.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

namespace stagegate::test {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

// An event log of about `bytes`, written as the store writes it (one JSON object a line, ids
// from 1): events that change no state (held gate checks), so only the history is large (the
// config's rollout starts, and adds its events, when the gateway does). Returns the last id.
std::uint64_t write_event_log(const std::string& path, std::size_t bytes) {
    std::string text;
    text.reserve(bytes + 4096);
    const std::string filler(800, 'x');  // the size of a real event's gate explanations
    std::uint64_t id = 0;
    while (text.size() < bytes) {
        ++id;
        text += R"({"id":)" + std::to_string(id) + R"(,"time_ms":)" +
                std::to_string(1796411966555 + id) +
                R"(,"model":"m","type":"check_failed","kind":"pre","stage":"canary-5",)"
                R"("checks":[{"url":"http://127.0.0.1:9/check","status":503}],"text":"holding m )" +
                std::to_string(id) + ": " + filler + "\"}\n";
    }
    write_file(path, text);
    return id;
}

// What one viewer does, over and over until told to stop: read a page of the model's events
// (the dashboard's call, pages far back in the history too), or replay the live feed from the
// start (stagegatectl events --follow after a disconnect: Last-Event-ID). Counts whole reads.
struct viewer {
    std::atomic<int> reads{0};
    std::atomic<int> failures{0};
    std::thread thread;
};

void read_pages(std::uint16_t admin, std::uint64_t last_id, const std::atomic<bool>& stop,
                viewer& v) {
    auto c = std::make_unique<connection>(admin);
    std::uint64_t before = last_id + 1;
    while (!stop) {
        auto r = c->request("GET", "/api/v1/rollouts/m/events?limit=100&before=" +
                                      std::to_string(before));
        // A whole page (read cheaply: the viewers share the machine with the gateway).
        if (r.status != 200 || r.body.find("\"next_before\"") == std::string::npos) {
            ++v.failures;
            c = std::make_unique<connection>(admin);
        } else {
            ++v.reads;
        }
        // Walk back through the history, then start again at its newest.
        before = before > 1100 ? before - 997 : last_id + 1;
    }
}

void replay_feed(std::uint16_t admin, const std::atomic<bool>& stop, viewer& v) {
    while (!stop) {
        connection c(admin);
        c.write_raw("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\n\r\n");
        // The gateway reads the whole replay (the newest 1000 events) before it sends its
        // head; the first frame is enough to know it did.
        auto got = c.read_until("\nid: ");
        if (got.find("\nid: ") == std::string::npos) {
            ++v.failures;
        } else {
            ++v.reads;
        }
    }
}

TEST(Probes, HealthzStaysFastWhileTwentyViewersReadALargeEventLog) {
    temp_dir dir;
    auto v1 = start_mock("v1");
    std::filesystem::create_directories(dir.path + "/state");
    const std::uint64_t last_id = write_event_log(dir.path + "/state/events.jsonl", 6 << 20);
    write_file(dir.path + "/gw.json", R"({
      "listeners": [{"address": "127.0.0.1", "port": 0}],
      "admin": {"address": "127.0.0.1", "port": 0},
      "state": {"dir": ")" + dir.path + R"(/state"},
      "workers": 1,
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" + std::to_string(v1->port()) + R"("]},
                     {"name": "v2", "endpoints": ["127.0.0.1:)" + std::to_string(v1->port()) + R"("]}],
        "rollout": {"candidate": "v2", "stages": [{"weight_bp": 500, "min_bake_ms": 3600000}]}}]})");
    gateway_process gw(dir.path + "/gw.json", dir.path + "/gw");
    ASSERT_NE(gw.admin_port(), 0) << read_file(dir.path + "/gw.log");
    const std::uint16_t admin = gw.admin_port();

    // Ten read pages, ten replay the feed.
    constexpr int viewers = 20;
    std::atomic<bool> stop{false};
    std::vector<viewer> readers(viewers);
    for (int i = 0; i < viewers; ++i) {
        auto& v = readers[static_cast<std::size_t>(i)];
        v.thread = i % 2 ? std::thread(read_pages, admin, last_id, std::cref(stop), std::ref(v))
                         : std::thread(replay_feed, admin, std::cref(stop), std::ref(v));
    }
    struct joiner {
        std::atomic<bool>& stop;
        std::vector<viewer>& readers;
        ~joiner() {
            stop = true;
            for (auto& v : readers) {
                if (v.thread.joinable()) {
                    v.thread.join();
                }
            }
        }
    } join{stop, readers};
    // Every viewer is past its first read: all twenty are at it while the probes run.
    ASSERT_TRUE(wait_until(
        [&] {
            return std::all_of(readers.begin(), readers.end(),
                               [](const viewer& v) { return v.reads > 0 || v.failures > 0; });
        },
        std::chrono::seconds(60)));

    // Kubernetes' probe: a fresh connection, one GET, every 10 ms here (every 10 s there).
    auto probe = [&](const char* when) {
        constexpr int probes = 50;
        std::vector<double> ms;
        for (int i = 0; i < probes; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            auto r = request(admin, "GET", "/healthz");
            ms.push_back(std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - t0)
                             .count());
            EXPECT_EQ(r.status, 200u) << r.error;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));  // pacing the probes
        }
        std::sort(ms.begin(), ms.end());
        const double p99 = ms[probes * 99 / 100];  // nearest rank: the 50th of 50
        std::printf("/healthz %s: p50 %.1f ms, p99 %.1f ms\n", when, ms[probes / 2], p99);
        return p99;
    };
    // Two series, the better kept: a neighbour's burst on a loaded machine (another test of
    // the suite starting processes) can cover one half-second series, while viewers that
    // held the probes up (the defect this guards against) delay every series.
    const double p99 = std::min(probe("with 20 viewers"), probe("with 20 viewers, again"));
    stop = true;
    for (auto& v : readers) {
        v.thread.join();
    }
    int reads = 0;
    int failures = 0;
    for (const auto& v : readers) {
        reads += v.reads;
        failures += v.failures;
    }
    std::printf("viewers: %d reads, %d failed\n", reads, failures);
    EXPECT_EQ(failures, 0);
    // What the machine itself gives a probe at this moment, without viewers (a loaded CI
    // machine delays every process by tens of milliseconds at times).
    const double alone = probe("alone");
    // The viewers may add at most 50 ms, the issue's bound (a twentieth of Kubernetes' 1 s
    // probe timeout): 200 ms in the sanitizer builds, whose control thread runs several
    // times slower. Before the index every page and replay re-read the 6 MB log (about
    // 70 ms each on a plain build), and twenty viewers queued seconds of it ahead of a probe.
    EXPECT_LT(p99, alone + (sanitized ? 200.0 : 50.0));
}

}  // namespace
}  // namespace stagegate::test
