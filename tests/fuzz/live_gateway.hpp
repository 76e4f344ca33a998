// Fuzz support: one in-process gateway (in front of two in-process mock versions, with a
// rollout, and an admin API on loopback that takes operator_token, started from a config file
// so that it can reload it) for the whole run, and a raw exchange of bytes with one of its
// ports: write, half-close, read until the gateway closes (bounded).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/mockmodel/mock_model.hpp"
#include "stagegate/app/gateway.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace stagegate::fuzz {

// The admin API's one token, an operator's.
inline constexpr const char* operator_token = "fuzz-operator-token-0123456789";

struct live {
    std::unique_ptr<mockmodel::server> v1;
    std::unique_ptr<mockmodel::server> v2;
    std::unique_ptr<app::gateway> gw;
    std::uint16_t port = 0;
    std::uint16_t admin = 0;
};

inline bool write_text(const std::string& path, const std::string& text) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
        return false;
    }
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    return std::fclose(f) == 0 && ok;
}

inline live& live_gateway() {
    static live* l = [] {
        auto* out = new live;  // lives for the whole run (never a leak: always reachable)
        auto start_mock = [](const char* version) {
            mockmodel::options o;
            o.version = version;
            auto m = std::make_unique<mockmodel::server>(o);
            if (!m->start()) {
                std::abort();
            }
            return m;
        };
        out->v1 = start_mock("v1");
        out->v2 = start_mock("v2");
        char dir[] = "/tmp/stagegate-fuzz-XXXXXX";
        if (!::mkdtemp(dir)) {
            std::abort();
        }
        // The admin API's body limit is the default (1 MiB): the nesting that crashed the
        // gateway came in 200 KB.
        const std::string text = R"({
          "listeners": [{"address": "127.0.0.1", "port": 0}],
          "admin": {"address": "127.0.0.1", "port": 0,
                    "tokens": [{"name": "fuzzer", "role": "operator", "file": ")" + std::string(dir) + R"(/operator.token"}]},
          "state": {"dir": ")" + std::string(dir) + R"(/state"},
          "workers": 1,
          "client_timeouts": {"request_ms": 2000, "idle_ms": 2000, "drain_ms": 1000},
          "limits": {"max_request_body_bytes": 65536},
          "models": [{"name": "m", "stable": "v1",
            "versions": [{"name": "v1", "endpoints": ["127.0.0.1:)" + std::to_string(out->v1->port()) + R"("]},
                         {"name": "v2", "endpoints": ["127.0.0.1:)" + std::to_string(out->v2->port()) + R"("]}],
            "traffic": {"sticky": {"header": "X-User", "cookie": "user"}, "allow_force_version": true},
            "timeouts": {"connect_ms": 500, "first_byte_ms": 2000, "total_ms": 3000},
            "predictions": {"preset": "tfserving", "feedback": {"max_pending": 1000}},
            "rollout": {"candidate": "v2", "interval_ms": 500,
                        "stages": [{"weight_bp": 2000, "mirror_percent": 50, "min_bake_ms": 3600000},
                                   {"weight_bp": 5000}]}}]
        })";
        const std::string config_file = std::string(dir) + "/gateway.json";
        const std::string token_file = std::string(dir) + "/operator.token";
        if (!write_text(config_file, text) || !write_text(token_file, operator_token)) {
            std::abort();
        }
        auto cfg = config::parse(text);
        if (!cfg) {
            std::abort();
        }
        out->gw = std::make_unique<app::gateway>(std::move(*cfg));
        out->gw->set_config_path(config_file);
        if (!out->gw->start()) {
            std::abort();
        }
        out->port = out->gw->ports()[0];
        out->admin = out->gw->admin_port();
        return out;
    }();
    return *l;
}

// Waits until fd is ready for `events` or the deadline passes. Signals (libFuzzer's alarm
// timer interrupts blocking calls with EINTR) are waited through, never taken for an answer.
inline bool wait_ready(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) {
            return false;
        }
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, static_cast<int>(left));
        if (n > 0) {
            return true;
        }
        if (n < 0 && errno != EINTR) {
            return false;
        }
    }
}

// Sends `bytes` to 127.0.0.1:port, half-closes, and reads until the peer closes or 3 s pass.
// Returns what came back. The socket is closed with a reset once the exchange is over so the
// fuzzer's hundreds of thousands of connections leave no TIME_WAIT behind to collide with
// (loopback's ephemeral ports would otherwise be reused under it within seconds).
inline std::string exchange(std::uint16_t port, std::string_view bytes) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        std::perror("socket");
        std::abort();
    }
    linger no_time_wait{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_time_wait, sizeof no_time_wait);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        int error = errno;
        socklen_t len = sizeof error;
        if (error == EINPROGRESS && wait_ready(fd, POLLOUT, deadline)) {
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        }
        if (error != 0) {
            std::fprintf(stderr, "connect to the gateway's port %u: %s\n", port,
                         error == EINPROGRESS ? "no answer in 3 s" : std::strerror(error));
            std::abort();  // the gateway stopped listening: that is a finding
        }
    }
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_ready(fd, POLLOUT, deadline)) {
                break;
            }
        } else {
            break;  // the gateway closed early (an error answer): fine
        }
    }
    ::shutdown(fd, SHUT_WR);
    std::string got;
    char buf[4096];
    for (;;) {
        auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            got.append(buf, static_cast<std::size_t>(n));
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_ready(fd, POLLIN, deadline)) {
                break;
            }
        } else {
            break;
        }
    }
    ::close(fd);
    return got;
}

// Every 256th call: a good request must still get 200 (the gateway kept serving whatever the
// fuzzer sent before); aborts with what came back otherwise.
inline void check_still_serving(std::uint16_t port) {
    static constexpr const char* good_request =
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        "Connection: close\r\n\r\n{}";
    static unsigned n = 0;
    if (++n % 256 != 0) {
        return;
    }
    auto t0 = std::chrono::steady_clock::now();
    auto r = exchange(port, good_request);
    if (r.rfind("HTTP/1.1 200", 0) != 0) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
        auto again = exchange(port, good_request);
        std::fprintf(stderr,
                     "the gateway stopped serving a good request; after %lld ms it answered:\n"
                     "%s\nand a moment later:\n%s\n",
                     static_cast<long long>(ms), r.c_str(), again.c_str());
        std::abort();
    }
}

}  // namespace stagegate::fuzz
