#include "stagegate/rollout/gates.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace stagegate::rollout {

namespace {

std::string percent(double rate) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f %%", rate * 100.0);
    return buf;
}

std::string millis(double seconds) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", seconds * 1000.0);
    return buf;
}

std::string quantile_name(double q) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "p%g", q * 100.0);
    return buf;
}

double rate(std::uint64_t part, std::uint64_t whole) {
    return whole ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

std::uint64_t failures(const metrics::series_counts& c) {
    std::uint64_t n = 0;
    for (auto f : c.upstream_failures) {
        n += f;
    }
    return n;
}

std::uint64_t errors_of(const metrics::series_counts& c, const std::vector<std::size_t>& slots) {
    if (slots.empty()) {
        return c.server_errors();
    }
    std::uint64_t n = 0;
    for (auto slot : slots) {
        n += c.codes[slot];
    }
    return n;
}

}  // namespace

std::vector<std::size_t> error_slots_for(const std::vector<std::string>& statuses) {
    std::vector<std::size_t> slots;
    auto add = [&](std::size_t slot) {
        if (std::find(slots.begin(), slots.end(), slot) == slots.end()) {
            slots.push_back(slot);
        }
    };
    for (const auto& s : statuses) {
        if (s.size() == 3 && s[1] == 'x' && s[2] == 'x' && s[0] >= '1' && s[0] <= '5') {
            const unsigned cls = static_cast<unsigned>(s[0] - '0');
            for (unsigned code : metrics::tracked_codes) {
                if (code / 100 == cls) {
                    add(metrics::code_slot(code));
                }
            }
            add(metrics::code_slot(cls * 100 + 99));  // the class slot for untracked codes
        } else if (!s.empty()) {
            add(metrics::code_slot(static_cast<unsigned>(std::stoul(s))));
        }
    }
    return slots;
}

const char* verdict_name(verdict v) {
    switch (v) {
        case verdict::pass:
            return "pass";
        case verdict::fail:
            return "fail";
        case verdict::inconclusive:
            return "inconclusive";
    }
    return "inconclusive";
}

bool evaluation::any_fail() const { return first_failure() != nullptr; }

bool evaluation::all_pass() const {
    if (gates.empty()) {
        return false;
    }
    for (const auto& g : gates) {
        if (g.outcome != verdict::pass) {
            return false;
        }
    }
    return true;
}

const gate_result* evaluation::first_failure() const {
    for (const auto& g : gates) {
        if (g.outcome == verdict::fail) {
            return &g;
        }
    }
    return nullptr;
}

evaluation evaluate(const gate_config& cfg, const metrics::series_counts& candidate,
                    const metrics::series_counts& stable, double rho0) {
    evaluation out;
    const auto cn = candidate.requests();
    const auto sn = stable.requests();
    const bool enough_candidate = cn >= cfg.min_requests;
    const bool enough_both = enough_candidate && sn >= cfg.min_requests;
    const std::string sample = std::to_string(cn) + " candidate vs " + std::to_string(sn) +
                               " stable requests";
    auto add = [&](std::string gate, verdict v, double c, double s, double limit,
                   std::string why) {
        out.gates.push_back({std::move(gate), v, c, s, limit, cn, sn, std::move(why)});
    };
    auto too_little = [&](bool need_stable) {
        return "too little data: " + sample + ", " + std::to_string(cfg.min_requests) +
               " needed" + (need_stable ? " on each version" : " on the candidate");
    };

    const auto c_errors = errors_of(candidate, cfg.error_slots);
    const auto s_errors = errors_of(stable, cfg.error_slots);
    const double c_err = rate(c_errors, cn);
    const double s_err = rate(s_errors, sn);

    if (cfg.max_error_rate) {
        const double limit = *cfg.max_error_rate;
        if (!enough_candidate) {
            add("error_rate", verdict::inconclusive, c_err, s_err, limit, too_little(false));
        } else {
            bool ok = c_err <= limit;
            add("error_rate", ok ? verdict::pass : verdict::fail, c_err, s_err, limit,
                "candidate error rate " + percent(c_err) + (ok ? " within " : " above ") +
                    "the limit " + percent(limit) + " over " + std::to_string(cn) + " requests");
        }
    }
    if (cfg.max_upstream_failure_rate) {
        const double limit = *cfg.max_upstream_failure_rate;
        const double c_fail = rate(failures(candidate), cn);
        if (!enough_candidate) {
            add("upstream_failure_rate", verdict::inconclusive, c_fail, 0, limit,
                too_little(false));
        } else {
            bool ok = c_fail <= limit;
            add("upstream_failure_rate", ok ? verdict::pass : verdict::fail, c_fail, 0, limit,
                "candidate upstream failure rate " + percent(c_fail) +
                    (ok ? " within " : " above ") + "the limit " + percent(limit) + " over " +
                    std::to_string(cn) + " requests");
        }
    }
    for (const auto& q : cfg.max_latency) {
        const double c_q = candidate.latency.quantile_micros(q.quantile) / 1e6;
        const std::string name = quantile_name(q.quantile) + "_latency";
        if (!enough_candidate) {
            add(name, verdict::inconclusive, c_q, 0, q.seconds, too_little(false));
        } else {
            bool ok = c_q <= q.seconds;
            add(name, ok ? verdict::pass : verdict::fail, c_q, 0, q.seconds,
                "candidate " + quantile_name(q.quantile) + " " + millis(c_q) +
                    (ok ? " within " : " above ") + "the limit " + millis(q.seconds));
        }
    }
    if (cfg.max_error_rate_delta || cfg.max_error_rate_ratio) {
        // With both, the candidate gets whichever allowance is larger, so that a ratio over a
        // near-zero stable rate cannot fail on a single error.
        double limit = 0;
        if (cfg.max_error_rate_delta && cfg.max_error_rate_ratio) {
            limit = std::max(s_err + *cfg.max_error_rate_delta, s_err * *cfg.max_error_rate_ratio);
        } else if (cfg.max_error_rate_delta) {
            limit = s_err + *cfg.max_error_rate_delta;
        } else {
            limit = s_err * *cfg.max_error_rate_ratio;
        }
        if (!enough_both) {
            add("error_rate_vs_stable", verdict::inconclusive, c_err, s_err, limit,
                too_little(true));
        } else {
            bool ok = c_err <= limit;
            add("error_rate_vs_stable", ok ? verdict::pass : verdict::fail, c_err, s_err, limit,
                "error rate " + percent(c_err) + " vs stable " + percent(s_err) + " over " +
                    sample + (ok ? ": within " : ": above ") + "the allowed " + percent(limit));
        }
    }
    for (const auto& q : cfg.max_latency_ratio) {
        const double c_q = candidate.latency.quantile_micros(q.quantile) / 1e6;
        const double s_q = stable.latency.quantile_micros(q.quantile) / 1e6;
        const double limit = s_q * q.max_ratio;
        const std::string name = quantile_name(q.quantile) + "_latency_vs_stable";
        if (!enough_both) {
            add(name, verdict::inconclusive, c_q, s_q, limit, too_little(true));
        } else {
            bool ok = c_q <= limit;
            char ratio[32];
            std::snprintf(ratio, sizeof ratio, "%.2fx", s_q > 0 ? c_q / s_q : 0.0);
            add(name, ok ? verdict::pass : verdict::fail, c_q, s_q, limit,
                quantile_name(q.quantile) + " " + millis(c_q) + " vs stable " + millis(s_q) +
                    " (" + ratio + ")" + (ok ? " within " : " above ") + "the allowed " +
                    millis(limit));
        }
    }
    auto sequential = [&](const char* gate, const sequential_result& r, const char* what) {
        char p[48];
        std::snprintf(p, sizeof p, "p %s %.4g (alpha %g)", r.p_value < 1e-3 ? "<" : "=",
                      r.p_value < 1e-3 ? 1e-3 : r.p_value, cfg.alpha);
        if (r.reject) {
            add(gate, verdict::fail, r.log_bayes_factor, 0, std::log(1 / cfg.alpha),
                std::string("sequential test: candidate ") + what + " than stable over " +
                    sample + "; " + p);
        } else if (enough_both) {
            add(gate, verdict::pass, r.log_bayes_factor, 0, std::log(1 / cfg.alpha),
                std::string("sequential test: no evidence that the candidate ") + what +
                    " over " + sample + "; " + p);
        } else {
            add(gate, verdict::inconclusive, r.log_bayes_factor, 0, std::log(1 / cfg.alpha),
                too_little(true));
        }
    };
    // A sequential test may fail before min_requests (it is valid at any sample size); it
    // may only pass once both versions have enough traffic for the pass to mean something.
    if (cfg.sequential_errors) {
        sequential("sequential_error_rate",
                   error_rate_test(c_errors, s_errors, rho0, cfg.alpha),
                   "has more errors");
    }
    if (cfg.sequential_latency) {
        sequential("sequential_latency",
                   latency_test(candidate.latency, stable.latency, rho0, cfg.alpha), "is slower");
    }
    return out;
}

}  // namespace stagegate::rollout
