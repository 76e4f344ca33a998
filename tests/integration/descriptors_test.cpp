// The gateway under a low descriptor limit (ulimit -n 256): clients past what fits get the
// gateway's own 503 at once, and the admin API keeps answering. Before, the per-worker limit
// ignored RLIMIT_NOFILE: accept() hit EMFILE, new clients waited 8-10 s and the admin thread
// spun. Run in a death-test child, since a lowered hard limit cannot be raised again.
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>

namespace stagegate::test {
namespace {

[[noreturn]] void fail(const std::string& why) {
    std::fprintf(stderr, "%s\n", why.c_str());
    std::fflush(stderr);
    std::_Exit(1);
}

// A keep-alive client on a bare socket: test_client's connection holds an epoll descriptor
// of its own, which would skew the count. Sends one request and returns the status line and
// body read within 3 s ("" if none).
struct bare_client {
    int fd = -1;
    explicit bare_client(std::uint16_t port) {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(port);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        timeval three{3, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &three, sizeof three);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
            fail("connect failed");
        }
    }
    ~bare_client() { ::close(fd); }
    bare_client(const bare_client&) = delete;
    bare_client& operator=(const bare_client&) = delete;

    std::string predict() {
        const std::string req = "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 2\r\n\r\n{}";
        if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
            return "";
        }
        std::string got;
        char buf[4096];
        // The head, then as many body bytes as its Content-Length says.
        for (;;) {
            const auto end = got.find("\r\n\r\n");
            if (end != std::string::npos) {
                const auto at = got.find("Content-Length: ");
                const auto length = at == std::string::npos || at > end
                                        ? 0
                                        : std::strtoul(got.c_str() + at + 16, nullptr, 10);
                if (got.size() >= end + 4 + length) {
                    return got;
                }
            }
            const auto n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) {
                return got;
            }
            got.append(buf, static_cast<std::size_t>(n));
        }
    }
};

void at_a_low_descriptor_limit() {
    rlimit low{256, 256};
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) {
        fail("cannot lower RLIMIT_NOFILE");
    }
    auto s = stack::make();
    const auto admin = s.gateway->admin_port();
    // Each client connection costs this process two descriptors (both ends are here), so the
    // gateway's cap (a quarter of 256 kept back, two per connection: 96) is reached well before
    // the table is full.
    std::deque<bare_client> clients;
    bool shed = false;
    for (int i = 0; i < 110 && !shed; ++i) {
        const auto answer = clients.emplace_back(s.port).predict();
        if (answer.rfind("HTTP/1.1 503", 0) == 0) {
            if (answer.find("\"overloaded\"") == std::string::npos) {
                fail("a 503 that is not the overload answer: " + answer);
            }
            if (i < 90) {
                fail("shed after only " + std::to_string(i) + " connections");
            }
            shed = true;
        } else if (answer.rfind("HTTP/1.1 200", 0) != 0) {
            fail("connection " + std::to_string(i) + " got: \"" + answer + "\"");
        }
    }
    if (!shed) {
        fail("110 connections held, none shed: the cap did not follow RLIMIT_NOFILE");
    }
    // At the cap, the admin API still answers.
    auto health = request(admin, "GET", "/healthz");
    if (health.status != 200) {
        fail("admin /healthz at the cap: " + std::to_string(health.status) + " " + health.error);
    }
    // Clients leaving make room again.
    clients.clear();
    const bool served = wait_until(
        [&] { return request(s.port, "POST", "/v1/models/m:predict", "{}").status == 200; },
        std::chrono::seconds(10));
    if (!served) {
        fail("no request served after the clients left");
    }
    std::exit(0);
}

TEST(Descriptors, ClientsPastTheDescriptorLimitGet503AndAdminAnswers) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(at_a_low_descriptor_limit(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace stagegate::test
