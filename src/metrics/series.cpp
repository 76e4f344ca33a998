#include "stagegate/metrics/series.hpp"
#include "stagegate/metrics/shard.hpp"

namespace stagegate::metrics {

std::string code_label(std::size_t slot) {
    if (slot < tracked_codes.size()) {
        return std::to_string(tracked_codes[slot]);
    }
    return std::to_string(slot - tracked_codes.size() + 1) + "xx";
}

const char* failure_label(std::size_t kind) {
    static constexpr const char* names[] = {"connect", "timeout", "reset", "protocol"};
    return kind < upstream_failure_kinds ? names[kind] : "unknown";
}

const char* token_source_label(std::size_t source) {
    static constexpr const char* names[] = {"usage", "counted"};
    return source < token_sources ? names[source] : "unknown";
}

const char* stream_outcome_label(std::size_t outcome) {
    static constexpr const char* names[] = {"completed",           "cut_by_upstream",
                                            "cut_by_idle_timeout", "cut_by_total_timeout",
                                            "client_gone",         "error_event"};
    return outcome < stream_outcomes ? names[outcome] : "unknown";
}

const char* unrouted_label(std::size_t reason) {
    static constexpr const char* names[] = {"bad_request", "unknown_model", "no_route",
                                            "overloaded"};
    return reason < unrouted_reasons ? names[reason] : "unknown";
}

std::uint64_t series_counts::requests() const {
    std::uint64_t n = 0;
    for (auto c : codes) {
        n += c;
    }
    return n;
}

std::uint64_t series_counts::server_errors() const {
    std::uint64_t n = cut_short;
    for (std::size_t i = 0; i < code_slots; ++i) {
        bool five = i < tracked_codes.size() ? tracked_codes[i] >= 500
                                             : i == tracked_codes.size() + 4;
        if (five) {
            n += codes[i];
        }
    }
    return n;
}

const char* grpc_code_label(std::size_t code) {
    static constexpr const char* names[grpc_codes] = {
        "OK",       "Canceled",          "Unknown",          "InvalidArgument", "DeadlineExceeded",
        "NotFound", "AlreadyExists",     "PermissionDenied", "ResourceExhausted",
        "FailedPrecondition", "Aborted", "OutOfRange",       "Unimplemented",   "Internal",
        "Unavailable", "DataLoss",       "Unauthenticated"};
    return code < grpc_codes ? names[code] : "Unknown";
}

void series_counts::merge(const series_counts& other) {
    for (std::size_t i = 0; i < code_slots; ++i) {
        codes[i] += other.codes[i];
    }
    for (std::size_t i = 0; i < upstream_failure_kinds; ++i) {
        upstream_failures[i] += other.upstream_failures[i];
    }
    cut_short += other.cut_short;
    time_to_first_token.merge(other.time_to_first_token);
    time_per_output_token.merge(other.time_per_output_token);
    streams += other.streams;
    stream_events += other.stream_events;
    input_tokens += other.input_tokens;
    for (std::size_t i = 0; i < token_sources; ++i) {
        output_tokens[i] += other.output_tokens[i];
    }
    for (std::size_t i = 0; i < stream_outcomes; ++i) {
        stream_ends[i] += other.stream_ends[i];
    }
    for (std::size_t i = 0; i < grpc_codes; ++i) {
        grpc_calls[i] += other.grpc_calls[i];
    }
    output_tokens_per_second.merge(other.output_tokens_per_second);
    latency.merge(other.latency);
    success_latency.merge(other.success_latency);
    for (std::size_t i = 0; i < unit_buckets; ++i) {
        units.requests[i] += other.units.requests[i];
        units.server_errors[i] += other.units.server_errors[i];
        units.client_errors[i] += other.units.client_errors[i];
    }
    predictions.merge(other.predictions);
}

void series_counts::clear() {
    codes.fill(0);
    upstream_failures.fill(0);
    cut_short = 0;
    time_to_first_token.clear();
    time_per_output_token.clear();
    streams = 0;
    stream_events = 0;
    input_tokens = 0;
    output_tokens.fill(0);
    stream_ends.fill(0);
    grpc_calls.fill(0);
    output_tokens_per_second.clear();
    latency.clear();
    success_latency.clear();
    units = {};
    predictions.clear();
}

std::uint32_t series_registry::id_for(std::string_view model, std::string_view version,
                                      std::string_view stage) {
    std::lock_guard lock(mutex_);
    auto key = std::make_tuple(std::string(model), std::string(version), std::string(stage));
    auto it = ids_.find(key);
    if (it != ids_.end()) {
        return it->second;
    }
    auto id = static_cast<std::uint32_t>(labels_.size());
    ids_.emplace(std::move(key), id);
    labels_.push_back({std::string(model), std::string(version), std::string(stage)});
    return id;
}

std::vector<series_labels> series_registry::labels() const {
    std::lock_guard lock(mutex_);
    return labels_;
}

std::size_t series_registry::size() const {
    std::lock_guard lock(mutex_);
    return labels_.size();
}

series_counts& shard::at(std::uint32_t series) {
    if (series >= series_.size()) {
        series_.resize(series + 1);
        is_dirty_.resize(series + 1, false);
    }
    auto& slot = series_[series];
    if (!slot) {
        slot = std::make_unique<series_counts>();  // once per series per worker
    }
    if (!is_dirty_[series]) {
        is_dirty_[series] = true;
        dirty_.push_back(series);
    }
    return *slot;
}

shard_delta shard::take() {
    shard_delta out;
    out.series.reserve(dirty_.size());
    for (auto id : dirty_) {
        out.series.emplace_back(id, *series_[id]);
        series_[id]->clear();
        is_dirty_[id] = false;
    }
    dirty_.clear();
    out.unrouted = unrouted_;
    unrouted_.fill(0);
    return out;
}

}  // namespace stagegate::metrics
