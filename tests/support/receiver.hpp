// Test support: an HTTP receiver on an ephemeral loopback port for webhooks and gate checks.
// It records every request and answers as the test's policy says: a status, or never (hang).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace stagegate::test {

struct received {
    std::string method;
    std::string target;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    std::chrono::steady_clock::time_point at;
    std::string header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

struct answer {
    unsigned status = 200;
    bool hang = false;  // never answer (until the receiver stops)
    std::string body = "ok";
};

class receiver {
  public:
    // `policy` sees each request and the number of requests before it.
    explicit receiver(std::function<answer(const received&, std::size_t)> policy =
                          [](const received&, std::size_t) { return answer{}; });
    ~receiver();
    std::uint16_t port() const { return port_; }
    std::string url(const std::string& path = "/hook") const;
    std::vector<received> requests() const;
    std::size_t count() const;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
    std::uint16_t port_ = 0;
};

}  // namespace stagegate::test
