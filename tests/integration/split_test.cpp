// The traffic split end to end: proportions, stickiness, monotone widening, and weights
// changed while requests flow.
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace stagegate::test {
namespace {


TEST(Split, RandomSplitWithinBinomialInterval) {
    // 20,000 requests at 5 %: mean 1,000, sd 30.8. Bound +-4.9 sd (two-sided p ~ 1e-6).
    auto s = stack::make(500, 2);
    constexpr int threads = 4;
    constexpr int per_thread = 5000;
    std::atomic<int> candidate{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t) {
        clients.emplace_back([&] {
            connection c(s.port);
            for (int i = 0; i < per_thread; ++i) {
                auto r = c.request("POST", "/v1/models/m:predict", predict_body);
                if (r.status != 200) {
                    ++failures;
                    continue;
                }
                candidate += r.header("x-stagegate-version") == "v2";
            }
        });
    }
    for (auto& c : clients) {
        c.join();
    }
    EXPECT_EQ(failures.load(), 0);
    EXPECT_NEAR(candidate.load(), 1000, 151);
    EXPECT_EQ(s.v1->requests() + s.v2->requests(), 20000u);
}

std::vector<bool> candidate_users(std::uint16_t port, int users, const std::string& how) {
    std::vector<bool> on(users);
    connection c(port);
    for (int u = 0; u < users; ++u) {
        std::string key = "user-" + std::to_string(u);
        header_list h = how == "cookie" ? header_list{{"Cookie", "a=b; user=" + key}}
                                        : header_list{{"X-User", key}};
        auto r = c.request("POST", "/v1/models/m:predict", predict_body, h);
        EXPECT_EQ(r.status, 200u);
        on[u] = r.header("x-stagegate-version") == "v2";
    }
    return on;
}

TEST(Split, StickyKeysStayAndWideningIsMonotone) {
    auto s = stack::make(500, 2);
    constexpr int users = 2000;
    auto at5 = candidate_users(s.port, users, "header");
    EXPECT_EQ(candidate_users(s.port, users, "header"), at5);  // sticky: same answer again
    EXPECT_EQ(candidate_users(s.port, users, "cookie"), at5);  // cookie hashes the same key
    int n5 = 0;
    for (bool b : at5) {
        n5 += b;
    }
    // 2,000 users: sd 9.7 at 5 %, 19.4 at 25 %; +-5.3 sd bounds (p < 1e-7).
    EXPECT_NEAR(n5, 100, 52);

    auto generation = s.gateway->routes()->generation;
    ASSERT_TRUE(s.gateway->set_traffic("m", {{"v1", 7500}, {"v2", 2500}}, "canary-25"));
    ASSERT_TRUE(wait_until([&] { return s.gateway->applied_generation() > generation; }));
    auto at25 = candidate_users(s.port, users, "header");
    int n25 = 0;
    for (int u = 0; u < users; ++u) {
        n25 += at25[u];
        ASSERT_TRUE(!at5[u] || at25[u]) << "user-" << u << " left the candidate at 25 %";
    }
    EXPECT_NEAR(n25, 500, 103);
    auto r = request(s.port, "POST", "/v1/models/m:predict", predict_body);
    EXPECT_EQ(r.header("x-stagegate-stage"), "canary-25");
}

TEST(Split, WeightChangesWhileRequestsFlowLoseNothing) {
    auto s = stack::make(500, 2);
    constexpr int threads = 4;
    constexpr int per_thread = 1500;
    std::atomic<int> ok{0};
    std::atomic<int> failed{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t) {
        clients.emplace_back([&, t] {
            // Half the clients reuse one connection, half open a new one each time.
            std::unique_ptr<connection> c;
            for (int i = 0; i < per_thread; ++i) {
                if (!c || t % 2) {
                    c = std::make_unique<connection>(s.port);
                }
                auto r = c->request("POST", "/v1/models/m:predict", predict_body);
                (r.status == 200 ? ok : failed)++;
            }
        });
    }
    int changes = 0;
    std::thread control([&] {
        std::uint32_t weights[] = {0, 100, 500, 2500, 5000, 10000, 2500, 0};
        while (!done.load()) {
            std::uint32_t w = weights[changes % 8];
            auto r = s.gateway->set_traffic("m", {{"v1", 10000 - w}, {"v2", w}},
                                            "stage-" + std::to_string(w));
            EXPECT_TRUE(r);
            ++changes;
            std::this_thread::yield();
        }
    });
    for (auto& c : clients) {
        c.join();
    }
    done = true;
    control.join();
    EXPECT_EQ(failed.load(), 0);
    EXPECT_EQ(ok.load(), threads * per_thread);
    EXPECT_GT(changes, 100);
    EXPECT_EQ(s.v1->requests() + s.v2->requests(), static_cast<std::uint64_t>(threads * per_thread));
}

}  // namespace
}  // namespace stagegate::test
