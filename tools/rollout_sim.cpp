// stagegate-rollout-sim: plays synthetic traffic through the real rollout controller and gate
// code with an injected clock, and reports how often a healthy candidate is rolled back (A/A)
// and how many candidate requests a regression serves before it is rolled back.
//
//   stagegate-rollout-sim [--runs N] [--rps R] [--seed S]
//   stagegate-rollout-sim --check-aa --runs N   (exit 1 if A/A false rollbacks exceed alpha
//                                                by more than 5 binomial standard deviations)
#include "stagegate/rollout/controller.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace stagegate;
using namespace std::chrono_literals;

namespace {

struct version_model {
    double error_rate = 0.005;
    double median_ms = 50;
    double sigma = 0.5;  // lognormal shape
};

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
    // The simulated plans have no gate checks; were one configured, it would never answer
    // and the rollout would hold, which is the safe side.
    void run_checks(const std::vector<config::http_check>&, const nlohmann::json&,
                    std::function<void(std::vector<notify::check_result>)>) override {}
};

config::gateway plan() {
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [{"name": "m", "stable": "v1",
        "versions": [{"name": "v1", "endpoints": ["127.0.0.1:1"]},
                     {"name": "v2", "endpoints": ["127.0.0.1:2"]}],
        "rollout": {"candidate": "v2", "interval_ms": 5000,
          "stages": [{"weight_bp": 100, "min_bake_ms": 60000, "min_requests": 50},
                     {"weight_bp": 500, "min_bake_ms": 60000, "min_requests": 100},
                     {"weight_bp": 2500, "min_bake_ms": 60000, "min_requests": 200},
                     {"weight_bp": 5000, "min_bake_ms": 60000, "min_requests": 200}],
          "gates": {"min_requests": 50, "sequential": {"alpha": 0.01}}}}]})");
    if (!cfg) {
        std::fprintf(stderr, "%s\n", cfg.error().describe().c_str());
        std::exit(1);
    }
    return *cfg;
}

struct outcome {
    bool rolled_back = false;
    std::uint64_t candidate_requests = 0;  // served by the candidate before the decision
};

outcome run_one(std::mt19937_64& rng, const version_model& stable, const version_model& cand,
                double rps) {
    sim_environment env;
    rollout::controller ctl(env, nullptr);
    auto t = rollout::clock::time_point{} + 1h;
    (void)ctl.init(plan(), t);
    outcome out;
    std::uniform_real_distribution<double> u(0, 1);
    std::normal_distribution<double> z(0, 1);
    const auto step = 1s;  // traffic arrives second by second; the controller ticks every 5 s
    for (int second = 0; second < 3600; ++second) {
        auto n = std::poisson_distribution<int>(rps)(rng);
        for (int i = 0; i < n; ++i) {
            const bool to_candidate = u(rng) * 10000 < env.candidate_bp;
            const auto& vm = to_candidate ? cand : stable;
            auto& c = env.counts[{to_candidate ? "v2" : env.stable, env.stage}];
            const bool error = u(rng) < vm.error_rate;
            c.codes[metrics::code_slot(error ? 500 : 200)]++;
            c.latency.record(
                static_cast<std::uint64_t>(vm.median_ms * 1000 * std::exp(vm.sigma * z(rng))));
            out.candidate_requests += to_candidate;
        }
        t += step;
        ctl.on_tick(t);
        auto phase = ctl.status("m", t)["phase"].get<std::string>();
        if (phase == "rolled_back") {
            out.rolled_back = true;
            return out;
        }
        if (phase == "completed") {
            return out;
        }
    }
    return out;
}

struct summary {
    int runs = 0;
    int rolled_back = 0;
    std::vector<std::uint64_t> requests;  // of the rolled-back runs
};

summary scenario(std::mt19937_64& rng, int runs, const version_model& stable,
                 const version_model& cand, double rps) {
    summary s;
    s.runs = runs;
    for (int i = 0; i < runs; ++i) {
        auto o = run_one(rng, stable, cand, rps);
        if (o.rolled_back) {
            ++s.rolled_back;
            s.requests.push_back(o.candidate_requests);
        }
    }
    std::sort(s.requests.begin(), s.requests.end());
    return s;
}

std::string quantile(const std::vector<std::uint64_t>& v, double q) {
    if (v.empty()) {
        return "–";
    }
    return std::to_string(v[std::min(v.size() - 1, static_cast<std::size_t>(q * v.size()))]);
}

}  // namespace

int main(int argc, char** argv) {
    int runs = 1000;
    double rps = 100;
    std::uint64_t seed = 1;
    bool check_aa = false;
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
        } else {
            std::fprintf(stderr, "usage: stagegate-rollout-sim [--runs N] [--rps R] [--seed S] "
                                 "[--check-aa]\n");
            return 2;
        }
    }
    std::mt19937_64 rng(seed);
    version_model base;
    if (check_aa) {
        const double alpha = 0.01;
        auto s = scenario(rng, runs, base, base, rps);
        const double rate = static_cast<double>(s.rolled_back) / runs;
        const double bound = alpha + 5 * std::sqrt(alpha * (1 - alpha) / runs);
        std::printf("A/A: %d of %d healthy candidates rolled back (%.2f %%; bound %.2f %%)\n",
                    s.rolled_back, runs, rate * 100, bound * 100);
        std::printf("%d passed, %d failed\n", rate <= bound ? 1 : 0, rate <= bound ? 0 : 1);
        return rate <= bound ? 0 : 1;
    }
    struct row {
        const char* name;
        version_model cand;
    };
    version_model err1 = base;
    err1.error_rate = 0.01;
    version_model err5 = base;
    err5.error_rate = 0.05;
    version_model p99_20 = base;
    p99_20.sigma = base.sigma + std::log(1.2) / 2.326;  // same median, p99 +20 %
    version_model p99_100 = base;
    p99_100.sigma = base.sigma + std::log(2.0) / 2.326;  // same median, p99 +100 %
    std::vector<row> rows = {{"A/A (identical)", base},
                             {"errors 0.5 % -> 1 %", err1},
                             {"errors 0.5 % -> 5 %", err5},
                             {"p99 +20 %", p99_20},
                             {"p99 +100 %", p99_100}};
    std::printf("stages 1 %% / 5 %% / 25 %% / 50 %% (bake 60 s each), interval 5 s, %g req/s, "
                "alpha 0.01, seed %llu\n\n",
                rps, static_cast<unsigned long long>(seed));
    std::printf("| scenario | runs | rolled back | candidate requests until rollback: median | p95 |\n");
    std::printf("|---|---:|---:|---:|---:|\n");
    for (const auto& r : rows) {
        auto s = scenario(rng, runs, base, r.cand, rps);
        std::printf("| %s | %d | %d (%.2f %%) | %s | %s |\n", r.name, s.runs, s.rolled_back,
                    100.0 * s.rolled_back / s.runs, quantile(s.requests, 0.5).c_str(),
                    quantile(s.requests, 0.95).c_str());
        std::fflush(stdout);
    }
    return 0;
}
