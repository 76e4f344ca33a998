// mockmodel: a small model server for demos, tests and load (stagegate-mockmodel).
// Owns: answering the TF-Serving/KServe v1, KServe v2/Triton and OpenAI request shapes with a
// deterministic prediction (OpenAI chat and completions streamed as Server-Sent Events when
// the request asks, paced like an LLM: a time to first token, then tokens per second), and
// misbehaving on demand (latency, 5xx, hangs, resets, bias, streams cut or failed mid-way)
// so a test can play a good or a bad model version. Not used by the gateway itself.
#pragma once

#include "stagegate/core/error.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace stagegate::mockmodel {

struct options {
    std::string version = "v1";  // reported in answers and X-Mock-Version
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;
    std::uint32_t threads = 1;
    double latency_ms = 0;       // fixed part of every answer's delay
    double jitter_ms = 0;        // median of a lognormal extra delay (0: none)
    double jitter_sigma = 0.5;   // its shape
    double error_rate = 0;       // fraction answered with error_status
    unsigned error_status = 500;
    // Users with error propensities of their own, as live traffic has (a tenant whose inputs
    // fail more often): a request of user U fails with error_rate x propensity(U), where the
    // propensity is lognormal with shape user_error_spread and mean 1, drawn from a hash of
    // the user header's value, so every mock process gives a user the same one (0: none).
    double user_error_spread = 0;
    std::string user_header = "X-User-Id";
    double tail_rate = 0;        // fraction answered tail_ms later than the rest
    double tail_ms = 0;
    double hang_rate = 0;        // fraction never answered (until the connection closes)
    double reset_rate = 0;       // fraction answered by a TCP reset
    double bias = 0;             // added to every numeric prediction
    // Classification (TF-Serving shape): each prediction is a vector of this many class
    // scores, the top one picked from the input (0: one number per instance).
    std::uint32_t classes = 0;
    double disagree_rate = 0;  // fraction of predictions whose top class moves to the next
    // OpenAI streams ("stream": true): the first token this long after the answer's delay,
    // then one token per 1/tokens_per_second, answer_tokens of them.
    double ttft_ms = 0;
    double tokens_per_second = 50;
    std::uint32_t answer_tokens = 8;
    double stream_cut_rate = 0;    // fraction of streams whose connection closes half-way
    double stream_error_rate = 0;  // fraction sending an error event half-way (no [DONE])
    std::string cert_file;       // TLS when both are set
    std::string key_file;
    std::string client_ca_file;  // set: TLS clients must present a certificate it verifies
    std::uint64_t seed = 0;      // 0: random
};

// A user's error propensity (options::user_error_spread): lognormal with shape `spread` and
// mean 1, a function of the user's id alone.
double user_error_propensity(std::string_view user, double spread);

// Per-request overrides, for deterministic tests: X-Mock-Status: 503, X-Mock-Delay-Ms: 200,
// X-Mock-Hang: 1, X-Mock-Reset: 1, X-Mock-Body-Bytes: N (pad the answer), X-Mock-Echo: 1 (the
// answer includes the request's headers), X-Mock-Close: 1 (Connection: close); for streams
// X-Mock-Ttft-Ms: N, X-Mock-Stream-Cut: 1, X-Mock-Stream-Error: 1; for OpenAI answers
// X-Mock-Answer-Tokens: N (a stream's length, and every answer's usage.completion_tokens) and
// X-Mock-Tokens-Per-Second: N. Non-streamed chat and completions answers always carry usage;
// streams end with a usage chunk when the request set stream_options.include_usage.
class server {
public:
    explicit server(options o);
    ~server();
    result<void> start();  // binds and starts the threads
    void stop();           // closes everything and joins
    std::uint16_t port() const;

    std::uint64_t connections_accepted() const;
    std::uint64_t requests() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace stagegate::mockmodel
