// config: the gateway's configuration as plain values, parsed from JSON and validated.
// Owns: the config structs, parse() (text -> config, every problem with its JSON path) and
// validate() (shared by file load, --check-config and, later, admin updates).
// Must not touch: sockets, threads or any runtime state. Throws nothing.
#pragma once

#include "stagegate/config/vocabulary.hpp"
#include "stagegate/core/error.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stagegate::config {

using millis = std::chrono::milliseconds;

// Weights are in basis points: 10000 = 100 %.
inline constexpr std::uint32_t total_weight = 10000;

struct tls_server {
    std::string cert_file;
    std::string key_file;
};

struct listener {
    std::string address = "0.0.0.0";
    std::uint16_t port = 8080;
    std::optional<tls_server> tls;
};

struct upstream_tls {
    bool verify = true;       // verify the upstream's certificate chain and name
    std::string ca_file;      // empty: the system's default trust store
    std::string server_name;  // SNI and name to verify; empty: the endpoint's host
    // The certificate (chain) and key this gateway presents to a backend that asks for one
    // (mutual TLS, as nginx's proxy_ssl_certificate): both or neither.
    std::string cert_file;
    std::string key_file;
};

struct endpoint {
    std::string host;
    std::uint16_t port = 0;
};

// How the gateway talks to a version's endpoints: HTTP/1.1 over a pool of keep-alive
// connections, or HTTP/2 (a few long-lived connections carrying many streams each), which gRPC
// backends (Triton, KServe, TF Serving) need: cleartext with prior knowledge (h2c), or over
// TLS (h2: the version's `tls` settings, ALPN offering only "h2").
enum class upstream_protocol { http1, h2c, h2 };

struct version {
    std::string name;
    std::vector<endpoint> endpoints;
    std::optional<upstream_tls> tls;
    upstream_protocol protocol = upstream_protocol::http1;
    // When the version's model was trained ("trained_at", RFC 3339), as seconds since the
    // epoch: exported as stagegate_model_age_seconds so staleness can be alerted on.
    std::optional<std::int64_t> trained_at;
};

// Which requests belong to a model.
struct match {
    bool kserve_v1 = true;  // /v1/models/{name}[:verb] and /v1/models/{name}/...
    bool kserve_v2 = true;  // /v2/models/{name}/...
    bool openai = true;     // "model" in the JSON body of /v1/chat/completions, /v1/completions,
                            // /v1/embeddings
    std::vector<std::string> path_prefixes;  // custom prefixes owned by this model
};

struct sticky {
    std::string header;  // hash this request header, if present
    std::string cookie;  // else this cookie, if present
};

struct traffic {
    std::map<std::string, std::uint32_t> weights;  // version -> basis points, sums to 10000
    std::string stage = "stable";                  // label stamped in X-Stagegate-Stage
    sticky sticky_key;
    bool allow_force_version = false;  // honour X-Stagegate-Force-Version
};

// Upstream timeouts, made for streams as nginx's proxy_read_timeout and Envoy's stream idle
// timeout are: a streamed answer (SSE tokens) that keeps moving may run for as long as it
// moves; one that stalls is cut. 0 switches stream_idle or total off (not both).
struct model_timeouts {
    millis connect{1000};
    millis first_byte{30000};   // request sent -> response header received
    millis stream_idle{60000};  // the longest gap between two reads of the answer's body
    millis total{0};            // cap on the whole upstream exchange (0: none)
};

// Passive health, as nginx's max_fails / fail_timeout: after max_fails failed connects in a
// row, an endpoint is skipped for fail_timeout (per worker thread), unless it is its
// version's last endpoint in service (nginx's single-server rule; see proxy/upstream_pool).
struct passive_health {
    std::uint32_t max_fails = 1;
    millis fail_timeout{10000};
};

// An external check (a gate webhook): POSTed the rollout's state; a 2xx answer means go,
// anything else (another status, a timeout, no answer) holds, or rolls back when asked.
struct http_check {
    std::string url;
    millis timeout{5000};
    bool rollback_on_failure = false;  // "on_failure": "hold" (default) | "rollback"
    bool operator==(const http_check&) const = default;
};

// One step of a rollout: the candidate's share and what it must show before widening.
struct rollout_stage {
    std::string name;                 // stage label; default "canary-<percent>" or "shadow"
    std::uint32_t weight = 0;         // candidate basis points, 0..10000 (0: mirror only)
    // Basis points of the requests served by stable that are also sent to the candidate
    // ("mirror_percent"); the client only ever gets stable's answer.
    std::uint32_t mirror = 0;
    millis min_bake{60000};           // at least this long in the stage
    std::uint64_t min_requests = 100; // and at least this many candidate requests
    std::optional<millis> max_duration;
    // "on_max_duration": "hold" (default), "rollback", or "complete" (no gate failed by then)
    bool rollback_on_max_duration = false;
    bool complete_on_max_duration = false;
    bool approval = false;           // hold before widening until an operator promotes
    std::vector<http_check> checks;  // called before widening past this stage
    bool operator==(const rollout_stage&) const = default;
};

// Gates judged every interval (see rollout/gates.hpp for their meaning).
struct rollout_gates {
    std::uint64_t min_requests = 100;
    std::optional<double> max_error_rate;
    std::optional<double> max_upstream_failure_rate;
    std::map<double, double> max_latency_seconds;  // quantile -> seconds
    std::optional<double> max_error_rate_delta;
    std::optional<double> max_error_rate_ratio;
    std::map<double, double> max_latency_ratio;  // quantile -> ratio to stable
    // OpenAI streams: "max_ttft_ms", "max_ttft_ratio", "max_time_per_token_ms",
    // "max_time_per_token_ratio" (quantile -> milliseconds or ratio to stable).
    std::map<double, double> max_ttft_seconds;
    std::map<double, double> max_ttft_ratio;
    std::map<double, double> max_time_per_token_seconds;
    std::map<double, double> max_time_per_token_ratio;
    // "min_tokens_per_second" (quantile -> tokens/s, a floor) and "min_tokens_per_second_ratio"
    // (quantile -> the share of stable's rate the candidate must reach, in (0, 1]).
    std::map<double, double> min_tokens_per_second;
    std::map<double, double> min_tokens_per_second_ratio;
    bool sequential_errors = true;
    bool sequential_latency = true;
    double latency_slack_seconds = 0.001;  // "latency_slack_ms": latency tolerances allow this much
    bool client_errors = true;             // 4xx compared with stable
    // Widen only on proof, as the last stage completes (else on estimates within limits).
    bool prove_every_stage = false;
    double alpha = 0.01;
    double beta = 0.05;
    // What counts as an error: "5xx" (the default; includes the gateway's own 502/503/504 for
    // upstream failures), "4xx", or tracked codes such as "429". Never 4xx unless asked.
    std::vector<std::string> error_statuses = {"5xx"};
    // Model-quality gates ("gates": {"predictions": {...}}); see rollout/gates.hpp.
    std::uint64_t min_samples = 200;            // predictions / comparisons / labels needed
    std::optional<double> min_agreement;        // mirror top-1 agreement floor, 0..1
    std::optional<double> max_psi;              // drift ceilings vs stable
    std::optional<double> max_ks;
    std::optional<double> max_accuracy_drop;    // classification: accuracy >= stable - this
    std::optional<double> max_mae_increase;     // regression: MAE <= stable + this
    std::optional<std::chrono::hours> max_candidate_age;  // trained_at no older than this
    bool operator==(const rollout_gates&) const = default;
    bool judges_predictions() const {
        return min_agreement || max_psi || max_ks || max_accuracy_drop || max_mae_increase;
    }
};

// The stage label a stage's mirrored requests are counted under: "<stage>/mirror".
inline std::string mirror_stage(const std::string& stage) { return stage + "/mirror"; }

struct rollout {
    std::string candidate;
    std::vector<rollout_stage> stages;
    rollout_gates gates;
    millis interval{5000};
    // Roll back at once when a worker sees this many candidate 5xx in a row (0: off).
    std::uint32_t fast_rollback_consecutive_errors = 20;
    std::vector<http_check> pre_checks;   // before the candidate gets any traffic
    std::vector<http_check> post_checks;  // after it completes (rollback: back to the old stable)
    // Mirrored requests per worker thread: at most this many in flight, this many waiting;
    // beyond that a mirror is dropped (and counted), never the primary delayed.
    std::uint32_t mirror_max_in_flight = 32;
    std::uint32_t mirror_queue = 256;
    // The rollout as given (compact JSON): persisted with its state so another replica, or
    // this one after a restart, can resume a rollout started at run time.
    std::string source;
    bool operator==(const rollout&) const = default;
};

// Where a model's prediction is in its answers ("predictions"), read off the request path
// after the answer has been relayed. A preset fills the pointers: "tfserving" (/predictions/0),
// "kserve_v2" (/outputs/0/data), "openai" (finish_reason as the label, the length of
// message.content as the value).
struct predictions {
    std::string preset;
    std::string label;  // JSON pointer to a class output: string, integer, bool, or scores
    std::string value;  // JSON pointer to a numeric output: number, scores (max), string (length)
    double bins_min = 0;  // fixed value bins for drift; values outside go to the end bins
    double bins_max = 1;
    std::uint32_t bins = 20;  // 2..32
    std::uint64_t max_body_bytes = 256 * 1024;  // larger answers are counted, not read
    // Delayed feedback (POST /api/v1/feedback): remember what each request was answered with
    // for this long (and at most this many requests) to join labels to it.
    bool feedback = false;
    std::chrono::seconds feedback_ttl{3600};
    std::uint32_t feedback_capacity = 100000;
    bool operator==(const predictions&) const = default;
};

struct model {
    std::string name;
    std::optional<predictions> prediction;
    match route;
    std::vector<version> versions;
    std::string stable;
    traffic split;
    model_timeouts timeouts;
    passive_health health;
    std::optional<rollout> rollout_spec;
    // The stable version should be retrained before it is this old ("max_version_age_hours";
    // exported as stagegate_model_max_age_seconds for alerting).
    std::optional<std::chrono::hours> max_version_age;
};

struct limits {
    std::uint32_t max_header_bytes = 16 * 1024;
    std::uint64_t max_request_body_bytes = 16 * 1024 * 1024;
    std::uint32_t max_connections_per_worker = 10000;
    // Per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS): nginx's default, 128.
    std::uint32_t max_concurrent_streams = 128;
};

struct client_timeouts {
    millis idle{60000};     // keep-alive wait for the next request
    millis request{30000};  // reading one request, header and body
    millis drain{10000};    // graceful shutdown: how long in-flight requests may take
    // Before that, how long the listeners keep accepting and serving (answers close their
    // connections, /readyz fails) while a load balancer takes the replica out: Kubernetes
    // removes a terminating pod's endpoints only after SIGTERM, so closing at once refuses
    // the clients still sent here. Envoy's drain time, nginx ingress's preStop sleep.
    millis drain_delay{0};
};

struct upstream_pool {
    std::uint32_t max_idle_per_endpoint = 64;  // per worker thread
    millis idle_timeout{30000};
    // Peek at a pooled connection before reusing it (one recv syscall) so one the backend has
    // closed, or wrote to, is dropped, not used ("check_idle"). Idle connections are watched
    // too (a wait armed on each closes it when a byte, a FIN or a reset arrives): with the
    // peek, from a second of idleness on; without it, at once, and a FIN that came in the same
    // turn of the event loop as the request taking the connection fails that request with 502
    // (bytes too, never relayed).
    bool check_idle = true;
};

enum class admin_role { viewer, operator_ };

// A bearer token for the admin API: the secret itself lives in `file` (one line), never in
// the config, so configs can be shared and logged.
struct admin_token {
    std::string name;  // recorded as the actor of every command made with it
    admin_role role = admin_role::viewer;
    std::string file;
};

// The admin listener: /metrics, /healthz, /readyz and /api/v1/. Keep it off public networks.
// Without tokens every caller is an anonymous operator, which validate() only allows on a
// loopback address.
struct admin {
    bool enabled = true;
    std::string address = "127.0.0.1";
    std::uint16_t port = 9901;
    std::optional<tls_server> tls;
    std::vector<admin_token> tokens;
    bool metrics_need_token = false;  // "metrics_auth": "open" (default) | "token"
    std::uint64_t max_body_bytes = 1024 * 1024;
};

// Where rollout events are POSTed ("notifications": {"webhooks": [...]}).
struct webhook {
    std::string name;
    std::string url;
    std::vector<std::string> events;  // event types to send; empty: all
    std::vector<std::string> models;  // models to send events of; empty: all
    std::string secret_file;          // HMAC-SHA256 key for X-Stagegate-Signature; empty: none
    millis timeout{5000};
    std::uint32_t max_attempts = 8;
    millis backoff{1000};             // before the 2nd attempt, doubling up to 60 s
    std::uint32_t queue_size = 1000;  // events waiting; more are dropped (and logged)
};


// "state": {"store": "etcd", ...}: several replicas act as one gateway, coordinated through
// etcd (its v3 JSON gateway): one leader decides, every replica routes by its decisions.
struct etcd_store {
    std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", tried in turn
    std::string prefix;                  // "/stagegate/<cluster>": every key lives under it
    millis lease_ttl{5000};              // leadership and published metrics expire after it
    std::string replica;                 // this replica's name; empty: host name and pid
    std::string advertise_admin;         // how other replicas reach this admin API (forwarding)
    std::string ca_file;                 // https endpoints: trust this CA
    std::string cert_file;               // https endpoints: client certificate and key
    std::string key_file;
    millis timeout{2000};                // each etcd call
    // How much of etcd's history the leader keeps: it compacts the revisions older than this
    // (watches and re-reads need seconds of it; 5 minutes leaves room to spare).
    millis history{300000};
};

// The access log's fields, by the names its template and JSON lines use. proxy's formatter
// indexes them in this order.
inline constexpr std::array<std::string_view, 19> access_log_fields = {
    "time",      "request_id", "client",      "method",         "path",
    "protocol",  "model",      "version",     "stage",          "route",
    "status",    "code",       "bytes_received", "bytes_sent",  "upstream",
    "upstream_head_ms", "duration_ms", "ttft_ms", "cut_short"};

// One line per request, off unless `path` is set (nginx's access_log, Envoy's access logs).
struct access_log {
    std::string path;             // "stdout", "stderr" or a file, appended to; empty: off
    std::string format = "json";  // "json": one object per line; else a template of %field%s
    // Share of requests logged (drawn per request); answers of 500 and more, cut-short answers
    // and the gateway's own errors are always logged.
    double sample = 1.0;
};

// "logging": the process log's level (--log-level overrides it) and the access log.
struct logging {
    std::string level = "info";
    access_log access;
};

// "grpc": how the gateway routes gRPC calls beyond the services it reads (KServe v2 / Triton,
// TF Serving).
struct grpc_routing {
    // The request metadata (a header) whose value names the model of a call of any other
    // gRPC service ("model_header", e.g. "x-model-name"); empty: such calls are routed by a
    // model's match.path_prefixes only.
    std::string model_header;
};

struct gateway {
    std::vector<listener> listeners;
    admin admin_listener;
    std::string state_dir = "stagegate-state";  // rollout state and event log ("store": "file")
    std::optional<etcd_store> etcd;             // set for "store": "etcd"
    bool record_metrics = true;  // "metrics": {"enabled": false} turns per-request recording off
    std::uint32_t workers = 0;  // 0: one per core
    limits limit;
    client_timeouts client;
    upstream_pool pool;
    std::vector<model> models;
    grpc_routing grpc;
    std::vector<webhook> webhooks;
    logging log;
};

// Parses and validates; on failure the error lists every problem with its JSON path.
result<gateway> parse(std::string_view json_text);
result<gateway> load_file(const std::string& path);

// Checks cross-field rules (weights sum, stable exists, unique names, ...). parse() calls it.
std::vector<problem> validate(const gateway& cfg);

// Rules of one rollout against its model's versions; `path` prefixes the problems' paths.
// Shared by the config file and the API that starts rollouts.
std::vector<problem> validate_rollout(const rollout& r, const std::vector<std::string>& versions,
                                      const std::string& stable, const std::string& path);

// Model-quality gates against what the model's "predictions" can provide (a label for
// agreement and accuracy, a value for KS and MAE, feedback for accuracy, a mirror stage for
// agreement).
std::vector<problem> prediction_gate_problems(const rollout& r,
                                              const std::optional<predictions>& pred,
                                              const std::string& path);

// A rollout given as JSON (the admin API's POST /api/v1/rollouts), with the same keys as a
// model's "rollout" in the config; problems are reported under `path`. The model's versions
// are checked by validate_rollout().
result<rollout> parse_rollout(std::string_view json_text, const std::string& path);

// The files a config names (admin tokens, webhook secrets) that cannot be read, and admin
// tokens that are too weak or placeholders: for --check-config and start. (parse() itself
// reads nothing but the config.)
std::vector<problem> check_files(const gateway& cfg);

// What is wrong with an access log format ("json", or text with %field% placeholders from
// access_log_fields and %% for a percent sign), if anything.
std::optional<std::string> access_log_format_problem(std::string_view format);

// What a running gateway cannot take from a reloaded config without a restart (listeners,
// admin, workers, state, metrics, limits, timeouts, pool): one problem per changed section.
std::vector<problem> reload_problems(const gateway& running, const gateway& next);

// RFC 3339 ("2026-11-01T12:00:00Z", "...T12:00:00.5+02:00") -> seconds since the epoch.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);

// "host:port" -> endpoint; false when malformed.
bool parse_host_port(std::string_view text, endpoint& out);

}  // namespace stagegate::config
