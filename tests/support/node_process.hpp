// Test support: a node process (tests/clients' scripts: grpc-js servers and clients, HTTP/2
// backends) with a pipe on its stdin, which those scripts take as their parent's life: each
// exits when the pipe closes.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "support/test_client.hpp"

namespace stagegate::test {

// `node ARGS...`: it ends when its stdin closes, or is killed 10 s after. Its stdout is kept.
class node_process {
  public:
    explicit node_process(const std::vector<std::string>& args) {
        int in[2];
        int out[2];
        if (::pipe(in) != 0 || ::pipe(out) != 0) {
            return;
        }
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            ::close(in[1]);
            ::close(out[0]);
            std::vector<char*> argv;
            argv.push_back(const_cast<char*>("node"));
            for (const auto& a : args) {
                argv.push_back(const_cast<char*>(a.c_str()));
            }
            argv.push_back(nullptr);
            ::execvp("node", argv.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        stdin_ = in[1];
        stdout_ = out[0];
    }
    ~node_process() { finish(); }
    node_process(const node_process&) = delete;
    node_process& operator=(const node_process&) = delete;

    // Closes its stdin, reads what it printed and waits for it to end.
    std::string finish() {
        if (stdin_ >= 0) {
            ::close(stdin_);
            stdin_ = -1;
        }
        if (stdout_ >= 0) {
            char buf[4096];
            for (ssize_t n; (n = ::read(stdout_, buf, sizeof buf)) > 0;) {
                output_.append(buf, static_cast<std::size_t>(n));
            }
            ::close(stdout_);
            stdout_ = -1;
        }
        if (pid_ > 0) {
            int status = 0;
            const bool ended = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; },
                                          std::chrono::seconds(10));
            if (!ended) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
            }
            pid_ = -1;
        }
        return output_;
    }

  private:
    pid_t pid_ = -1;
    int stdin_ = -1;
    int stdout_ = -1;
    std::string output_;
};

}  // namespace stagegate::test
