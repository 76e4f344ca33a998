// core/http_client: one outgoing HTTP(S) exchange on a caller's io_context, every step bounded
// by a timeout: for stagegatectl, event webhooks, gate checks and etcd. A fresh connection per
// call (these are control-plane calls, seconds apart), unless the call names an
// http_keepalive (etcd: several calls a second per replica). Never blocks and never throws.
// Owns: URLs, connecting (TLS included), kept-alive idle connections, the request and the
// answer's bytes. Must not touch: what a streamed body holds: ctl reads its event feed, cluster
// its etcd watch, from the pieces.
#pragma once

#include "stagegate/core/error.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stagegate {

struct http_url {
    bool tls = false;
    std::string host;
    std::string port;
    std::string target = "/";  // path and query
};

// "http://host[:port][/path][?query]", "https://...", or "host:port" (http), read by
// Boost.URL (RFC 3986: a malformed URL is refused, not guessed at); errors say what is wrong.
// With `allow_path` false a path or a query is an error (a server address, not an endpoint).
result<http_url> parse_http_url(std::string_view text, bool allow_path = true);

// Idle keep-alive connections for calls that repeat to the same few servers. A call that names
// one takes an idle connection to its scheme, host and port when there is one the server has
// not closed meanwhile (nothing to read on it, idle under 30 s), and gives it back after a
// whole answer that allows reuse; at most `max_idle_per_host` wait per server, the rest close.
// A taken connection that ends before any byte of the answer (the server closed it while it
// was idle, just as the request went out) sends the request once more on a new connection, as
// Go's transport does: so calls through a keepalive set must be safe to repeat in the rare case
// where the server did read the first one and died before answering (etcd's are: reads,
// keepalives, puts of the same value, and compare-guarded transactions that check what a
// failed comparison found). Any other failure fails the call. Streamed answers (on_body) get a
// connection of their own, counted here, never kept. Confined to the thread of the io_context its
// calls run on (no lock); the calls hold it weakly, so it may go before them, but it must go
// before that io_context: its idle sockets are closed through the io_context's services.
class http_keepalive {
public:
    explicit http_keepalive(std::size_t max_idle_per_host = 4);
    ~http_keepalive();
    http_keepalive(const http_keepalive&) = delete;
    http_keepalive& operator=(const http_keepalive&) = delete;

    // Calls that named it, the connections they opened (the rest reused one), and the reused
    // ones found closed by the server as a request went out (each call then sent once more).
    std::uint64_t calls() const { return calls_; }
    std::uint64_t opened() const { return opened_; }
    std::uint64_t stale() const { return stale_; }

    struct idle_set;  // http_client.cpp's
    idle_set& idle() { return *idle_; }
    void count_call() { ++calls_; }
    void count_opened() { ++opened_; }
    void count_stale() { ++stale_; }

private:
    std::unique_ptr<idle_set> idle_;
    std::uint64_t calls_ = 0;
    std::uint64_t opened_ = 0;
    std::uint64_t stale_ = 0;
};

struct http_call {
    std::string method = "GET";
    http_url url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::chrono::milliseconds timeout{10000};  // for each of connect, send, and the answer
    std::string ca_file;                       // https: trust this CA, else the system's
    bool insecure = false;                     // https: no certificate verification
    std::string cert_file;                     // https: client certificate (PEM chain) ...
    std::string key_file;                      // ... and its key
    std::size_t max_body = 64 * 1024 * 1024;
    // Set for a streamed answer (an event feed, a watch): once the answer is 200, called with
    // each piece of its body as it arrives (chunked framing removed; never empty), then once
    // with an empty piece if the body ends as its framing says; return false to stop. The
    // reply then has an empty body. What the pieces mean (lines, events) is the caller's.
    // max_body still bounds the whole body, and the stream may stay silent for a minute at
    // most between pieces.
    std::function<bool(std::string_view piece)> on_body;
    // Keep the connection for the next call (see http_keepalive); none: closed after this one.
    std::weak_ptr<http_keepalive> keep_alive;
};

struct http_reply {
    unsigned status = 0;
    std::string body;
};

// A started exchange; cancel() ends it early (done then gets an "unreachable" error).
class http_exchange {
public:
    virtual ~http_exchange() = default;
    virtual void cancel() = 0;  // io's thread
};

// Starts the exchange on `io`; `done` runs once on io's thread with the reply, or an error
// with code "unreachable" (no HTTP answer: resolve, connect, TLS, timeout, reset, cancel) or
// "tls_setup_failed".
std::shared_ptr<http_exchange> async_http(boost::asio::io_context& io, http_call call,
                                          std::function<void(result<http_reply>)> done);

// The same, running a private io_context until it is done (for command-line tools).
result<http_reply> http_blocking(http_call call);
// The same on `io`, which has no other work and no thread running it, so that a keep_alive
// set made on it serves call after call (etcd's durable writes on the control thread).
result<http_reply> http_blocking(boost::asio::io_context& io, http_call call);

}  // namespace stagegate
