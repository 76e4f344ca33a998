// A rolling restart as Kubernetes does one, under steady load, loses no request (#21 item 9).
//
// Two gateway processes with the same config sit behind a test-side Service: like kube-proxy,
// it sends each new connection to an endpoint whose readiness probe last passed (round robin),
// re-probing /readyz every 100 ms, and leaves established keep-alive connections where they
// are. SIGTERM makes a gateway fail /readyz at once while it keeps accepting and serving for
// client_timeouts.drain_delay_ms, every answer closing its connection so the client reconnects
// elsewhere; then it closes its listener, finishes what is in flight and exits 0.
#include "support/admin.hpp"
#include "support/gateway_process.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace stagegate::test {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr auto readiness_period = 100ms;
constexpr auto drain_delay = 1500ms;  // client_timeouts.drain_delay_ms below
constexpr auto drain_grace = 2000ms;  // client_timeouts.drain_ms below

// The Service: endpoints and their last readiness, and the client load through it.
class service {
public:
    struct endpoint {
        std::string name;
        std::uint16_t port = 0;
        std::uint16_t admin = 0;
        std::atomic<bool> ready{false};
        std::atomic<int> answered{0};            // 2xx answers it gave
        std::atomic<int> answered_draining{0};   // of them, after its SIGTERM
        std::atomic<bool> terminating{false};
    };

    ~service() { stop(); }

    std::shared_ptr<endpoint> add(const std::string& name, const gateway_process& gw) {
        auto e = std::make_shared<endpoint>();
        e->name = name;
        e->port = gw.port();
        e->admin = gw.admin_port();
        std::lock_guard lock(mutex_);
        endpoints_.push_back(e);
        return e;
    }

    // The endpoints' readiness, probed every readiness_period as the kubelet does (a fresh
    // connection, GET /readyz, ready on 200), until stop().
    void start_probing() {
        threads_.emplace_back([this] {
            while (!stop_) {
                for (auto& e : snapshot()) {
                    e->ready = request(e->admin, "GET", "/readyz").status == 200;
                }
                std::this_thread::sleep_for(readiness_period);  // the probe period
            }
        });
    }

    // `clients` keep-alive clients sending requests through the Service until stop().
    void start_clients(int clients) {
        for (int i = 0; i < clients; ++i) {
            threads_.emplace_back([this] { client(); });
        }
    }

    void stop() {
        stop_ = true;
        for (auto& t : threads_) {
            if (t.joinable()) {
                t.join();
            }
        }
    }

    int sent() const { return sent_; }
    int ok() const { return ok_; }
    std::vector<std::string> failures() const {
        std::lock_guard lock(mutex_);
        return failures_;
    }

private:
    std::vector<std::shared_ptr<endpoint>> snapshot() const {
        std::lock_guard lock(mutex_);
        return endpoints_;
    }

    // kube-proxy's choice for a new connection: the next ready endpoint, round robin.
    std::shared_ptr<endpoint> pick() {
        auto all = snapshot();
        for (std::size_t i = 0; i < all.size(); ++i) {
            auto& e = all[next_++ % all.size()];
            if (e->ready) {
                return e;
            }
        }
        return nullptr;
    }

    void client() {
        std::shared_ptr<endpoint> to;
        std::unique_ptr<connection> c;
        while (!stop_) {
            if (!c) {
                to = pick();
                if (!to) {
                    record_failure("no ready endpoint");
                    return;
                }
                c = std::make_unique<connection>(to->port);
            }
            const bool terminating = to->terminating;
            ++sent_;
            auto r = c->request("POST", "/v1/models/m:predict", R"({"instances":[[1,2]]})");
            if (r.status >= 200 && r.status < 300) {
                ++ok_;
                ++to->answered;
                if (terminating) {
                    ++to->answered_draining;
                }
            } else {
                record_failure(to->name + ": " +
                               (r.status ? "status " + std::to_string(r.status) : r.error));
            }
            if (r.status == 0 || !r.keep_alive) {
                c.reset();  // told to go (or gone): the next request picks an endpoint again
            }
            std::this_thread::sleep_for(2ms);  // pacing: a steady load, not a flood
        }
    }

    void record_failure(std::string what) {
        std::lock_guard lock(mutex_);
        failures_.push_back(std::move(what));
    }

    mutable std::mutex mutex_;
    std::vector<std::shared_ptr<endpoint>> endpoints_;
    std::vector<std::string> failures_;
    std::atomic<std::size_t> next_{0};
    std::atomic<int> sent_{0};
    std::atomic<int> ok_{0};
    std::atomic<bool> stop_{false};
    std::vector<std::thread> threads_;
};

// SIGTERMs `gw` and waits for it to exit by itself: 0, after the drain delay (it served
// through it) and within the drain delay and the in-flight grace it was configured with.
void terminate_and_await_exit(gateway_process& gw, service::endpoint& e) {
    e.terminating = true;
    const auto sent = steady::now();
    gw.signal(SIGTERM);
    auto status = gw.wait_exit(drain_delay + drain_grace + 10s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - sent);
    ASSERT_TRUE(status) << e.name << " still runs " << took.count() << " ms after SIGTERM";
    EXPECT_EQ(*status, 0) << e.name;
    EXPECT_GE(took, drain_delay) << e.name << " stopped serving before its drain delay";
    EXPECT_LE(took, drain_delay + drain_grace) << e.name << " outlived its drain period";
}

TEST(RollingRestart, UnderLoadNoRequestIsLost) {
    temp_dir dir;
    auto v1 = start_mock("v1");
    write_file(dir.path + "/gw.json", R"({
      "listeners": [{"address": "127.0.0.1", "port": 0}],
      "admin": {"address": "127.0.0.1", "port": 0},
      "workers": 1,
      "client_timeouts": {"drain_delay_ms": )" + std::to_string(drain_delay.count()) +
                                          R"(, "drain_ms": )" +
                                          std::to_string(drain_grace.count()) + R"(},
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" + std::to_string(v1->port()) + R"("]}]}]})");
    const std::string config = dir.path + "/gw.json";
    gateway_process a(config, dir.path + "/a");
    gateway_process b(config, dir.path + "/b");
    ASSERT_NE(a.admin_port(), 0) << read_file(dir.path + "/a.log");
    ASSERT_NE(b.admin_port(), 0) << read_file(dir.path + "/b.log");

    service svc;
    auto ea = svc.add("A", a);
    auto eb = svc.add("B", b);
    svc.start_probing();
    ASSERT_TRUE(wait_until([&] { return ea->ready && eb->ready; }, 30s));
    svc.start_clients(8);
    // Steady state: both serve (round robin puts four of the clients' connections on each).
    ASSERT_TRUE(wait_until([&] { return ea->answered >= 50 && eb->answered >= 50; }, 30s))
        << "A " << ea->answered << ", B " << eb->answered;

    // A is replaced first, then B once A' is ready, as a Deployment's rolling update does.
    std::thread drain_a([&] { terminate_and_await_exit(a, *ea); });
    struct joiner {
        std::thread& t;
        ~joiner() { t.join(); }
    } join_a{drain_a};
    gateway_process a2(config, dir.path + "/a2");  // started while A drains
    ASSERT_NE(a2.admin_port(), 0) << read_file(dir.path + "/a2.log");
    auto ea2 = svc.add("A'", a2);
    ASSERT_TRUE(wait_until([&] { return ea2->ready.load(); }, 30s));
    terminate_and_await_exit(b, *eb);
    // A' alone now, and answering.
    const int before = ea2->answered;
    EXPECT_TRUE(wait_until([&] { return ea2->answered >= before + 50; }, 30s));
    svc.stop();

    const auto failures = svc.failures();
    EXPECT_TRUE(failures.empty()) << failures.size() << " of " << svc.sent()
                                  << " requests failed, the first: " << failures.front();
    EXPECT_EQ(svc.ok(), svc.sent());
    // Connections established before SIGTERM were still served through the drain delay
    // (the window where closing the listener at once lost requests).
    EXPECT_GT(ea->answered_draining, 0);
    EXPECT_GT(eb->answered_draining, 0);
    // Every answer came from the backend, once: none lost between gateway and backend.
    EXPECT_TRUE(wait_until([&] { return v1->requests() == static_cast<std::uint64_t>(svc.ok()); }))
        << "backend saw " << v1->requests() << ", clients got " << svc.ok();
    std::printf("rolling restart: %d requests, A served %d (%d after SIGTERM), B %d (%d)\n",
                svc.sent(), ea->answered.load(), ea->answered_draining.load(),
                eb->answered.load(), eb->answered_draining.load());
}

}  // namespace
}  // namespace stagegate::test
