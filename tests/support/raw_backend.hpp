// Test support: a backend the test drives byte by byte. It accepts a connection, reads one
// request, and then writes exactly what the test sends, when the test sends it, so a test can
// check what the gateway relays between two writes of the backend (streams, cut answers,
// stalls) without sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace stagegate::test {

class raw_backend {
  public:
    // Binds 127.0.0.1:0 and listens; with `listening` false the port is held but refuses
    // connections (a backend that is down) until listen().
    explicit raw_backend(bool listening = true);
    void listen();
    ~raw_backend();
    raw_backend(const raw_backend&) = delete;
    raw_backend& operator=(const raw_backend&) = delete;

    std::uint16_t port() const { return port_; }

    // Accepts the next connection (or keeps the current one) and reads one request from it:
    // its head and a Content-Length body. False when none arrives within `timeout`.
    bool read_request(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    const std::string& last_request() const { return request_; }

    bool send(std::string_view bytes);  // on the current connection, all of it
    void close();                       // closes the current connection (a FIN)
    // True when the gateway closed (or reset) the current connection within `timeout`; false
    // when it sent bytes instead (kept for read_request) or nothing came.
    bool peer_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5));

    // One chunk of a chunked body: size line, data, CRLF.
    static std::string chunk(std::string_view data);

  private:
    int listener_ = -1;
    int conn_ = -1;
    std::uint16_t port_ = 0;
    std::string pending_;  // bytes read past the last request
    std::string request_;
};

}  // namespace stagegate::test
