// rollout/state_store: durable rollout state and the event log, in a state directory.
// Owns: atomic replacement of one JSON document per model (temp file, fsync, rename, fsync of
// the directory: a reader after any crash sees the old or the new document, never a torn one)
// and an append-only JSON-lines event log (each line fsynced; rotated by size).
// Must not touch: rollout decisions. Blocking file I/O: control thread only, never workers.
#pragma once

#include "stagegate/core/error.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace stagegate::rollout {

class state_store {
public:
    // Creates the directory if needed; fails when it cannot be created or written.
    static result<state_store> open(const std::string& dir,
                                    std::uint64_t max_log_bytes = 16 * 1024 * 1024);

    // Atomically replaces the state of one model.
    result<void> save(const std::string& model, const nlohmann::json& state);
    // Every model's last saved state. Unparsable files are reported, not silently skipped.
    result<std::map<std::string, nlohmann::json>> load_all() const;

    // Appends one event (a JSON object) as one line, fsynced before returning.
    result<void> append_event(const nlohmann::json& event);
    // The last `limit` events of the current log file, oldest first (optionally one model).
    std::vector<nlohmann::json> recent_events(std::size_t limit,
                                              const std::string& model = {}) const;

    const std::string& dir() const { return dir_; }

private:
    state_store(std::string dir, std::uint64_t max_log_bytes)
        : dir_(std::move(dir)), max_log_bytes_(max_log_bytes) {}
    std::string state_path(const std::string& model) const;
    std::string log_path() const { return dir_ + "/events.jsonl"; }

    std::string dir_;
    std::uint64_t max_log_bytes_;
};

}  // namespace stagegate::rollout
