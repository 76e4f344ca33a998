#include "support/raw_backend.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

namespace stagegate::test {

namespace {

// Waits until `fd` is readable or `deadline` passes.
bool readable_by(int fd, std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
        return false;
    }
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) == 1;
}

}  // namespace

raw_backend::raw_backend(bool listening) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (listening) {
        listen();
    }
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
}

void raw_backend::listen() { ::listen(listener_, 16); }

raw_backend::~raw_backend() {
    close();
    ::close(listener_);
}

bool raw_backend::read_request(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (conn_ < 0) {
        if (!readable_by(listener_, deadline)) {
            return false;
        }
        conn_ = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn_ < 0) {
            return false;
        }
        pending_.clear();
    }
    auto fill = [&] {
        char buf[4096];
        if (!readable_by(conn_, deadline)) {
            return false;
        }
        const ssize_t n = ::read(conn_, buf, sizeof buf);
        if (n <= 0) {
            return false;
        }
        pending_.append(buf, static_cast<std::size_t>(n));
        return true;
    };
    while (pending_.find("\r\n\r\n") == std::string::npos) {
        if (!fill()) {
            return false;
        }
    }
    const auto head_end = pending_.find("\r\n\r\n") + 4;
    std::size_t length = 0;
    for (std::string_view name : {"Content-Length: ", "content-length: "}) {
        if (auto at = pending_.find(name); at != std::string::npos && at < head_end) {
            length = std::stoul(pending_.substr(at + name.size()));
        }
    }
    while (pending_.size() < head_end + length) {
        if (!fill()) {
            return false;
        }
    }
    request_ = pending_.substr(0, head_end + length);
    pending_.erase(0, head_end + length);
    return true;
}

bool raw_backend::send(std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(conn_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n <= 0) {
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

void raw_backend::close() {
    if (conn_ >= 0) {
        ::close(conn_);
        conn_ = -1;
    }
}

bool raw_backend::peer_closed(std::chrono::milliseconds timeout) {
    if (conn_ < 0 || !readable_by(conn_, std::chrono::steady_clock::now() + timeout)) {
        return false;
    }
    char buf[4096];
    const ssize_t n = ::read(conn_, buf, sizeof buf);
    if (n > 0) {
        pending_.append(buf, static_cast<std::size_t>(n));
        return false;
    }
    return true;  // EOF, or a reset
}

std::string raw_backend::chunk(std::string_view data) {
    char size[24];
    const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return std::string(size, static_cast<std::size_t>(n)) + std::string(data) + "\r\n";
}

}  // namespace stagegate::test
