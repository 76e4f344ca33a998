// cluster/etcd: a client of etcd's v3 JSON gateway (the API Kubernetes' own store serves on
// every member: POST /v3/kv/range, /v3/kv/txn, /v3/kv/deleterange, /v3/kv/compaction,
// /v3/lease/grant, /v3/lease/keepalive, /v3/watch), over core/http_client, so no new
// dependency.
// Owns: the JSON and base64 encoding of keys and values, int64-as-string fields, the few
// kept-alive connections to the endpoints, and moving on to the next endpoint when one does not
// answer: the watches on it end too (a hung member keeps a watch open and silent), and it is
// probed until it answers again.
// Must not touch: what the keys mean (member.hpp, persistence.hpp).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/core/http_client.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace stagegate::cluster {

struct key_value {
    std::string key;
    std::string value;
    std::int64_t create_revision = 0;
    std::int64_t mod_revision = 0;
    std::int64_t lease = 0;
};

struct watch_event {
    bool deleted = false;
    key_value kv;
};

// Why a watch's stream ended.
struct watch_end {
    // Not 0: etcd has compacted its history past the revision the watch was to start from
    // (it answered with this `compact_revision` and canceled the watch). The changes since are
    // gone from history: the watcher reads the keys again instead of watching from there.
    std::int64_t compacted = 0;
    // The watch's endpoint stopped answering other calls (a hung or cut-off member: its watch
    // would stay open and silent until the 60 s idle limit): ended so that the watcher reads
    // again and watches from the next endpoint.
    bool endpoint_failed = false;
    // The watch got no answer itself (it counts as its endpoint's failure, not as news of one).
    bool failed_itself = false;
};

std::string base64(std::string_view bytes);
std::string unbase64(std::string_view text);
// The smallest key after every key that starts with `prefix` (a range's end).
std::string prefix_end(const std::string& prefix);

class etcd_client {
public:
    explicit etcd_client(const config::etcd_store& cfg);

    // One call: POST `path` (such as "/v3/kv/txn") with `body`. An answer other than 200 is
    // an error with code "etcd_failed"; no answer, "etcd_unreachable". No answer or a 5xx one
    // (a member without a raft leader) marks the endpoint down: the next call goes to the next
    // endpoint and the watches on it end (watch_end::endpoint_failed).
    void call(boost::asio::io_context& io, const std::string& path, nlohmann::json body,
              std::function<void(result<nlohmann::json>)> done) const;
    // The same, waiting for the answer (control thread, for the controller's durable writes;
    // bounded by the timeout). On a private io_context of its own, with connections of its own.
    result<nlohmann::json> call_blocking(const std::string& path, nlohmann::json body) const;

    // Calls made (watches included) and the connections they opened: calls reuse kept-alive
    // connections (a few per endpoint), each watch has its own.
    std::uint64_t calls() const { return pool_->calls() + blocking_pool_->calls(); }
    std::uint64_t connections_opened() const {
        return pool_->opened() + blocking_pool_->opened();
    }

    // Watches every key under `prefix` from `revision`: `on_events` gets each batch with the
    // revision it brings the reader to; `ended` runs once when the stream ends for any reason
    // (the caller re-reads and watches again), saying whether history was compacted away.
    std::shared_ptr<http_exchange> watch(boost::asio::io_context& io, const std::string& prefix,
                                         std::int64_t revision,
                                         std::function<void(std::vector<watch_event>,
                                                            std::int64_t revision)> on_events,
                                         std::function<void(watch_end)> ended) const;

    // Each endpoint that is down (its last call got no answer) gets one cheap call per
    // `every` (maintenance status, answered by the member alone) until it answers again.
    void probe_down_endpoints(boost::asio::io_context& io, std::chrono::milliseconds every) const;
    // The endpoints as configured, whether each answered its last call, and how many times
    // calls moved on to the next endpoint.
    const std::vector<std::string>& endpoints() const { return cfg_.endpoints; }
    bool endpoint_up(std::size_t i) const;
    std::uint64_t failovers() const;

    // Request bodies and answers.
    static nlohmann::json range_body(const std::string& key, bool prefix);
    static nlohmann::json put_op(const std::string& key, const std::string& value,
                                 std::int64_t lease = 0);
    static std::vector<key_value> kvs_of(const nlohmann::json& range_answer);
    static std::int64_t revision_of(const nlohmann::json& answer);
    static std::int64_t int_of(const nlohmann::json& j, const char* field);

private:
    http_call make_call(const std::string& path, nlohmann::json body) const;
    http_call make_call_to(std::size_t endpoint, const std::string& path,
                           nlohmann::json body) const;
    struct endpoint_state;  // which endpoint calls go to, which answer, the watches on each

    config::etcd_store cfg_;
    std::vector<http_url> urls_;
    std::shared_ptr<endpoint_state> endpoints_;
    // Idle connections for call() and watch() (on the caller's io_context), and for
    // call_blocking() on an io_context of its own (declared before them: it outlives their
    // sockets). Calls hold them weakly.
    std::shared_ptr<http_keepalive> pool_ = std::make_shared<http_keepalive>();
    std::unique_ptr<boost::asio::io_context> blocking_io_ =
        std::make_unique<boost::asio::io_context>(1);
    std::shared_ptr<http_keepalive> blocking_pool_ = std::make_shared<http_keepalive>();
};

}  // namespace stagegate::cluster
