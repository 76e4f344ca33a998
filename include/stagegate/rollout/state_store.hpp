// rollout/state_store: durable rollout state and the event log, in a state directory.
// Owns: the append-only JSON-lines event log (each line fsynced; rotated by size), which is
// the record of every decision: a decision's event carries the model's new state, and its one
// fsynced line is the commit point. One JSON snapshot per model (temp file, fsync, rename,
// fsync of the directory: never torn) is written after it, so a start reads the snapshots and
// the log's newer records, and the state and the history can never disagree.
// Must not touch: rollout decisions. Blocking file I/O: control thread only, never workers.
#pragma once

#include "stagegate/core/error.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace stagegate::rollout {

// Where the controller keeps what it decided: a state directory (state_store, below) or etcd
// (cluster::etcd_persistence, where only the elected leader may write).
class persistence {
public:
    virtual ~persistence() = default;
    // Durably records one decision: the model's new state and the event that tells it (the
    // store stamps its "id"), in one write: after any crash both are there or neither is, and
    // an error means neither was recorded.
    virtual result<void> record(const std::string& model, const nlohmann::json& state,
                                nlohmann::json event) = 0;
    // Every model's last saved state.
    virtual result<std::map<std::string, nlohmann::json>> load_all() const = 0;
    // Durably appends one event that changes no state (the store stamps its "id").
    virtual result<void> append_event(nlohmann::json event) = 0;
    // One page, oldest first: the newest `limit` events whose id is below `before_id` (0: no
    // bound) and above `after_id`, of one model (empty: all).
    struct page {
        std::vector<nlohmann::json> events;
        bool more = false;  // older events exist below the first one returned
    };
    virtual page events(std::size_t limit, const std::string& model, std::uint64_t before_id,
                        std::uint64_t after_id = 0) const = 0;
};

class state_store : public persistence {
public:
    // Creates the directory if needed; fails when it cannot be created or written.
    static result<state_store> open(const std::string& dir,
                                    std::uint64_t max_log_bytes = 16 * 1024 * 1024);

    // Appends the event with the state inside it ("state"), then replaces the model's
    // snapshot; a snapshot that cannot be written is caught up by the next start from the log.
    result<void> record(const std::string& model, const nlohmann::json& state,
                        nlohmann::json event) override;
    // Atomically replaces the snapshot of one model's state.
    result<void> save(const std::string& model, const nlohmann::json& state);
    // Every model's last recorded state: its snapshot, unless the log holds a later record.
    // Unparsable snapshots are reported, not silently skipped.
    result<std::map<std::string, nlohmann::json>> load_all() const override;

    // Appends one event (a JSON object) as one line, fsynced before returning. The store
    // stamps it with "id", one more than the last id in the log, so readers can page and
    // resume a live feed; then it tells the listener.
    result<void> append_event(nlohmann::json event) override;
    // The last `limit` events of the current log file, oldest first (optionally one model).
    std::vector<nlohmann::json> recent_events(std::size_t limit,
                                              const std::string& model = {}) const;
    // From the rotated and the current log, by an index kept in memory: the page's lines are
    // read, never the whole log (two viewers re-reading 2 x 16 MB on every request pushed
    // /healthz on the same thread past Kubernetes' 1 s probe timeout).
    page events(std::size_t limit, const std::string& model, std::uint64_t before_id,
                std::uint64_t after_id = 0) const override;
    // Called on the appending thread after each event is durable (the admin API's live feed).
    void set_listener(std::function<void(const nlohmann::json&)> listener) {
        listener_ = std::move(listener);
    }
    std::uint64_t last_event_id() const { return last_id_; }

    const std::string& dir() const { return dir_; }

private:
    state_store(std::string dir, std::uint64_t max_log_bytes)
        : dir_(std::move(dir)), max_log_bytes_(max_log_bytes) {}
    std::string state_path(const std::string& model) const;
    std::string log_path() const { return dir_ + "/events.jsonl"; }

    // Cuts off a torn tail line (a crash mid-append: never acknowledged), so the log holds
    // only whole records, then reads the last id.
    void recover_log();
    // Rewrites every snapshot the log's last record of its model is ahead of (a crash between
    // the log line and the snapshot, a snapshot that could not be written, a damaged one).
    void catch_up_snapshots();
    // Each model's last record in the log (rotated and current file, in commit order).
    std::map<std::string, nlohmann::json> logged_records() const;

    // Where one event's line lies: which file (rotated or current), its offset and length,
    // and its model (a number from model_ids_), so a page is found without reading.
    struct indexed_event {
        std::uint64_t id = 0;
        std::uint64_t offset = 0;
        std::uint32_t length = 0;
        std::uint32_t model = 0;
        bool rotated = false;
    };
    void index_event(const nlohmann::json& event, bool rotated, std::uint64_t offset,
                     std::size_t length);
    std::uint32_t model_index(const std::string& model);

    std::string dir_;
    std::uint64_t max_log_bytes_;
    std::uint64_t last_id_ = 0;
    std::vector<indexed_event> index_;  // both files, in id order
    std::map<std::string, std::uint32_t> model_ids_;  // "" for events naming no model
    std::function<void(const nlohmann::json&)> listener_;
};

}  // namespace stagegate::rollout
