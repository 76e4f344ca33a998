// stagegate-rollout-sim: plays synthetic traffic through the real rollout controller and gate
// code with an injected clock, and reports, per scenario, how often the candidate is rolled
// back or promoted to 100 %, after how many candidate requests and how long.
//
// The traffic models what live rollouts showed: sticky users with Zipf-distributed activity
// and their own error propensity (requests of one user are correlated), a stable that fails
// fast, tight and heavy-tailed latency, hangs that end in the gateway's 504, tails below the
// p99, 4xx regressions, faster candidates and candidates a few percent slower.
//
//   stagegate-rollout-sim [--runs N] [--rps R] [--seed S] [--scenario NAME] [--minutes M]
//                         [--gates JSON]   (the rollout's gates, instead of the plan's)
//   stagegate-rollout-sim --check-aa --runs N   (exit 1 if A/A false rollbacks exceed alpha
//                                                by more than 5 binomial standard deviations)
//   --config FILE [--model NAME]: your own rollout instead of the plan: the stages, bake times,
//   interval and gates of the model's "rollout" in a gateway config, rehearsed against the
//   same traffic (gates on what the simulator does not model are left out, and listed).
//   STAGEGATE_SIM_REASONS=1 prints each rollback's reason and each held run's open gates.
#include "stagegate/rollout/controller.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace stagegate;
using namespace std::chrono_literals;

namespace {

struct version_model {
    double error_rate = 0.005;   // 503s
    bool fast_errors = false;    // errors answered at once (else after the usual latency)
    double client_error_rate = 0.002;  // 400s, answered at once
    double median_ms = 50;
    double sigma = 0.5;          // lognormal shape
    double hang_rate = 0;        // never answered: the gateway's 504 after timeout_ms
    double tail_rate = 0;        // this share of answers takes tail_ms longer
    double tail_ms = 0;
};

constexpr double timeout_ms = 2000;

// The simulated gateway: counts per (version, stage), routes from the controller.
class sim_environment : public rollout::environment {
public:
    std::map<std::pair<std::string, std::string>, metrics::series_counts> counts;
    std::string stage;
    std::uint32_t candidate_bp = 0;
    std::string stable = "v1";

    metrics::series_counts stage_counts(const std::string&, const std::string& v,
                                        const std::string& s) override {
        return counts[{v, s}];
    }
    void reset_stage(const std::string&, const std::string& v, const std::string& s) override {
        counts[{v, s}] = {};
    }
    result<void> apply(const std::string&, const std::string& st, const std::string&,
                       std::uint32_t bp, const std::string& label, std::uint32_t,
                       mirror_settings) override {
        stable = st;
        candidate_bp = bp;
        stage = label;
        return {};
    }
    std::optional<config::predictions> predictions_of(const std::string&) override {
        return std::nullopt;
    }
    std::optional<double> version_age_seconds(const std::string&, const std::string&) override {
        return std::nullopt;
    }
    std::int64_t wall_ms() override { return 0; }
    // The simulated plan has no gate checks; were one configured, it would never answer and
    // the rollout would hold, which is the safe side.
    void run_checks(const std::vector<config::http_check>&, const nlohmann::json&,
                    std::function<void(std::vector<notify::check_result>)>) override {}
};

// The plan of the live trials: 5 % -> 25 % -> 50 %, then 100 % (completed), checks every
// second; by default tolerances errors x1.5, p50 x1.2 and p99 x1.1 of stable's. "Held" is
// what neither passed nor failed within the horizon (30 minutes by default).
std::string gates_json =
    R"({"min_requests": 50, "max_error_rate_ratio": 1.5,
        "max_latency_ratio": {"p50": 1.2, "p99": 1.1},
        "sequential": {"alpha": 0.01, "beta": 0.05}})";  // --gates

// The rollout being rehearsed: the plan's (model m, v1 -> v2) unless --config names one.
std::optional<config::gateway> configured;
std::string model_name = "m";
std::string stable_name = "v1";
std::string candidate_name = "v2";

config::gateway plan() {
    if (configured) {
        return *configured;
    }
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:1"]},
                     {"name": "v2", "endpoints": ["127.0.0.1:2"]}],
        "rollout": {"candidate": "v2", "interval_ms": 1000, "fast_rollback_consecutive_errors": 0,
          "stages": [{"weight_bp": 500, "min_bake_ms": 15000, "min_requests": 50},
                     {"weight_bp": 2500, "min_bake_ms": 15000, "min_requests": 150},
                     {"weight_bp": 5000, "min_bake_ms": 15000, "min_requests": 300}],
          "gates": )" + gates_json + "}}]}");
    if (!cfg) {
        std::fprintf(stderr, "%s\n", cfg.error().describe().c_str());
        std::exit(1);
    }
    return *cfg;
}

// Who sends the requests: anonymous (each request split at random) or sticky users, hashed
// once into [0, 10000), with Zipf(1.1) activity over 1,000 users and an error propensity of
// their own (lognormal, sigma 1, mean 1): a heavy user with flaky inputs moves a version's
// error rate on their own.
// Loads `path` and keeps the model's rollout (the only one with a rollout when `model` is
// empty), without what the simulated traffic cannot answer: prediction-quality and version-age
// gates, LLM stream gates and HTTP checks would hold the rollout for ever, so they go (listed
// on stderr). Exits with the problem when there is no such rollout.
void use_config(const std::string& path, const std::string& model) {
    auto cfg = config::load_file(path);
    if (!cfg) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), cfg.error().describe().c_str());
        std::exit(2);
    }
    const config::model* chosen = nullptr;
    for (const auto& m : cfg->models) {
        if (m.rollout_spec && (model.empty() || m.name == model)) {
            if (chosen) {
                std::fprintf(stderr, "%s: several models have a rollout; name one with --model\n",
                             path.c_str());
                std::exit(2);
            }
            chosen = &m;
        }
    }
    if (!chosen) {
        std::fprintf(stderr, "%s: no model%s has a \"rollout\"\n", path.c_str(),
                     model.empty() ? "" : (" named " + model).c_str());
        std::exit(2);
    }
    config::model m = *chosen;
    auto& spec = *m.rollout_spec;
    auto& g = spec.gates;
    std::string left_out;
    auto drop = [&](bool present, const char* what) {
        if (present) {
            left_out += left_out.empty() ? what : std::string(", ") + what;
        }
    };
    drop(g.judges_predictions(), "prediction gates");
    g.min_agreement.reset();
    g.max_psi.reset();
    g.max_ks.reset();
    g.max_accuracy_drop.reset();
    g.max_mae_increase.reset();
    drop(g.max_candidate_age.has_value(), "max_candidate_age");
    g.max_candidate_age.reset();
    const bool llm = !g.max_ttft_seconds.empty() || !g.max_ttft_ratio.empty() ||
                     !g.max_time_per_token_seconds.empty() ||
                     !g.max_time_per_token_ratio.empty() || !g.min_tokens_per_second.empty() ||
                     !g.min_tokens_per_second_ratio.empty();
    drop(llm, "LLM stream gates");
    g.max_ttft_seconds.clear();
    g.max_ttft_ratio.clear();
    g.max_time_per_token_seconds.clear();
    g.max_time_per_token_ratio.clear();
    g.min_tokens_per_second.clear();
    g.min_tokens_per_second_ratio.clear();
    drop(!spec.pre_checks.empty() || !spec.post_checks.empty(), "HTTP checks");
    spec.pre_checks.clear();
    spec.post_checks.clear();
    for (auto& stage : spec.stages) {
        drop(!stage.checks.empty(), "stage checks");
        stage.checks.clear();
        drop(stage.approval, "approvals (taken as given at once)");
        stage.approval = false;
        if (stage.weight == 0) {
            std::fprintf(stderr, "model %s: stage %s sends the candidate no traffic (mirrors "
                                 "are not simulated): it holds until its max_duration\n",
                         m.name.c_str(), stage.name.c_str());
        }
    }
    spec.source.clear();  // its text still holds what was left out
    if (!left_out.empty()) {
        std::fprintf(stderr, "model %s: left out of the rehearsal (not simulated): %s\n",
                     m.name.c_str(), left_out.c_str());
    }
    model_name = m.name;
    stable_name = m.stable;
    candidate_name = spec.candidate;
    cfg->models = {m};
    configured = std::move(*cfg);
}

struct population {
    bool sticky = false;
    std::vector<std::uint32_t> bucket;  // the user's hash in [0, 10000)
    std::vector<double> propensity;
    std::discrete_distribution<std::size_t> pick;

    static population make(bool sticky, std::mt19937_64& rng) {
        population p;
        p.sticky = sticky;
        if (!sticky) {
            return p;
        }
        const std::size_t users = 1000;
        std::uniform_int_distribution<std::uint32_t> hash(0, 9999);
        std::lognormal_distribution<double> flaky(-0.5, 1.0);  // mean exp(-0.5 + 0.5) = 1
        std::vector<double> activity(users);
        for (std::size_t u = 0; u < users; ++u) {
            p.bucket.push_back(hash(rng));
            p.propensity.push_back(flaky(rng));
            activity[u] = 1.0 / std::pow(static_cast<double>(u + 1), 1.1);
        }
        p.pick = std::discrete_distribution<std::size_t>(activity.begin(), activity.end());
        return p;
    }
};

struct outcome {
    enum { rolled_back, completed, held } end = held;
    std::uint64_t candidate_requests = 0;  // served by the candidate until the decision
    double seconds = 0;
};

int horizon_seconds = 1800;  // --minutes

outcome run_one(std::mt19937_64& rng, const version_model& stable, const version_model& cand,
                double rps, bool sticky) {
    sim_environment env;
    env.stable = stable_name;
    rollout::controller ctl(env, nullptr);
    auto t = rollout::clock::time_point{} + 1h;
    (void)ctl.init(plan(), t);
    auto users = population::make(sticky, rng);
    outcome out;
    std::uniform_real_distribution<double> u(0, 1);
    std::normal_distribution<double> z(0, 1);
    std::poisson_distribution<int> arrivals(rps);
    for (int second = 1; second <= horizon_seconds; ++second) {
        const int n = arrivals(rng);
        for (int i = 0; i < n; ++i) {
            double propensity = 1;
            bool to_candidate = false;
            std::uint32_t unit = 0;  // what the gateway takes from the hash's low bits
            if (users.sticky) {
                const auto user = users.pick(rng);
                propensity = users.propensity[user];
                to_candidate = users.bucket[user] < env.candidate_bp;
                unit = static_cast<std::uint32_t>(user * 2654435761u >> 7);
            } else {
                to_candidate = u(rng) * 10000 < env.candidate_bp;
                unit = static_cast<std::uint32_t>(rng());
            }
            const auto& vm = to_candidate ? cand : stable;
            auto& c = env.counts[{to_candidate ? candidate_name : env.stable, env.stage}];
            out.candidate_requests += to_candidate;
            double ms = vm.median_ms * std::exp(vm.sigma * z(rng));
            if (u(rng) < vm.tail_rate) {
                ms += vm.tail_ms;
            }
            unsigned status = 200;
            if (u(rng) < vm.hang_rate) {
                status = 504;
                ms = timeout_ms;
            } else if (u(rng) < std::min(1.0, vm.error_rate * propensity)) {
                status = 503;
                ms = vm.fast_errors ? 1 : ms;
            } else if (u(rng) < vm.client_error_rate * propensity) {
                status = 400;
                ms = 1;
            }
            const auto micros = static_cast<std::uint64_t>(ms * 1000);
            c.codes[metrics::code_slot(status)]++;
            c.units.record(unit, status);
            c.latency.record(micros);
            if (status < 400) {
                c.success_latency.record(micros);
            }
        }
        t += 1s;
        ctl.on_tick(t);
        const auto phase = ctl.status(model_name, t)["phase"].get<std::string>();
        out.seconds = second;
        if (phase == "rolled_back") {
            out.end = outcome::rolled_back;
            if (std::getenv("STAGEGATE_SIM_REASONS")) {
                std::fprintf(stderr, "%s\n",
                             ctl.status(model_name, t)["last_reason"].get<std::string>().c_str());
            }
            return out;
        }
        if (phase == "completed") {
            out.end = outcome::completed;
            return out;
        }
    }
    // A held run: which gates had not passed (STAGEGATE_SIM_REASONS), to see what binds.
    if (std::getenv("STAGEGATE_SIM_REASONS")) {
        const auto st = ctl.status(model_name, t);
        std::string open;
        for (const auto& g : st["gates"]) {
            if (g["verdict"] != "pass") {
                open += " " + g["gate"].get<std::string>();
            }
        }
        std::fprintf(stderr, "held at %s:%s\n", st["stage"].get<std::string>().c_str(),
                     open.c_str());
    }
    return out;
}

struct summary {
    int runs = 0;
    int rolled_back = 0;
    int completed = 0;
    std::vector<std::uint64_t> requests;  // of the runs that ended in a decision
    std::vector<double> seconds;
};

summary scenario(std::mt19937_64& rng, int runs, const version_model& stable,
                 const version_model& cand, double rps, bool sticky) {
    summary s;
    s.runs = runs;
    for (int i = 0; i < runs; ++i) {
        auto o = run_one(rng, stable, cand, rps, sticky);
        s.rolled_back += o.end == outcome::rolled_back;
        s.completed += o.end == outcome::completed;
        if (o.end != outcome::held) {
            s.requests.push_back(o.candidate_requests);
            s.seconds.push_back(o.seconds);
        }
    }
    std::sort(s.requests.begin(), s.requests.end());
    std::sort(s.seconds.begin(), s.seconds.end());
    return s;
}

template <class T>
std::string quantile(const std::vector<T>& v, double q) {
    if (v.empty()) {
        return "–";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f",
                  static_cast<double>(v[std::min(v.size() - 1, static_cast<std::size_t>(q * v.size()))]));
    return buf;
}

struct row {
    const char* name;
    const char* expected;  // what should happen
    version_model stable;
    version_model cand;
    bool sticky = false;
};

std::vector<row> rows() {
    const version_model base;
    std::vector<row> out;
    out.push_back({"A/A", "complete", base, base});
    out.push_back({"A/A, sticky Zipf users", "complete", base, base, true});
    auto heavy = base;
    heavy.sigma = 1.2;  // p99 about 16x the median
    out.push_back({"A/A, heavy-tailed latency", "complete", heavy, heavy});
    auto tight = base;
    tight.sigma = 0.05;
    out.push_back({"A/A, tight latency", "complete", tight, tight});
    // The live mock answers no 4xx at all: with a ratio alone, only its additive floor lets
    // a 0 % vs 0 % comparison pass.
    auto no_4xx = base;
    no_4xx.client_error_rate = 0;
    out.push_back({"A/A, no 4xx on either version", "complete", no_4xx, no_4xx});
    auto faster = base;
    faster.median_ms = 37.5;  // 25 % faster
    out.push_back({"candidate 25 % faster", "complete", base, faster});
    auto slower = base;
    slower.median_ms = 54;  // 8 % slower, within x1.2 / x1.1
    out.push_back({"candidate 8 % slower", "complete", base, slower});
    auto flaky_stable = base;
    flaky_stable.error_rate = 0.30;
    flaky_stable.fast_errors = true;
    auto healthy = base;
    healthy.error_rate = 0.30;
    healthy.fast_errors = false;
    out.push_back({"stable 30 % fast 503s, candidate same errors, not fast", "complete",
                   flaky_stable, healthy});
    auto errors2 = base;
    errors2.error_rate = 0.01;
    out.push_back({"errors 0.5 % -> 1 % (2x, tolerance x1.5)", "not complete", base, errors2});
    auto errors10 = base;
    errors10.error_rate = 0.05;
    out.push_back({"errors 0.5 % -> 5 % (10x)", "roll back in the first stage", base, errors10});
    auto hangs = base;
    hangs.hang_rate = 0.01;
    out.push_back({"1 % of requests hang (504 after 2 s)", "not complete", base, hangs});
    auto p99 = base;
    p99.sigma = base.sigma + std::log(1.5) / 2.326;  // same median, p99 +50 %
    out.push_back({"p99 +50 % (tolerance x1.1)", "not complete", base, p99});
    auto tail = base;
    tail.tail_rate = 0.03;
    tail.tail_ms = 300;
    out.push_back({"+300 ms on 3 % of requests", "not complete", base, tail});
    auto client = base;
    client.client_error_rate = 0.05;
    out.push_back({"4xx 0.2 % -> 5 %", "roll back", base, client});
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    int runs = 200;
    double rps = 100;
    std::uint64_t seed = 1;
    bool check_aa = false;
    std::string only;
    std::string config_path;
    std::string model;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--check-aa") {
            check_aa = true;
        } else if (i + 1 < argc && a == "--runs") {
            runs = std::stoi(argv[++i]);
        } else if (i + 1 < argc && a == "--rps") {
            rps = std::stod(argv[++i]);
        } else if (i + 1 < argc && a == "--seed") {
            seed = std::stoull(argv[++i]);
        } else if (i + 1 < argc && a == "--scenario") {
            only = argv[++i];
        } else if (i + 1 < argc && a == "--gates") {
            gates_json = argv[++i];
        } else if (i + 1 < argc && a == "--minutes") {
            horizon_seconds = 60 * std::stoi(argv[++i]);
        } else if (i + 1 < argc && a == "--config") {
            config_path = argv[++i];
        } else if (i + 1 < argc && a == "--model") {
            model = argv[++i];
        } else {
            std::fprintf(stderr, "usage: stagegate-rollout-sim [--runs N] [--rps R] [--seed S] "
                                 "[--scenario NAME-PREFIX] [--minutes M] [--gates JSON] "
                                 "[--config FILE [--model NAME]] [--check-aa]\n");
            return 2;
        }
    }
    if (!config_path.empty()) {
        use_config(config_path, model);
    }
    std::mt19937_64 rng(seed);
    if (check_aa) {
        const double alpha = plan().models[0].rollout_spec->gates.alpha;
        const version_model base;
        auto s = scenario(rng, runs, base, base, rps, true);
        const double rate = static_cast<double>(s.rolled_back) / runs;
        const double bound = alpha + 5 * std::sqrt(alpha * (1 - alpha) / runs);
        std::printf("A/A, sticky Zipf users: %d of %d healthy candidates rolled back (%.2f %%; "
                    "bound %.2f %%), %d completed\n",
                    s.rolled_back, runs, rate * 100, bound * 100, s.completed);
        std::printf("%d passed, %d failed\n", rate <= bound ? 1 : 0, rate <= bound ? 0 : 1);
        return rate <= bound ? 0 : 1;
    }
    if (configured) {
        const auto& spec = *configured->models[0].rollout_spec;
        std::string stages;
        for (const auto& st : spec.stages) {
            char piece[96];
            std::snprintf(piece, sizeof piece, "%s%s (%g %%, %g s bake, %llu requests)",
                          stages.empty() ? "" : " / ", st.name.c_str(), st.weight / 100.0,
                          std::chrono::duration<double>(st.min_bake).count(),
                          static_cast<unsigned long long>(st.min_requests));
            stages += piece;
        }
        std::printf("rollout of %s %s -> %s from %s: %s -> 100 %%, checks every %g s; %g req/s, "
                    "seed %llu, %d min at most per rollout\n\n",
                    model_name.c_str(), stable_name.c_str(), candidate_name.c_str(),
                    config_path.c_str(), stages.c_str(),
                    std::chrono::duration<double>(spec.interval).count(), rps,
                    static_cast<unsigned long long>(seed), horizon_seconds / 60);
    } else {
        std::printf("plan 5 %% / 25 %% / 50 %% -> 100 %%, 15 s bake each, checks every 1 s, "
                    "gates %s; %g req/s, seed %llu, %d min at most per rollout\n\n",
                    gates_json.c_str(), rps, static_cast<unsigned long long>(seed),
                    horizon_seconds / 60);
    }
    std::printf("| scenario | expected | runs | rolled back | promoted to 100 %% | held | "
                "candidate requests to decision: median | p95 | seconds: median | p95 |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& r : rows()) {
        if (!only.empty() && std::string(r.name).rfind(only, 0) != 0) {
            continue;
        }
        auto s = scenario(rng, runs, r.stable, r.cand, rps, r.sticky);
        const int held = s.runs - s.rolled_back - s.completed;
        std::printf("| %s | %s | %d | %.1f %% | %.1f %% | %.1f %% | %s | %s | %s | %s |\n",
                    r.name, r.expected, s.runs, 100.0 * s.rolled_back / s.runs,
                    100.0 * s.completed / s.runs, 100.0 * held / s.runs,
                    quantile(s.requests, 0.5).c_str(), quantile(s.requests, 0.95).c_str(),
                    quantile(s.seconds, 0.5).c_str(), quantile(s.seconds, 0.95).c_str());
        std::fflush(stdout);
    }
    return 0;
}
