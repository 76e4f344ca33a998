// Fault injection on loopback: backends that lie about lengths, die mid-request or are down
// altogether, and clients that walk away mid-request or mid-response. The gateway answers
// what it can, never forwards a byte it should not, never reuses a dirty connection, leaks
// no connection, and a rollout whose candidate is down is rolled back.
#include "support/admin.hpp"
#include "support/load.hpp"
#include "support/raw_backend.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

namespace stagegate::test {
namespace {

using json = nlohmann::json;

TEST(Faults, UpstreamBodyLongerThanItsLengthIsCutAndTheConnectionDropped) {
    auto s = stack::make();
    connection c(s.port);
    auto r = c.request("POST", "/v1/models/m:predict", "{}", {{"X-Mock-Overlong", "1"}});
    ASSERT_EQ(r.status, 200u);
    ASSERT_TRUE(json::parse(r.body, nullptr, false).is_object()) << r.body;  // exactly the body
    EXPECT_EQ(r.body.find("smuggled"), std::string::npos);
    // The next request on the same client connection gets its own answer, from a fresh
    // upstream connection: the leftover bytes were never read as a response.
    auto next = c.request("POST", "/v1/models/m:predict", "{}");
    ASSERT_EQ(next.status, 200u);
    EXPECT_EQ(next.body.find("smuggled"), std::string::npos);
    EXPECT_EQ(s.v1->connections_accepted(), 2u);
}

TEST(Faults, BackendKilledMidRequestIsA502NotATimeout) {
    auto s = stack::make();
    auto pending = std::async(std::launch::async, [&] {
        const auto started = std::chrono::steady_clock::now();
        auto r = request(s.port, "POST", "/v1/models/m:predict", "{}", {{"X-Mock-Hang", "1"}});
        return std::make_pair(r, std::chrono::steady_clock::now() - started);
    });
    ASSERT_TRUE(wait_until([&] { return s.v1->requests() == 1; }));
    s.v1.reset();  // the backend dies with the request in its hands: every socket closes
    auto [r, took] = pending.get();
    EXPECT_EQ(r.status, 502u) << r.body;
    EXPECT_LT(took, std::chrono::seconds(4));  // first-byte timeout is 5 s: not waited for
    auto v1_502 = [&] {
        std::uint64_t n = 0;
        for (const auto& vm : s.gateway->read_metrics()) {
            if (vm.version == "v1") {
                n += vm.since_stage_start.codes[metrics::code_slot(502)];
            }
        }
        return n;
    };
    // Counted against the version that failed. Waited for: the worker counts the answer once
    // its write has completed, and the client can read it (and the collection reach the
    // worker) before that.
    EXPECT_TRUE(wait_until([&] { return v1_502() == 1; }));
}

// The mock builds its 20 MB answer before the first byte of it: under TSan on a loaded machine
// that took longer than the stack's 5 s first-byte timeout (the gateway then answered 504, and
// the client waited for the body's padding until its own 10 s ran out). The deadlines here are
// a minute: the test is about what a walked-away client leaves behind, not about timeouts.
TEST(Faults, ClientsWalkingAwayLeakNothingAndDirtyConnectionsAreNotReused) {
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.models[0].timeouts.first_byte = std::chrono::seconds(60);
        c.models[0].timeouts.total = std::chrono::seconds(60);
    });
    {
        connection c(s.port);  // mid-request: the body never arrives
        ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 1000\r\n\r\n{\"partial\":"));
    }
    {
        // mid-response: 20 MB asked for, 100 bytes read
        connection c(s.port, false, std::chrono::seconds(60));
        ASSERT_TRUE(c.write_raw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                                "X-Mock-Body-Bytes: 20000000\r\nContent-Length: 2\r\n\r\n{}"));
        auto got = c.read_until("padding");
        ASSERT_NE(got.find("200 OK"), std::string::npos) << got.substr(0, 300);
    }
    ASSERT_TRUE(wait_until([&] { return s.gateway->totals().connections_active == 0; }));
    const auto accepted = s.v1->connections_accepted();
    auto r = request(s.port, "POST", "/v1/models/m:predict", "{}");
    ASSERT_EQ(r.status, 200u);
    EXPECT_LT(r.body.size(), 1000u);  // its own answer, not the rest of the 20 MB
    // The connection of the abandoned response was closed, not pooled half-read.
    EXPECT_EQ(s.v1->connections_accepted(), accepted + 1);
}

TEST(Faults, ACandidateWithEveryEndpointDownIsRolledBack) {
    admin_stack a(true, [](config::gateway& c) {
        c.models[0].rollout_spec->fast_rollback_consecutive_errors = 0;  // the gates decide
        c.models[0].rollout_spec->gates.min_requests = 20;
        c.models[0].rollout_spec->gates.sequential_latency = false;
    });
    a.s.v2.reset();  // down: connections refused
    load traffic(a.s.port, 2);
    ASSERT_TRUE(wait_until(
        [&] { return body_of(api(a.admin, "GET", "/api/v1/rollouts/m"))["phase"] == "rolled_back"; }));
    traffic.stop();
    // Requests the candidate got were answered 502/503 and counted against v2 only.
    auto events = body_of(api(a.admin, "GET", "/api/v1/rollouts/m/events"))["events"];
    EXPECT_NE(events.back()["text"].get<std::string>().find("rolled back m v2"), std::string::npos)
        << events.back().dump();
    auto metrics = api(a.admin, "GET", "/metrics").body;
    EXPECT_NE(metrics.find(R"(stagegate_upstream_errors_total{model="m",version="v2",)"
                           R"(stage="canary-5",kind="connect"})"),
              std::string::npos);
    EXPECT_EQ(metrics.find(R"(stagegate_requests_total{model="m",version="v1",stage="canary-5",code="502"})"),
              std::string::npos);
    // Once rolled back, everything goes to v1 and succeeds.
    EXPECT_EQ(request(a.s.port, "POST", "/v1/models/m:predict", "{}").status, 200u);
}

// A backend that answers one request per connection with keep-alive, then resets that
// connection (SO_LINGER 0) while it lies idle in the gateway's pool: the connection is dead
// before the gateway reuses it, whatever its liveness check did or did not see.
class resetting_backend {
public:
    resetting_backend() {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        ::listen(listener_, 16);
        socklen_t len = sizeof addr;
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] {
            for (;;) {
                int fd = ::accept(listener_, nullptr, nullptr);
                if (fd < 0) {
                    return;  // the listener was shut down
                }
                ++connections_;
                serve_one(fd);
            }
        });
    }
    ~resetting_backend() {
        ::shutdown(listener_, SHUT_RDWR);
        ::close(listener_);
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    int requests() const { return requests_; }
    int connections() const { return connections_; }
    int resets() const { return resets_; }

private:
    void serve_one(int fd) {
        std::string in;
        char buf[4096];
        // Head, then a Content-Length body.
        while (in.find("\r\n\r\n") == std::string::npos) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) {
                ::close(fd);
                return;
            }
            in.append(buf, static_cast<std::size_t>(n));
        }
        const auto head_end = in.find("\r\n\r\n") + 4;
        std::size_t length = 0;
        if (auto at = in.find("Content-Length: "); at != std::string::npos) {
            length = std::stoul(in.substr(at + 16));
        }
        while (in.size() < head_end + length) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) {
                ::close(fd);
                return;
            }
            in.append(buf, static_cast<std::size_t>(n));
        }
        ++requests_;
        const std::string answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        (void)::write(fd, answer.data(), answer.size());
        linger reset{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        ::close(fd);
        ++resets_;
    }

    int listener_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<int> requests_{0};
    std::atomic<int> connections_{0};
    std::atomic<int> resets_{0};
    std::thread thread_;
};

// A gateway whose v1 is the test's backend on `port` alone, with or without the peek at reuse
// (check_idle), and idle connections kept for `idle_timeout`.
stack pooled_to(std::uint16_t port, bool check_idle,
                std::chrono::milliseconds idle_timeout = config::upstream_pool{}.idle_timeout) {
    return stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[0].endpoints = {{"127.0.0.1", port}};
        c.pool.check_idle = check_idle;
        c.pool.idle_timeout = idle_timeout;
    });
}

// The gateway pools the connection after the first answer; the backend then resets it. With
// the liveness check the dead connection is dropped before use; without it the request's
// first write fails with nothing sent and goes out again on a fresh connection. Either way
// the client gets 200, the backend sees each request exactly once, and no upstream failure is
// counted against the version.
TEST(Faults, APooledConnectionTheBackendResetIsNeverUsedForARequest) {
    for (bool check_idle : {true, false}) {
        SCOPED_TRACE(check_idle ? "check_idle on" : "check_idle off");
        resetting_backend backend;
        auto s = pooled_to(backend.port(), check_idle);
        for (int i = 1; i <= 3; ++i) {
            auto r = request(s.port, "POST", "/v1/models/m:predict", "{}");
            ASSERT_EQ(r.status, 200u) << r.body;
            ASSERT_TRUE(wait_until([&] { return backend.resets() == i; }));
        }
        EXPECT_EQ(backend.requests(), 3);     // none twice
        EXPECT_EQ(backend.connections(), 3);  // a fresh one each time
        std::uint64_t failures = 0;
        for (const auto& v : s.gateway->read_metrics()) {
            for (auto f : v.since_stage_start.upstream_failures) {
                failures += f;
            }
        }
        EXPECT_EQ(failures, 0u);
    }
}

// A backend that writes a second answer after its first had ended (#21: 2 of 5 runs handed
// it to the next request, another client's, on the pooled connection). The idle connection's
// watch closes it as soon as the bytes arrive, with or without the peek at reuse
// (check_idle); the next request goes out on a new connection and gets its own answer; and
// that endpoint's next answers are not pooled (its connection is closed after the answer).
TEST(Faults, BytesAfterAnAnswerAreNeverAnotherRequestsAnswer) {
    const std::string stale = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTALE";
    for (bool check_idle : {false, true}) {
        SCOPED_TRACE(check_idle ? "check_idle on" : "check_idle off");
        raw_backend backend;
        auto s = pooled_to(backend.port(), check_idle);
        auto first = std::async(std::launch::async, [&] {
            return request(s.port, "POST", "/v1/models/m:predict", "{}");
        });
        ASSERT_TRUE(backend.read_request());
        ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"));
        ASSERT_EQ(first.get().body, "first");
        // The answer has ended and its connection is idle in the pool: the backend writes more.
        ASSERT_TRUE(backend.send(stale));
        auto second = std::async(std::launch::async, [&] {
            return request(s.port, "POST", "/v1/models/m:predict", "{}");
        });
        EXPECT_TRUE(backend.peer_closed());  // not the second request arriving on it
        backend.close();
        ASSERT_TRUE(backend.read_request());  // on a new connection
        ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"));
        EXPECT_EQ(second.get().body, "second");
        EXPECT_TRUE(backend.peer_closed());  // not pooled: this endpoint is not trusted for now
    }
}

// A backend that closes a pooled connection while it sits idle: the gateway closes its end
// too, without a request coming to take it and long before the idle timeout, with or without
// the peek at reuse (check_idle; with it, the wait that sees the FIN is armed after a second
// of idleness).
TEST(Faults, AnIdleConnectionTheBackendClosesIsClosedWithoutARequest) {
    for (bool check_idle : {true, false}) {
        SCOPED_TRACE(check_idle ? "check_idle on" : "check_idle off");
        raw_backend backend;
        auto s = pooled_to(backend.port(), check_idle, std::chrono::minutes(5));
        auto first = std::async(std::launch::async, [&] {
            return request(s.port, "POST", "/v1/models/m:predict", "{}");
        });
        ASSERT_TRUE(backend.read_request());
        ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        ASSERT_EQ(first.get().status, 200u);
        ASSERT_TRUE(wait_until([&] { return s.idle_upstream_connections() == 1; }));
        backend.close();
        EXPECT_TRUE(wait_until([&] { return s.idle_upstream_connections() <= 0; },
                               std::chrono::seconds(20)));
    }
}

}  // namespace
}  // namespace stagegate::test
