// routing: the immutable route snapshot and the pure functions that route one request.
// Owns: which model a request is for (path or OpenAI body "model"), which version serves it
// (basis-point bands, sticky hashing, forced version), and building new snapshots when the
// control side changes weights. A snapshot is never modified after it is built; workers hold
// it through shared_ptr<const route_snapshot> and swap it on their own thread.
// Must not touch: sockets, threads, metrics. Picking allocates nothing and takes no lock.
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/predictions/extract.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace stagegate::routing {

inline constexpr std::uint32_t total_weight = config::total_weight;
inline constexpr std::uint32_t no_version = UINT32_MAX;

struct upstream_endpoint {
    std::uint32_t id = 0;  // stable across snapshots for the same host:port+TLS; indexes pools
    std::string host;
    std::uint16_t port = 0;
    boost::asio::ip::tcp::endpoint address;
    std::string authority;  // "host:port", for logs and errors
};

struct version_route {
    std::string name;
    std::uint32_t series = 0;  // metrics series of (model, this version, the model's stage)
    // A rollout's candidate: after this many 5xx in a row on one worker, that worker stops
    // sending it traffic until the next snapshot and reports it (0: not watched).
    std::uint32_t trip_after = 0;
    std::vector<upstream_endpoint> endpoints;
    std::shared_ptr<boost::asio::ssl::context> tls;  // null: plain TCP to the upstream
    std::string tls_server_name;                      // SNI and verified name
    bool tls_verify = true;
    // HTTP/2 to the endpoints (h2_upstream.hpp): cleartext with prior knowledge (h2c), or over
    // TLS when `tls` is set (h2: its context offers only "h2" by ALPN).
    bool http2 = false;
};

// One contiguous band of the [0, 10000) hash space, owned by one version.
struct band {
    std::uint32_t upper;    // exclusive
    std::uint32_t version;  // index into model_route::versions
};

struct model_route {
    std::string name;
    config::match route;
    std::vector<version_route> versions;
    std::uint32_t stable = 0;
    std::vector<std::uint32_t> weights;  // per version, basis points
    // Non-stable versions first (in config order), stable last: widening a candidate's weight
    // only moves the boundary with stable, so sticky keys on the candidate stay there.
    std::vector<band> bands;
    std::string stage;
    std::string sticky_header;
    std::string sticky_cookie;
    bool allow_force_version = false;
    std::uint64_t hash_salt = 0;  // from the model name only, so it survives every snapshot
    config::model_timeouts timeouts;
    config::passive_health health;
    // Where predictions are in this model's answers; null: answers are not read.
    std::shared_ptr<const predictions::spec> prediction;
    // A rollout's shadow traffic: this share (basis points) of the requests stable serves is
    // also sent to `mirror_version`, counted under `mirror_series` (stage "<stage>/mirror").
    std::uint32_t mirror_bp = 0;
    std::uint32_t mirror_version = no_version;
    std::uint32_t mirror_series = 0;
    std::uint32_t mirror_max_in_flight = 32;  // per worker
    std::uint32_t mirror_queue = 256;         // per worker

    std::uint32_t find_version(std::string_view version_name) const;
};

struct route_snapshot {
    std::uint64_t generation = 0;
    std::vector<model_route> models;
    std::uint32_t endpoint_count = 0;  // ids are < this
    // The answer to OpenAI's GET /v1/models (the models matched by their OpenAI "model"
    // field, in OpenAI's list format), built with the snapshot so serving it costs one write.
    std::string openai_model_list;
    // The metadata whose value names the model of a gRPC call of a service the gateway does not
    // read (config "grpc": {"model_header"}); empty: none.
    std::string grpc_model_header;

    const model_route* find_model(std::string_view name) const;
};

// --- Matching ---------------------------------------------------------------------------

enum class match_outcome {
    model,          // `model` is set
    needs_body,     // OpenAI-style: read the body and call match_body_model
    model_list,     // OpenAI's GET /v1/models: the gateway answers route_snapshot::openai_model_list
    unknown_model,  // a model path naming a model we don't serve; `name` says which
    no_route,       // not a path we serve at all
};

struct path_match {
    match_outcome outcome = match_outcome::no_route;
    const model_route* model = nullptr;
    std::string_view name;
};

// False for a path that could mean one model to us and another to a backend that normalizes
// it: dot-segments ("/../", "/./"), percent-encoded '.', '/' or '\', backslashes, NUL, or a
// target that is neither origin-form ("/...") nor absolute-form ("http://..."). The gateway
// answers these 400 rather than guess (nginx would merge them; we do not rewrite paths).
bool safe_request_path(std::string_view target);

// `target` is the request target (path and query).
path_match match_path(const route_snapshot& routes, std::string_view target);

// The top-level "model" string of a JSON body, without building a DOM; nullopt when absent,
// not a string, or the body is not JSON.
std::optional<std::string> body_model_field(std::string_view body);

// A model that accepts OpenAI-style body routing, or null.
const model_route* match_body_model(const route_snapshot& routes, std::string_view name);

// --- Picking ----------------------------------------------------------------------------

__extension__ using uint128 = unsigned __int128;

// Maps a 64-bit uniform value onto [0, 10000) by multiply-shift: no modulo bias.
inline std::uint32_t point_from_u64(std::uint64_t value) {
    return static_cast<std::uint32_t>((static_cast<uint128>(value) * total_weight) >> 64);
}

// Stable hash of a sticky key, salted per model (FNV-1a then a murmur3 finalizer).
std::uint64_t sticky_hash(std::string_view key, std::uint64_t salt);

// The version owning `point` in [0, 10000).
std::uint32_t pick_version(const model_route& model, std::uint32_t point);

// The value of cookie `name` in a Cookie header, or empty.
std::string_view find_cookie(std::string_view cookie_header, std::string_view name);

// --- Building (control side) -------------------------------------------------------------

// Hands out endpoint ids: the same host:port+TLS keeps its id across snapshots, so worker
// pools survive weight changes and reloads. Control side only; the mutex is never taken on
// the request path.
class endpoint_registry {
public:
    std::uint32_t id_for(const std::string& key);
    std::uint32_t size() const;

private:
    mutable std::mutex mutex_;
    std::map<std::string, std::uint32_t> ids_;
};

// Names the metrics series of (model, version, stage); supplied by whoever owns the metrics
// registry, so routing stays independent of metrics.
using series_namer =
    std::function<std::uint32_t(std::string_view model, std::string_view version,
                                std::string_view stage)>;

// Resolves endpoints and creates TLS client contexts; fails with every problem listed.
result<std::shared_ptr<const route_snapshot>> build_snapshot(const config::gateway& cfg,
                                                             endpoint_registry& registry,
                                                             const series_namer& series,
                                                             std::uint64_t generation = 1);

// Shadow traffic for a rollout's watched version (see model_route::mirror_bp).
struct mirror_plan {
    std::uint32_t bp = 0;
    std::uint32_t max_in_flight = 32;
    std::uint32_t queue = 256;
};

// A copy of `base` with one model's weights (basis points by version name, summing to 10000)
// and stage label replaced. This is what the rollout controller calls.
// `stable`, when not empty, also makes that version the model's stable one (a completed
// rollout); the stable version always owns the top band. `watched` names the version a
// rollout is exposing, tripped after `trip_after` failures in a row (see version_route);
// every other version of the model is unwatched. `mirror` sends shadow traffic to `watched`.
result<std::shared_ptr<const route_snapshot>> with_traffic(
    const route_snapshot& base, std::string_view model,
    const std::map<std::string, std::uint32_t>& weights, std::string stage,
    const series_namer& series, std::string_view stable = {}, std::string_view watched = {},
    std::uint32_t trip_after = 0, mirror_plan mirror = {});

}  // namespace stagegate::routing
