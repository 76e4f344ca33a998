#include "support/ports.hpp"

#include "support/test_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace stagegate::test {

namespace {

// A TCP socket bound to 127.0.0.1:0; its port in `port`.
int bound_loopback_socket(std::uint16_t& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error("socket() failed");
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot bind a loopback port");
    }
    port = ntohs(a.sin_port);
    return fd;
}

// Each listening TCP socket's port and inode (any local address), from /proc/net/tcp and
// tcp6. Both tables list every socket (thousands of TIME_WAITs while tests run): read once
// per look, whatever the number of ports.
std::multimap<std::uint16_t, std::string> listening_sockets() {
    std::multimap<std::uint16_t, std::string> out;
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line;
        std::getline(in, line);  // the header
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout,
                inode;
            if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >>
                  uid >> timeout >> inode)) {
                continue;
            }
            const auto colon = local.rfind(':');
            if (state != "0A" || colon == std::string::npos) {  // 0A: TCP_LISTEN
                continue;
            }
            out.emplace(static_cast<std::uint16_t>(std::stoul(local.substr(colon + 1), nullptr, 16)),
                        inode);
        }
    }
    return out;
}

// Inodes of the sockets among process `pid`'s open descriptors. The process may exit (and its
// /proc entry go) at any moment: every step takes an error code, none throws.
std::set<std::string> socket_inodes_of(pid_t pid) {
    namespace fs = std::filesystem;
    std::set<std::string> out;
    const std::string prefix = "socket:[";
    std::error_code ec;
    for (fs::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code link_ec;
        const auto target = fs::read_symlink(it->path(), link_ec).string();
        if (!link_ec && target.rfind(prefix, 0) == 0 && target.back() == ']') {
            out.insert(target.substr(prefix.size(), target.size() - prefix.size() - 1));
        }
    }
    return out;
}

bool listens_on_all(pid_t pid, const std::vector<std::uint16_t>& ports) {
    const auto own = socket_inodes_of(pid);
    if (own.empty()) {
        return false;
    }
    const auto listening = listening_sockets();
    for (auto port : ports) {
        bool found = false;
        for (auto [it, end] = listening.equal_range(port); it != end; ++it) {
            found = found || own.count(it->second) > 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

}  // namespace

refused_port::refused_port() { fd_ = bound_loopback_socket(port_); }

refused_port::~refused_port() { ::close(fd_); }

std::uint16_t pick_port() {
    std::uint16_t port = 0;
    ::close(bound_loopback_socket(port));
    return port;
}

listen_outcome await_listening(pid_t pid, const std::vector<std::uint16_t>& ports,
                               std::chrono::milliseconds timeout) {
    bool exited = false;
    const bool listening = wait_until(
        [&] {
            if (::waitpid(pid, nullptr, WNOHANG) == pid) {
                exited = true;
                return true;
            }
            return listens_on_all(pid, ports);
        },
        timeout);
    if (exited) {
        return listen_outcome::exited;
    }
    return listening ? listen_outcome::listening : listen_outcome::timed_out;
}

bool log_says_address_in_use(const std::string& log_path, std::uintmax_t from) {
    std::ifstream in(log_path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(from));
    std::stringstream text;
    text << in.rdbuf();
    const auto s = text.str();
    return s.find("address already in use") != std::string::npos ||
           s.find("Address already in use") != std::string::npos;
}

std::uintmax_t file_size_or_zero(const std::string& path) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    return ec ? 0 : size;
}

}  // namespace stagegate::test
