// Test support: the stagegate executable run as a child process, as Kubernetes runs it: its
// listener and admin ports read from the files it writes (--port-file, --admin-port-file),
// signals sent to it, its exit awaited with a deadline. A process still running when the
// object goes (a failed assertion) is killed, so ctest never waits on it.
#pragma once

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "support/test_client.hpp"

namespace stagegate::test {

class gateway_process {
  public:
    // Starts build/stagegate with `config`; its files are `prefix` + ".port", ".admin-port"
    // and ".log" (stderr). port() is 0 when it did not come up within read_port_file's 10 s.
    gateway_process(const std::string& config, const std::string& prefix) {
        const std::string bin = std::string(STAGEGATE_BIN_DIR) + "/stagegate";
        std::vector<std::string> args = {bin,
                                         "--config",
                                         config,
                                         "--port-file",
                                         prefix + ".port",
                                         "--admin-port-file",
                                         prefix + ".admin-port"};
        const std::string log = prefix + ".log";
        // Everything the child needs is built before fork(): the test may run other threads,
        // and the child may only make async-signal-safe calls until execv.
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                ::dup2(fd, 2);
            }
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        // The admin port file is written before the port file: whole once the port file is.
        port_ = read_port_file(prefix + ".port");
        if (port_ != 0) {
            admin_ = read_port_file(prefix + ".admin-port");
        }
    }
    ~gateway_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    gateway_process(const gateway_process&) = delete;
    gateway_process& operator=(const gateway_process&) = delete;

    std::uint16_t port() const { return port_; }
    std::uint16_t admin_port() const { return admin_; }
    void signal(int sig) const {
        if (pid_ > 0) {
            ::kill(pid_, sig);
        }
    }
    // Its exit status (128 + signal when killed by one), or nullopt if it still runs after
    // `timeout`.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
        if (pid_ <= 0) {
            return exit_status_;
        }
        int status = 0;
        const bool exited =
            wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
        if (!exited) {
            return std::nullopt;
        }
        pid_ = -1;
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_status_;
    }

  private:
    pid_t pid_ = -1;
    std::optional<int> exit_status_;
    std::uint16_t port_ = 0;
    std::uint16_t admin_ = 0;
};

}  // namespace stagegate::test
