#include "stagegate/control/plane.hpp"
#include "stagegate/core/log.hpp"

#include "stagegate/cluster/member.hpp"
#include "stagegate/control/collectors.hpp"
#include "stagegate/control/reload_plan.hpp"
#include "stagegate/rollout/collectors.hpp"
#include "stagegate/server/collectors.hpp"
#include "stagegate/metrics/wire.hpp"

#include <boost/asio/steady_timer.hpp>


namespace stagegate::control {

namespace net = boost::asio;

// The controller's view of the gateway: metrics from the data plane's store, traffic through
// its snapshots. Used on the control thread (and during start, before any thread runs).
class plane::environment : public rollout::environment {
public:
    explicit environment(plane& p) : p_(p) {}

    metrics::series_counts stage_counts(const std::string& model, const std::string& version,
                                        const std::string& stage) override {
        const auto* c = p_.data_.store().stage(p_.data_.series().id_for(model, version, stage));
        auto counts = c ? *c : metrics::series_counts{};
        // With replicas, the leader judges them all: add what the others published.
        if (auto it = p_.replica_counts_.find({model, version, stage});
            it != p_.replica_counts_.end()) {
            counts.merge(it->second);
        }
        return counts;
    }
    void reset_stage(const std::string& model, const std::string& version,
                     const std::string& stage) override {
        p_.data_.store().reset_stage(p_.data_.series().id_for(model, version, stage),
                                      metrics::clock::now());
    }
    result<void> apply(const std::string& model, const std::string& stable,
                       const std::string& candidate, std::uint32_t candidate_bp,
                       const std::string& stage, std::uint32_t trip_after,
                       mirror_settings mirror) override {
        std::map<std::string, std::uint32_t> weights;
        weights[stable] = routing::total_weight - candidate_bp;
        if (candidate != stable) {
            weights[candidate] = candidate_bp;
        } else {
            mirror.bp = 0;  // completed: nothing left to mirror to
        }
        return p_.data_.set_traffic(model, weights, stage, stable, candidate, trip_after,
                               {mirror.bp, mirror.max_in_flight, mirror.queue});
    }
    std::optional<config::predictions> predictions_of(const std::string& model) override {
        const auto* m = p_.model_config(model);
        return m ? m->prediction : std::nullopt;
    }
    std::optional<double> version_age_seconds(const std::string& model,
                                              const std::string& version) override {
        const auto* m = p_.model_config(model);
        if (!m) {
            return std::nullopt;
        }
        for (const auto& v : m->versions) {
            if (v.name == version && v.trained_at) {
                const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
                return static_cast<double>(now - *v.trained_at);
            }
        }
        return std::nullopt;
    }
    std::int64_t wall_ms() override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
    void run_checks(const std::vector<config::http_check>& checks,
                    const nlohmann::json& payload,
                    std::function<void(std::vector<notify::check_result>)> done) override {
        p_.checks_->run(checks, payload, std::move(done));
    }

private:
    plane& p_;
};

plane::plane(net::io_context& io, config::gateway cfg, server::data_plane& data)
    : io_(io), cfg_(std::move(cfg)), data_(data), env_(std::make_unique<environment>(*this)) {
    server::data_plane_hooks hooks;
    hooks.version_broken = [this](std::uint32_t series, std::uint32_t count) {
        version_broken(series, count);
    };
    hooks.served = [this](std::vector<predictions::served_record> served) {
        remember_served(std::move(served));
    };
    data_.set_hooks(std::move(hooks));
    register_collectors();
}

plane::~plane() = default;

void plane::start(std::string admin_url) {
    started_ = true;
    schedule_collection();
    start_cluster(std::move(admin_url));
    schedule_rollout_tick();
}

void plane::stop() {
    stopped_ = true;
    if (collect_timer_) {
        collect_timer_->cancel();
    }
    if (rollout_timer_) {
        rollout_timer_->cancel();
    }
    if (state_retry_timer_) {
        state_retry_timer_->cancel();
    }
    if (webhooks_) {
        webhooks_->stop();
    }
    if (checks_) {
        checks_->stop();
    }
    if (member_) {
        member_->stop();  // gives leadership up now rather than when the lease runs out
    }
}

namespace {

// One process log line per rollout event, so `kubectl logs` tells what the controller did
// (the event log and the API hold the whole record): rollbacks, failed checks and stuck
// stages as warnings, the rest as info.
void log_event(const nlohmann::json& event) {
    auto text = [&](const char* key) {
        auto it = event.find(key);
        return it != event.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string type = text("type");
    const auto parsed = config::parse_event_type(type);
    const bool bad = parsed && (*parsed == config::event_type::rolled_back ||
                                *parsed == config::event_type::check_failed ||
                                *parsed == config::event_type::stuck);
    log::write(bad ? log::level::warn : log::level::info, "rollout", text("text"),
               {{"event", type},
                {"model", text("model")},
                {"candidate", text("candidate")},
                {"stage", text("stage")},
                {"id", event.contains("id") ? event["id"].dump() : std::string()}});
}

}  // namespace

void plane::notify_event(const nlohmann::json& event) {
    log_event(event);
    for (const auto& listener : event_listeners_) {
        listener(event);
    }
    for (const auto& listener : feed_listeners_) {
        listener(event);
    }
}

void plane::version_broken(std::uint32_t series, std::uint32_t count) {
    auto labels = data_.series().labels();
    // In a cluster only the leader decides (its own data plane trips count there).
    if (member_ && !member_->leader()) {
        return;
    }
    if (controller_ && series < labels.size()) {
        controller_->on_version_broken(labels[series].model, labels[series].version, count,
                                       rollout::clock::now());
    }
}

void plane::remember_served(std::vector<predictions::served_record> served) {
    feedback_.remember(std::move(served), data_.series().labels(), cfg_.models);
}

feedback_outcome plane::apply_feedback(const std::vector<feedback_label>& labels) {
    auto snap = data_.routes();
    return feedback_.apply(labels, data_.series().labels(), snap.get(), data_.store());
}

void plane::start_cluster(std::string admin_url) {
    if (!cfg_.etcd) {
        return;
    }
    cluster::member::callbacks cb;
    cb.elected = [this] { lead(); };
    cb.deposed = [] {
        log::info("control", "following: routes change only by the leader's decisions");
    };
    // Only ever a state stored at a newer revision than the one this replica routes by, never
    // its own decision coming back: adopted by the leader too, since a newer state it did not
    // write is another leader's (it was stopped or cut off across its lease) or its own write
    // whose answer was lost; either way the stored state is the durable one.
    cb.state_changed = [this](const std::string& model, const nlohmann::json& state,
                              std::int64_t revision) {
        const auto* mc = model_config(model);
        auto adopted = controller_->adopt(model, state,
                                          mc && mc->rollout_spec ? &*mc->rollout_spec : nullptr,
                                          rollout::clock::now());
        if (!adopted) {
            log::error("control", "cannot follow the leader's rollout",
                       {{"model", model}, {"revision", std::to_string(revision)},
                        {"error", adopted.error().describe()}});
        }
    };
    cb.event = [this](const nlohmann::json& event) {  // the leader's: webhooks, once
        log_event(event);
        for (const auto& listener : event_listeners_) {
            listener(event);
        }
    };
    cb.event_seen = [this](const nlohmann::json& event) {  // any replica's live feed
        for (const auto& listener : feed_listeners_) {
            listener(event);
        }
    };
    member_ = std::make_unique<cluster::member>(io_, *cfg_.etcd, admin_url, std::move(cb));
    controller_->set_store(member_.get());
    member_->start();
}

// Elected: catch up with every persisted decision, then decide from here on (rollouts the
// config declares and no leader has started yet start now).
void plane::lead() {
    const auto now = rollout::clock::now();
    auto persisted = member_->load_all();
    if (persisted) {
        for (const auto& [model, state] : *persisted) {
            const auto* mc = model_config(model);
            (void)controller_->adopt(model, state,
                                     mc && mc->rollout_spec ? &*mc->rollout_spec : nullptr, now);
        }
    }
    if (auto started = controller_->init(cfg_, now); !started) {
        log::error("control", "as the new leader, cannot resume the rollouts",
                   {{"error", started.error().describe()}});
    }
    if (!rollout_timer_) {
        schedule_rollout_tick();
    }
}

result<void> plane::prepare() {
    checks_ = std::make_unique<notify::checks>(io_);
    auto hooks = notify::webhooks::create(io_, cfg_.webhooks);
    if (!hooks) {
        return hooks.error();
    }
    webhooks_ = std::move(*hooks);
    on_event([this](const nlohmann::json& event) { webhooks_->publish(event); });
    controller_ = std::make_unique<rollout::controller>(*env_, nullptr);
    bool any = false;
    for (const auto& m : cfg_.models) {
        any = any || m.rollout_spec.has_value();
    }
    if (!any || cfg_.etcd) {
        // The state directory is opened when the first rollout starts; with etcd, rollouts
        // start once the cluster has elected this replica or it follows the leader.
        return {};
    }
    open_state_or_wait();
    return {};
}

void plane::open_state_or_wait() {
    auto opened = ensure_state();
    result<void> resumed = opened;
    std::vector<std::string> recorded;  // models with a record to resume from
    if (opened) {
        if (auto records = state_->load_all()) {
            for (const auto& [model, state] : *records) {
                recorded.push_back(model);
            }
        }
        resumed = controller_->init(cfg_, rollout::clock::now());
    }
    if (resumed) {
        if (state_problem_) {
            hold_after_unavailable_start(recorded);
            state_problem_.reset();
            if (!rollout_timer_ && started_) {
                schedule_rollout_tick();
            }
        }
        return;
    }
    // Serving must never depend on rollout state (a crash loop would take every model's
    // traffic down): models route by the config, which gives a rollout's candidate nothing.
    // The directory is opened afresh next time (it may have been replaced or recreated), and
    // a rollout that init resumed before it failed is dropped with it: nothing may decide
    // without a record (its routes stay at that recorded state until the retry resumes it).
    if (state_) {
        controller_ = std::make_unique<rollout::controller>(*env_, nullptr);
        state_.reset();
    }
    if (!state_problem_ || state_problem_->message != resumed.error().message) {
        log::error("control",
                   "rollout state unavailable: serving stable versions only, rollout changes "
                   "refused, trying again every second",
                   {{"dir", cfg_.state_dir}, {"error", resumed.error().describe()}});
    }
    state_problem_ = resumed.error();
    retry_state_soon();
}

// The gateway started without its state: a rollback the previous process applied but could
// not record before it stopped is in no record, and resuming the record would undo it. So a
// resumed rollout holds its candidate at 0 % (recorded, automation paused) until an operator
// resumes it; a rollout that had no record cannot have lost one.
void plane::hold_after_unavailable_start(const std::vector<std::string>& recorded) {
    const auto now = rollout::clock::now();
    for (const auto& model : recorded) {
        auto summary = controller_->find(model);
        if (!summary || !summary->live()) {
            continue;
        }
        auto held = controller_->command(
            model, "set_weight", {{"weight_bp", 0}}, "stagegate",
            "the rollout state was unavailable when the gateway started: a rollback applied "
            "before that may not have been recorded; resume to continue",
            now);
        if (!held) {
            log::error("control", "cannot hold the resumed rollout at 0 %",
                       {{"model", model}, {"error", held.error().describe()}});
        }
    }
    log::info("control", "the rollout state is back: rollouts resume, held at 0 % until resumed",
              {{"dir", cfg_.state_dir}});
}

void plane::retry_state_soon() {
    state_retry_timer_ = std::make_unique<net::steady_timer>(io_, std::chrono::seconds(1));
    state_retry_timer_->async_wait([this](boost::system::error_code ec) {
        if (!ec && !stopped_ && state_problem_) {
            open_state_or_wait();
        }
    });
}

std::optional<error> plane::refused_while_state_unavailable() const {
    if (!state_problem_) {
        return std::nullopt;
    }
    return error::make(state_problem_->code == "state_corrupt" ? "state_corrupt"
                                                               : "state_io_failed",
                       "the rollout state is unavailable (" + state_problem_->describe() +
                           "): rollout changes are refused until it is back; meanwhile "
                           "traffic goes to stable versions only");
}

result<void> plane::ensure_state() {
    if (state_) {
        return {};
    }
    if (cfg_.etcd) {
        if (!member_) {
            return error::make("not_started", "the gateway has not joined its cluster yet");
        }
        return {};
    }
    auto opened = rollout::state_store::open(cfg_.state_dir);
    if (!opened) {
        return opened.error();
    }
    state_.emplace(std::move(*opened));
    state_->set_listener([this](const nlohmann::json& event) { notify_event(event); });
    controller_->set_store(&*state_);
    return {};
}

void plane::on_event(std::function<void(const nlohmann::json&)> listener) {
    event_listeners_.push_back(std::move(listener));
}

void plane::on_feed_event(std::function<void(const nlohmann::json&)> listener) {
    feed_listeners_.push_back(std::move(listener));
}

rollout::persistence* plane::event_log() {
    if (state_) {
        return &*state_;
    }
    return member_.get();
}

result<nlohmann::json> plane::start_rollout(const std::string& model, config::rollout spec,
                                            const std::string& actor, const std::string& reason) {
    auto snap = data_.routes();
    const auto* m = snap ? snap->find_model(model) : nullptr;
    if (!m) {
        return error::make("unknown_model", "no model named \"" + model + "\"");
    }
    const auto* mc = model_config(model);
    if (auto problems = config::prediction_gate_problems(
            spec, mc ? mc->prediction : std::nullopt, "");
        !problems.empty()) {
        return error{"invalid_rollout", "the rollout's quality gates need what the model does not "
                                        "provide",
                     std::move(problems)};
    }
    if (auto refused = refused_while_state_unavailable()) {
        return *refused;
    }
    if (auto opened = ensure_state(); !opened) {
        return opened.error();
    }
    std::vector<std::string> versions;
    for (const auto& v : m->versions) {
        versions.push_back(v.name);
    }
    const bool was_idle = !rollout_timer_;
    auto started = controller_->start(model, std::move(spec), versions,
                                      m->versions[m->stable].name, actor, reason,
                                      rollout::clock::now());
    if (started && was_idle) {
        schedule_rollout_tick();
    }
    return started;
}

const config::model* plane::model_config(const std::string& name) const {
    for (const auto& m : cfg_.models) {
        if (m.name == name) {
            return &m;
        }
    }
    return nullptr;
}

result<nlohmann::json> plane::reload(config::gateway next, const std::string& actor) {
    auto current = data_.routes();
    if (!current) {
        return error::make("not_started", "the gateway has no routes yet");
    }
    rollout_states rollouts;
    if (controller_) {
        for (const auto& name : controller_->models()) {
            if (auto ro = controller_->find(name)) {
                rollouts.emplace(name, *ro);
            }
        }
    }
    auto plan = plan_reload(cfg_, *current, rollouts, next);
    auto problems = plan.problems();
    std::shared_ptr<const routing::route_snapshot> snap;
    if (problems.empty()) {
        auto built = data_.build_snapshot(next, current->generation + 1);
        if (!built) {
            return built.error();
        }
        snap = *built;
        for (const auto& m : plan.models) {
            if (!m.carried) {
                continue;
            }
            const auto& c = *m.carried;
            auto overlaid = data_.with_traffic(*snap, m.model, c.weights, c.stage, c.stable,
                                               c.watched, c.trip_after, c.mirror);
            if (!overlaid) {
                problems.push_back({"/models", m.model + ": " + overlaid.error().message});
                continue;
            }
            snap = *overlaid;
        }
    }
    if (!problems.empty()) {
        return error{"invalid_config",
                     "the new config was not applied: " + std::to_string(problems.size()) +
                         " problem(s)",
                     std::move(problems)};
    }
    cfg_.models = std::move(next.models);
    // Remembered answers follow the new feedback limits.
    feedback_.reconfigure(cfg_.models);
    data_.publish(snap);
    nlohmann::json summary = {{"generation", snap->generation},
                              {"models", snap->models.size()},
                              {"rollouts_started", nlohmann::json::array()},
                              {"rollouts_updated", nlohmann::json::array()}};
    const auto now = rollout::clock::now();
    std::vector<problem> late;
    for (auto& m : plan.models) {
        if (m.rollout != rollout_step::update_spec) {
            continue;
        }
        if (auto updated = controller_->update_spec(m.model, std::move(*m.spec), now); !updated) {
            late.push_back({"/models", m.model + ": " + updated.error().message});
        } else if (*updated) {
            summary["rollouts_updated"].push_back(m.model);
        }
    }
    for (auto& m : plan.models) {
        if (m.rollout != rollout_step::start) {
            continue;
        }
        auto started = start_rollout(m.model, std::move(*m.spec), actor, "config reload");
        if (!started) {
            late.push_back({"/models", m.model + ": " + started.error().describe()});
        } else {
            summary["rollouts_started"].push_back(m.model);
        }
    }
    if (!late.empty()) {
        // The routes are applied; a rollout that could not start (state directory trouble)
        // is reported rather than hidden.
        return error{"reload_incomplete",
                     "the new routes are live but some rollouts could not be started or updated",
                     std::move(late)};
    }
    if (state_) {
        (void)state_->append_event({{"time_ms", env_->wall_ms()},
                                    {"type", "config_reloaded"},
                                    {"actor", actor},
                                    {"generation", snap->generation},
                                    {"text", "config reloaded by " + actor}});
    }
    log::info("control", "config reloaded",
              {{"actor", actor}, {"generation", std::to_string(snap->generation)}});
    return result<nlohmann::json>(boost::system::in_place_value, std::move(summary));
}

void plane::schedule_rollout_tick() {
    if (!controller_ || (!state_ && !member_)) {
        return;  // no rollout yet: rollout_start schedules the first tick
    }
    rollout_timer_ = std::make_unique<net::steady_timer>(io_, controller_->tick_interval());
    rollout_timer_->async_wait([this](boost::system::error_code ec) {
        if (ec || stopped_ || data_.draining()) {
            return;
        }
        // Judge on fresh numbers: merge every worker's shard first.
        data_.collect([this] {
            if (!member_) {
                controller_->on_tick(rollout::clock::now());
                schedule_rollout_tick();
                return;
            }
            if (!member_->leader()) {  // followers route by the leader's decisions
                hand_over_unrecorded();
                schedule_rollout_tick();
                return;
            }
            member_->fetch_counts([this](std::map<std::string, nlohmann::json> published) {
                take_replica_counts(published);
                member_->fetch_handovers([this](std::map<std::string, nlohmann::json> handed) {
                    if (member_->leader() && !stopped_ && !data_.draining()) {
                        record_handovers(handed);
                        controller_->on_tick(rollout::clock::now());
                    }
                    schedule_rollout_tick();
                });
            });
        });
    });
}

// A replica that rolled back as leader while etcd was out of reach, and lost its lease
// meanwhile, cannot record the rollback: it leaves it in etcd for the leader (once per
// rollback), and keeps the candidate at 0 % until the stored state says rolled back.
void plane::hand_over_unrecorded() {
    for (const auto& u : controller_->unrecorded_rollbacks()) {
        const auto key = u.model + "@" + std::to_string(u.sequence);
        if (handed_over_.count(key)) {
            continue;
        }
        nlohmann::json handover = {{"model", u.model},
                                   {"candidate", u.candidate},
                                   {"replica", member_->replica()},
                                   {"event", u.event}};
        member_->hand_over(u.model, handover, [this, key, model = u.model](bool taken) {
            if (taken) {
                handed_over_.insert(key);
                log::info("control", "handed the unrecorded rollback over to the leader",
                          {{"model", model}, {"leader", member_->leader_name()}});
            }
        });
    }
}

// The leader records each rollback handed over to it as its own decision (the rollout still
// gives that candidate traffic), then drops the handover; one about a rollout that moved on
// (ended, or another candidate) is dropped as it is.
void plane::record_handovers(const std::map<std::string, nlohmann::json>& handed) {
    for (const auto& [model, h] : handed) {
        const auto now_routed = controller_->find(model);
        if (now_routed && now_routed->live() && now_routed->candidate == h.value("candidate", "")) {
            const auto event = h.value("event", nlohmann::json::object());
            const auto replica = h.value("replica", std::string("another replica"));
            auto done = controller_->command(
                model, "rollback", nlohmann::json::object(), "replica " + replica,
                "rolled back by replica " + replica +
                    " while it led and etcd was out of reach (" + event.value("text", "") +
                    "), recorded by the leader",
                rollout::clock::now());
            if (!done) {
                log::warn("control", "cannot record a rollback handed over yet",
                          {{"model", model}, {"error", done.error().describe()}});
                continue;  // kept in etcd: the next evaluation tries again
            }
        }
        member_->drop_handover(model);
    }
}

result<nlohmann::json> plane::rollout_command(const std::string& model, const std::string& name,
                                              const nlohmann::json& args,
                                              const std::string& actor,
                                              const std::string& reason) {
    if (!controller_) {
        return error::make("not_started", "the gateway has not started");
    }
    if (auto refused = refused_while_state_unavailable()) {
        return *refused;
    }
    return controller_->command(model, name, args, actor, reason, rollout::clock::now());
}

nlohmann::json plane::cluster_status() const {
    if (!member_) {
        return {{"store", "file"}};
    }
    nlohmann::json out = {{"store", "etcd"},
                          {"replica", member_->replica()},
                          {"leader", member_->leader()},
                          {"etcd_up", member_->connected()},
                          {"leader_replica", member_->leader_name()},
                          {"leader_admin", member_->leader_admin()},
                          {"synced", member_->synced()},
                          {"synced_once", member_->synced_once()},
                          {"revision", member_->routed_revision()},
                          {"history_compacted_to", member_->compacted_to()},
                          {"etcd_calls", member_->etcd_calls()},
                          {"etcd_connections_opened", member_->etcd_connections_opened()}};
    if (!member_->synced()) {
        out["unsynced_reason"] = member_->unsynced_reason();
        out["unsynced_for_ms"] = member_->unsynced_for().count();
    }
    return out;
}

void plane::refresh_leader(std::function<void()> done) {
    if (!member_) {
        done();
        return;
    }
    member_->lookup_leader(std::move(done));
}

nlohmann::json plane::rollout_status(const std::string& model) {
    return controller_->status(model, rollout::clock::now());
}

void plane::schedule_collection() {
    // Once a second: fills the window's 1 s slots even when nobody is reading.
    collect_timer_ = std::make_unique<net::steady_timer>(io_, std::chrono::seconds(1));
    collect_timer_->async_wait([this](boost::system::error_code ec) {
        if (ec || stopped_ || data_.draining()) {
            return;
        }
        data_.collect([this] {
            publish_counts();
            schedule_collection();
        });
    });
}

// Cluster mode: this replica's counts for each stage in progress, for the leader to sum.
void plane::publish_counts() {
    if (!member_ || !controller_) {
        return;
    }
    nlohmann::json rollouts = nlohmann::json::object();
    for (const auto& model : controller_->models()) {
        auto r = controller_->find(model);
        if (!r || !r->live()) {
            continue;
        }
        nlohmann::json series = nlohmann::json::array();
        auto add = [&](const std::string& version, const std::string& stage) {
            if (const auto* c = data_.store().stage(data_.series().id_for(model, version, stage))) {
                series.push_back({{"version", version}, {"stage", stage},
                                  {"counts", metrics::to_wire(*c)}});
            }
        };
        add(r->stable, r->stage_label);
        add(r->candidate, r->stage_label);
        add(r->candidate, config::mirror_stage(r->stage_label));
        rollouts[model] = {{"sequence", r->sequence}, {"series", std::move(series)}};
    }
    if (!rollouts.empty()) {
        member_->publish_counts({{"rollouts", std::move(rollouts)}});
    }
}

// The leader sums the other replicas' counts for the decisions they were taken under (the
// same state sequence); older ones, from before a stage began, are left out.
void plane::take_replica_counts(const std::map<std::string, nlohmann::json>& published) {
    replica_counts_.clear();
    for (const auto& [replica, doc] : published) {
        const auto& rollouts = doc.value("rollouts", nlohmann::json::object());
        if (!rollouts.is_object()) {
            continue;
        }
        for (const auto& [model, r] : rollouts.items()) {
            auto mine = controller_->find(model);
            if (!mine || !r.is_object() || r.value("sequence", std::uint64_t{0}) != mine->sequence ||
                !r.contains("series") || !r["series"].is_array()) {
                continue;
            }
            for (const auto& s : r["series"]) {
                if (!s.is_object() || !s.contains("version") || !s["version"].is_string() ||
                    !s.contains("stage") || !s["stage"].is_string() || !s.contains("counts")) {
                    continue;
                }
                auto& into = replica_counts_[{model, s["version"].get<std::string>(),
                                              s["stage"].get<std::string>()}];
                (void)metrics::add_from_wire(s["counts"], into);
            }
        }
    }
}

void plane::register_collectors() {
    // The order is the exposition's: series, drift, feedback, traffic, roles, ages, rollouts,
    // state, webhooks, cluster, the listeners, the build, the process.
    metrics_.add(server::series_collector(data_));
    metrics_.add([this](metrics::text_writer& out) {
        rollout::write_drift_metrics(out, rollout_gauges());
    });
    metrics_.add([this](metrics::text_writer& out) { feedback_.write_metrics(out); });
    metrics_.add(server::traffic_collector(data_));
    metrics_.add([this](metrics::text_writer& out) {
        write_version_roles(out, data_.routes().get(), live_candidates());
    });
    metrics_.add([this](metrics::text_writer& out) {
        write_model_ages(out, cfg_.models,
                         std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count());
    });
    metrics_.add([this](metrics::text_writer& out) {
        rollout::write_rollout_metrics(out, rollout_gauges());
    });
    metrics_.add([this](metrics::text_writer& out) {
        write_state_available(out, !state_problem_.has_value());
    });
    metrics_.add([this](metrics::text_writer& out) {
        write_webhook_metrics(out, webhooks_ ? webhooks_->counts()
                                             : std::vector<notify::webhook_counts>{});
    });
    metrics_.add([this](metrics::text_writer& out) {
        if (member_) {
            std::vector<std::pair<std::string, bool>> endpoints;
            for (std::size_t i = 0; i < member_->etcd_endpoints().size(); ++i) {
                endpoints.emplace_back(member_->etcd_endpoints()[i],
                                       member_->etcd_endpoint_up(i));
            }
            write_cluster_metrics(out, {member_->replica(), member_->leader(),
                                        member_->connected(),
                                        static_cast<double>(member_->elections_won()),
                                        static_cast<double>(member_->counts_published()),
                                        member_->synced(),
                                        static_cast<double>(member_->routed_revision()),
                                        static_cast<double>(member_->compactions()),
                                        static_cast<double>(member_->etcd_calls()),
                                        static_cast<double>(member_->etcd_connections_opened()),
                                        std::move(endpoints),
                                        static_cast<double>(member_->etcd_failovers())});
        }
    });
    metrics_.add(server::downstream_collector(data_));
    metrics_.add([](metrics::text_writer& out) {
        write_build_info(out, STAGEGATE_VERSION, STAGEGATE_COMMIT);
    });
    metrics_.add(metrics::write_process_metrics);
}

std::vector<rollout::rollout_gauge> plane::rollout_gauges() const {
    return controller_ ? controller_->gauges(rollout::clock::now())
                       : std::vector<rollout::rollout_gauge>{};
}

std::map<std::string, std::string> plane::live_candidates() const {
    std::map<std::string, std::string> candidates;
    if (controller_) {
        for (const auto& model : controller_->models()) {
            if (auto r = controller_->find(model); r && r->live()) {
                candidates[model] = r->candidate;
            }
        }
    }
    return candidates;
}

}  // namespace stagegate::control
