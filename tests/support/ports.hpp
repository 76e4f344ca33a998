// Test support: loopback ports without races between tests that run at once (ctest -j).
//
// A port picked by binding :0 and closing the socket again is free only until someone else
// binds it, and parallel tests (gateways, mocks, the kernel's own ephemeral ports for outgoing
// connections) bind ports all the time. So:
//   - what we start in process, and the stagegate executables, bind port 0 and report the
//     port they got (ports(), admin_port(), --port-file, --admin-port-file);
//   - a port that must refuse connections is held, bound but not listening, for as long as
//     the test needs it (refused_port);
//   - only for external programs that cannot report a port they were given as 0 (etcd,
//     Prometheus) is a port picked first and bound later: pick_port() marks those places,
//     and await_listening() tells whether the program got the port, so the caller can start
//     it again on another one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace stagegate::test {

// A loopback port that refuses connections (connect gets ECONNREFUSED) for as long as this
// object lives: a socket bound to it that never listens, so no other test can take the port.
class refused_port {
  public:
    refused_port();
    ~refused_port();
    refused_port(const refused_port&) = delete;
    refused_port& operator=(const refused_port&) = delete;

    std::uint16_t port() const { return port_; }

  private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

// A loopback port that was free a moment ago, for a program that must be told its port in
// advance. Racy by nature: pair it with await_listening() and retry on another port.
std::uint16_t pick_port();

// How a child process that was told to listen on some ports came up.
enum class listen_outcome {
    listening,  // the process itself listens on every one of the ports
    exited,     // it exited (and was reaped here) first: read its log for why
    timed_out,
};

// Waits until child process `pid` listens on every one of `ports` on loopback, exits, or
// `timeout` passes. Who listens is read from /proc (the socket's inode among the process's
// descriptors), so another process on the same port never counts as this one's.
listen_outcome await_listening(pid_t pid, const std::vector<std::uint16_t>& ports,
                               std::chrono::milliseconds timeout);

// True when the file's text from byte `from` on says a bind failed because its address was
// taken (the words Go programs such as etcd and Prometheus log, and strerror(EADDRINUSE)).
bool log_says_address_in_use(const std::string& log_path, std::uintmax_t from = 0);

// The size of a file, 0 when it does not exist (where the next process's log lines begin).
std::uintmax_t file_size_or_zero(const std::string& path);

// How many times a pick_port() user starts its program before giving up: each try fails only
// if another process took the picked port in the moment between pick and bind.
inline constexpr int port_attempts = 5;

}  // namespace stagegate::test
