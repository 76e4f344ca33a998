// Test support: a small blocking HTTP/1.1 client over loopback (plain or TLS), raw socket
// access for malformed input, and wait_until for condition waits with a deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace stagegate::test {

struct reply {
    unsigned status = 0;                         // 0: no reply (connection error)
    std::string error;                           // why, when status is 0
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    bool keep_alive = false;

    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

using header_list = std::vector<std::pair<std::string, std::string>>;

// A KServe v1 predict request the mock model answers (what most proxying tests send).
inline const std::string predict_body = R"({"instances":[[1,2]]})";

// One client connection; every blocking call is bounded by `timeout`.
class connection {
  public:
    explicit connection(std::uint16_t port, bool tls = false,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~connection();
    bool connected() const;
    reply request(const std::string& method, const std::string& target,
                  const std::string& body = "", const header_list& headers = {});
    // Writes raw bytes, then reads one response (status 0 if the peer closed without one).
    reply raw(const std::string& bytes);
    bool write_raw(const std::string& bytes);
    reply read_reply();
    // Reads raw bytes until `needle` has arrived (returns everything read so far, including
    // it) or the read times out / the peer closes (returns what arrived; no needle in it).
    std::string read_until(const std::string& needle);
    // True when the peer has closed (reads EOF within the timeout).
    bool peer_closed();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// A request on a fresh connection.
reply request(std::uint16_t port, const std::string& method, const std::string& target,
              const std::string& body = "", const header_list& headers = {});

// Polls `condition` until it holds or `timeout` passes; returns its last value. A wait on a
// condition with a deadline, never a sleep standing in for synchronisation.
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The first number in a port file a process writes once it listens (0 if none in 10 s).
std::uint16_t read_port_file(const std::string& path);

// A self-signed certificate for "localhost" and 127.0.0.1, written to a fresh temp dir.
struct test_certificate {
    std::string dir;
    std::string cert_file;
    std::string key_file;
};
test_certificate make_test_certificate();

}  // namespace stagegate::test
