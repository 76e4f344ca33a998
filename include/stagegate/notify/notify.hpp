// notify: calls out of the gateway when rollouts change. Owns event webhooks (per-webhook
// bounded queues, in-order delivery with retries and exponential backoff, HMAC-SHA256
// signatures, delivery counts and last results) and gate checks (POST the rollout's state to
// each check URL; 2xx is go). Runs on the control thread's io_context and never blocks it:
// a slow or hanging receiver delays only its own deliveries, never traffic or decisions.
// Must not touch: rollout decisions (the controller asks for checks and judges the answers).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/core/http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace stagegate::notify {

// HMAC-SHA256 of `body` under `key`, as lower-case hex (X-Stagegate-Signature: sha256=<hex>).
std::string hmac_sha256_hex(std::string_view key, std::string_view body);

struct webhook_counts {
    std::string name;
    std::uint64_t delivered = 0;
    std::uint64_t failed_attempts = 0;
    std::uint64_t dropped = 0;
    std::size_t queued = 0;
};

class webhooks {
public:
    // Reads the secret files; fails naming the webhook and file when one cannot be read.
    static result<std::unique_ptr<webhooks>> create(boost::asio::io_context& io,
                                                    const std::vector<config::webhook>& hooks);
    ~webhooks();

    // Queues the event for every webhook whose filters take it (control thread).
    void publish(const nlohmann::json& event);
    // Every webhook: counts, queue, the last attempt's outcome.
    nlohmann::json status() const;
    std::vector<webhook_counts> counts() const;
    // Stops retries and in-flight calls; what is still queued is logged as dropped.
    void stop();

private:
    struct hook;
    explicit webhooks(boost::asio::io_context& io);
    void pump(hook& h);
    void send(hook& h);
    void finish(hook& h, const result<http_reply>& r);

    boost::asio::io_context& io_;
    std::vector<std::unique_ptr<hook>> hooks_;
    bool stopped_ = false;
};

// The answer of one check call.
struct check_result {
    std::string url;
    bool passed = false;
    bool rollback_on_failure = false;
    unsigned status = 0;     // 0: no HTTP answer
    std::string detail;      // the error, or the first bytes of the answer's body
    double seconds = 0;
};

class checks {
public:
    explicit checks(boost::asio::io_context& io) : io_(io) {}
    ~checks();
    // POSTs `payload` to every check at once; `done` runs on the io thread once all answered
    // (or timed out). Nothing runs after stop().
    void run(const std::vector<config::http_check>& list, const nlohmann::json& payload,
             std::function<void(std::vector<check_result>)> done);
    void stop();

private:
    boost::asio::io_context& io_;
    std::vector<std::weak_ptr<http_exchange>> in_flight_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace stagegate::notify
