// rollout/controller: moves each model's candidate through its stages.
// Owns: the rollout state machine (progressing, paused, completed, rolled back, aborted),
// decisions from gate verdicts each interval, operator commands, persistence before a
// decision takes effect, and the explained event log. Runs on the control thread only.
// Must not touch: sockets or workers directly: it reads metrics and changes routes through
// `environment`, which the server implements (tests fake it).
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/metrics/series.hpp"
#include "stagegate/notify/notify.hpp"
#include "stagegate/rollout/gates.hpp"
#include "stagegate/rollout/report.hpp"
#include "stagegate/rollout/state_store.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace stagegate::rollout {

using clock = std::chrono::steady_clock;

using phase = config::rollout_phase;  // config/vocabulary.hpp
inline const char* phase_name(phase p) { return config::to_string(p); }

// One rollout as /metrics shows it (rollout/collectors writes it).
struct rollout_gauge {
    std::string model;
    std::string candidate;
    config::rollout_phase phase = config::rollout_phase::progressing;
    std::string stage;
    double stage_index = 0;
    double seconds_in_stage = 0;
    double max_duration_seconds = 0;  // 0: the stage has no maximum
    std::map<std::string, std::uint64_t> decisions;  // by decision: promoted, rolled_back, ...
    bool durable = true;  // false: a decision is applied but not recorded yet
    // Drift of the candidate's predictions from stable's in this stage (models with
    // predictions, live rollouts only).
    std::optional<double> psi;
    std::optional<double> ks;
};

// What the controller needs from the gateway.
class environment {
public:
    virtual ~environment() = default;
    // Counts for (model, version) since the stage labelled `stage` began.
    virtual metrics::series_counts stage_counts(const std::string& model,
                                                const std::string& version,
                                                const std::string& stage) = 0;
    // Starts (model, version, stage)'s "since stage began" counts from zero.
    virtual void reset_stage(const std::string& model, const std::string& version,
                             const std::string& stage) = 0;
    // Routes the model: `candidate_bp` to the candidate, the rest to `stable`, others 0; the
    // data plane trips the candidate after `trip_after` failures in a row (0: never) and
    // mirrors `mirror.bp` of stable's requests to it.
    struct mirror_settings {
        std::uint32_t bp = 0;
        std::uint32_t max_in_flight = 32;
        std::uint32_t queue = 256;
    };
    virtual result<void> apply(const std::string& model, const std::string& stable,
                               const std::string& candidate, std::uint32_t candidate_bp,
                               const std::string& stage, std::uint32_t trip_after,
                               mirror_settings mirror) = 0;
    // The model's predictions config (for the quality gates), if any.
    virtual std::optional<config::predictions> predictions_of(const std::string& model) = 0;
    // How long ago the version was trained (its trained_at), if known.
    virtual std::optional<double> version_age_seconds(const std::string& model,
                                                      const std::string& version) = 0;
    // Wall-clock time for events (milliseconds since the epoch).
    virtual std::int64_t wall_ms() = 0;
    // Calls gate checks with `payload`; `done` must run later (never inside this call), on
    // the controller's thread.
    virtual void run_checks(const std::vector<config::http_check>& checks,
                            const nlohmann::json& payload,
                            std::function<void(std::vector<notify::check_result>)> done) = 0;
};

class controller {
public:
    controller(environment& env, persistence* store) : env_(env), store_(store) {}
    // For a gateway that opens its state directory only when the first rollout starts.
    void set_store(persistence* store) { store_ = store; }

    // Starts the rollouts declared in the config, resuming any persisted state (the stage is
    // kept; bake time and stage counts start again), except one this controller already routes
    // by (a cluster's new leader followed it): that one goes on as it is.
    result<void> init(const config::gateway& cfg, clock::time_point now);

    // Starts a rollout declared at run time (what the admin API's POST /api/v1/rollouts calls).
    // Fails with rollout_active (409) while the model's rollout is progressing or paused,
    // invalid_rollout with every problem, or state_io_failed when it cannot be persisted.
    result<nlohmann::json> start(const std::string& model, config::rollout spec,
                                 const std::vector<std::string>& versions,
                                 const std::string& stable, const std::string& actor,
                                 const std::string& reason, clock::time_point now);

    // A follower replica routes by the leader's decisions: `state` is a rollout's persisted
    // document (its spec inside, else `configured`). Nothing is decided or persisted here; a
    // new stage starts its bake time and counts again. Whether the state is newer than the
    // one routed now is the caller's to know (the store's revision, cluster/revisions.hpp);
    // this only skips the very same document. Returns whether anything changed.
    // A rollback applied here but not recorded (unrecorded_rollbacks) is not undone by a
    // state that still gives the same candidate traffic: that one was decided without knowing
    // of it (a leader elected while this replica could not reach etcd), and this replica keeps
    // the candidate at 0 % until a state without it (the leader recorded the rollback handed
    // over to it, or the rollout ended) arrives.
    result<bool> adopt(const std::string& model, const nlohmann::json& state,
                       const config::rollout* configured, clock::time_point now);

    // Rollbacks applied but not recorded yet: what a replica that no longer leads hands over
    // to the one that does (cluster::member::hand_over).
    struct unrecorded_rollback {
        std::string model;
        std::string candidate;
        std::uint64_t sequence = 0;  // the state's it was applied over, plus one
        nlohmann::json event;
    };
    std::vector<unrecorded_rollback> unrecorded_rollbacks() const;

    // One evaluation round over the rollouts whose interval has come (metrics must be fresh).
    void on_tick(clock::time_point now);
    // The data plane saw the version fail `count` times in a row. Returns whether it rolled
    // back a rollout because of it.
    bool on_version_broken(const std::string& model, const std::string& version,
                           std::uint32_t count, clock::time_point now);

    // Operator commands: pause, resume, promote ({"full": true}), rollback, abort,
    // set_weight ({"weight_bp": N}), restart. Returns the new status, or an error with code
    // unknown_rollout (404), invalid_state (409), invalid_argument (400) or state_io_failed.
    result<nlohmann::json> command(const std::string& model, const std::string& name,
                                   const nlohmann::json& args, const std::string& actor,
                                   const std::string& reason, clock::time_point now);

    // A config reload gave a model's rollout a new spec: the same candidate, and at least as
    // many stages as the one it is in. The rollout keeps its phase and stage; routes follow
    // the new stage weight. Returns whether anything changed.
    result<bool> update_spec(const std::string& model, config::rollout spec,
                             clock::time_point now);

    struct summary {
        phase ph;
        std::string candidate;
        std::string stable;
        std::size_t stage_index;
        std::string stage_label;
        std::uint64_t sequence = 0;  // one more with every persisted decision
        bool durable = true;         // false: a rollback applied but not recorded yet
        bool live() const { return ph == phase::progressing || ph == phase::paused; }
    };
    std::optional<summary> find(const std::string& model) const;
    // The models with a rollout (any phase).
    std::vector<std::string> models() const;

    nlohmann::json status(const std::string& model, clock::time_point now) const;
    // The stage_summary (rollout/report) of the stage a live rollout is in now, so far; nullopt
    // for a model without a live rollout. Every decision that ends a stretch of a stage (a
    // move, a pause, a resume) records the same summary in its event.
    std::optional<nlohmann::json> running_stage(const std::string& model) const;
    // Every rollout for /metrics: phase, stage, time in stage, decisions counted.
    std::vector<rollout_gauge> gauges(clock::time_point now) const;
    nlohmann::json status_all(clock::time_point now) const;
    bool has(const std::string& model) const { return rollouts_.count(model) > 0; }
    // The shortest evaluation interval, to schedule ticks.
    std::chrono::milliseconds tick_interval() const;

private:
    struct rollout_state {
        std::string model;
        std::string stable;
        std::string candidate;
        phase ph = phase::progressing;
        std::size_t stage = 0;
        std::optional<std::uint32_t> manual_weight;
        std::string reason;
        std::uint64_t sequence = 0;
        bool pre_checks_done = true;  // false: the candidate waits at 0 % for its pre-checks
    };
    enum class check_kind { pre, stage, post };
    struct pending_record {
        nlohmann::json state;
        nlohmann::json event;
    };
    struct active {
        config::rollout spec;
        rollout_state st;
        clock::time_point stage_started;
        std::int64_t stage_started_ms = 0;  // the same, on the wall clock (for the report)
        clock::time_point next_eval;
        bool max_duration_reported = false;
        evaluation last;  // the last verdicts, for status
        bool judged_in_stage = false;  // `last` was judged since the stage (stretch) began
        std::int64_t judged_ms = 0;
        bool checks_in_flight = false;
        std::optional<std::size_t> checks_passed_stage;  // this stage's checks said go
        bool post_checks_done = false;
        bool approval_pending = false;  // an approval stage is ready and waits for promote
        nlohmann::json last_checks = nullptr;  // kind, time and each check's answer
        // The evidence the gates judge: both versions' counts in each finished segment of the
        // rollout (a stretch at one split in which the candidate served clients), oldest
        // first; the current segment is read live under `segment_label`.
        std::vector<metrics::series_counts> candidate_segments;
        std::vector<metrics::series_counts> stable_segments;
        std::string segment_label;
        bool segment_serving = false;
        // A rollback applied while the store could not record it: retried every interval.
        std::optional<pending_record> unrecorded;
        bool unrecorded_held = false;  // adopt() kept it against a stored state (logged once)
    };

    static nlohmann::json to_json(const rollout_state& s);
    static std::optional<rollout_state> from_json(const nlohmann::json& j);
    std::string stage_label(const active& a) const;
    std::uint32_t candidate_weight(const active& a) const;
    environment::mirror_settings mirror_of(const active& a) const;
    // Starts the stage's counts again for both versions (and the candidate's mirror series).
    void reset_counts(const active& a, const std::string& label);
    // Keeps the segment that ends now as evidence (when the candidate served clients in it)
    // and starts a new one under `label`.
    void next_segment(active& a, const std::string& label);
    // Routes by the rollout's state; when a stage began, its bake time and counts start again.
    result<void> route_by_state(active& a, bool stage_began, clock::time_point now);
    // Records `next` with its event in one write, then routes by it. When it cannot be
    // recorded the state is unchanged and the error returned, except for a rollback, which is
    // applied anyway (less exposure is always the safe side), kept for record_pending, and
    // answered with not_durable.
    result<void> transition(active& a, rollout_state next, config::event_type type,
                            const std::string& text, nlohmann::json details,
                            clock::time_point now);
    // Records a rollback that could not be recorded when applied; true once nothing waits.
    bool record_pending(active& a);
    void evaluate_one(active& a, clock::time_point now);
    bool awaiting_pre_checks(const active& a) const;
    nlohmann::json check_payload(const active& a, check_kind kind) const;
    void start_checks(active& a, check_kind kind, const std::vector<config::http_check>& list);
    void on_checks_done(const std::string& model, std::uint64_t sequence, check_kind kind,
                        std::vector<notify::check_result> results, clock::time_point now);
    gate_config gates_for(const active& a) const;
    // What the report tells of the stretch of a stage `a` is in now.
    stage_facts facts_of(const active& a) const;

    environment& env_;
    persistence* store_;
    std::map<std::string, active> rollouts_;
    // Decisions and commands by model and name, for as long as the process runs (a counter).
    std::map<std::string, std::map<std::string, std::uint64_t>> decisions_;
};

}  // namespace stagegate::rollout
