// cluster/etcd: a client of etcd's v3 JSON gateway (the API Kubernetes' own store serves on
// every member: POST /v3/kv/range, /v3/kv/txn, /v3/kv/deleterange, /v3/lease/grant,
// /v3/lease/keepalive, /v3/watch), over core/http_client, so no new dependency.
// Owns: the JSON and base64 encoding of keys and values, int64-as-string fields, and moving
// on to the next endpoint when one does not answer.
// Must not touch: what the keys mean (member.hpp, persistence.hpp).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/core/http_client.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/io_context.hpp>

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

std::string base64(std::string_view bytes);
std::string unbase64(std::string_view text);
// The smallest key after every key that starts with `prefix` (a range's end).
std::string prefix_end(const std::string& prefix);

class etcd_client {
public:
    explicit etcd_client(const config::etcd_store& cfg);

    // One call: POST `path` (such as "/v3/kv/txn") with `body`. An answer other than 200 is
    // an error with code "etcd_failed"; no answer, "etcd_unreachable" (and the next call goes
    // to the next endpoint).
    void call(boost::asio::io_context& io, const std::string& path, nlohmann::json body,
              std::function<void(result<nlohmann::json>)> done) const;
    // The same, waiting for the answer (control thread, for the controller's durable writes;
    // bounded by the timeout).
    result<nlohmann::json> call_blocking(const std::string& path, nlohmann::json body) const;

    // Watches every key under `prefix` from `revision`: `on_events` gets each batch with the
    // revision it brings the reader to; `ended` runs once when the stream ends for any reason
    // (the caller re-reads and watches again).
    std::shared_ptr<http_exchange> watch(boost::asio::io_context& io, const std::string& prefix,
                                         std::int64_t revision,
                                         std::function<void(std::vector<watch_event>,
                                                            std::int64_t revision)> on_events,
                                         std::function<void()> ended) const;

    // Request bodies and answers.
    static nlohmann::json range_body(const std::string& key, bool prefix);
    static nlohmann::json put_op(const std::string& key, const std::string& value,
                                 std::int64_t lease = 0);
    static std::vector<key_value> kvs_of(const nlohmann::json& range_answer);
    static std::int64_t revision_of(const nlohmann::json& answer);
    static std::int64_t int_of(const nlohmann::json& j, const char* field);

private:
    http_call make_call(const std::string& path, nlohmann::json body) const;

    config::etcd_store cfg_;
    std::vector<http_url> urls_;
    std::shared_ptr<std::size_t> current_ = std::make_shared<std::size_t>(0);
};

}  // namespace stagegate::cluster
