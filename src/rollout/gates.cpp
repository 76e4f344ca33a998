#include "stagegate/rollout/gates.hpp"

#include "stagegate/predictions/drift.hpp"

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

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}

// The model-quality gates (see gate_config). Agreement and accuracy use anytime-valid
// confidence sequences, so they may fail on any sample; drift fails only past its noise bound.
void evaluate_quality(const gate_config& cfg, const metrics::prediction_counts& c,
                      const metrics::prediction_counts& s, const metrics::prediction_counts* m,
                      evaluation& out) {
    auto add = [&](std::string gate, verdict v, double cv, double sv, double limit,
                   std::uint64_t cn, std::uint64_t sn, std::string why) {
        out.gates.push_back({std::move(gate), v, cv, sv, limit, cn, sn, std::move(why)});
    };
    auto too_few = [&](std::uint64_t cn, std::uint64_t sn, const char* what) {
        return "too little data: " + std::to_string(cn) + " candidate vs " + std::to_string(sn) +
               " stable " + what + ", " + std::to_string(cfg.min_samples) + " needed";
    };
    if (cfg.max_candidate_age_seconds) {
        const double limit = *cfg.max_candidate_age_seconds;
        if (!cfg.candidate_age_seconds) {
            add("candidate_age", verdict::fail, 0, 0, limit, 0, 0,
                "the candidate has no trained_at: its age cannot be checked");
        } else {
            const double age = *cfg.candidate_age_seconds;
            const bool ok = age <= limit;
            add("candidate_age", ok ? verdict::pass : verdict::fail, age, 0, limit, 0, 0,
                "candidate trained " + number(age / 3600) + " h ago, " +
                    (ok ? "within" : "older than") + " the limit of " + number(limit / 3600) +
                    " h");
        }
    }
    if (cfg.min_agreement && m) {
        const double floor = *cfg.min_agreement;
        const auto n = m->compared_labels;
        const double rate = n ? static_cast<double>(m->agreed_labels) / static_cast<double>(n) : 0;
        const double r = predictions::mean_radius(n, cfg.alpha);
        const std::string seen = "top-1 agreement with stable " + percent(rate) + " ± " +
                                 percent(std::min(r, 1.0)) + " over " + std::to_string(n) +
                                 " mirrored requests";
        if (n > 0 && rate + r < floor) {
            add("prediction_agreement", verdict::fail, rate, 0, floor, n, n,
                seen + ": below the floor " + percent(floor));
        } else if (n >= cfg.min_samples && rate - r >= floor) {
            add("prediction_agreement", verdict::pass, rate, 0, floor, n, n,
                seen + ": at least the floor " + percent(floor));
        } else {
            add("prediction_agreement", verdict::inconclusive, rate, 0, floor, n, n,
                n < cfg.min_samples ? too_few(n, n, "comparisons")
                                    : seen + ": not yet clear of the floor " + percent(floor));
        }
    }
    // A drift statistic against its ceiling: fails only when above it by more than the
    // statistic reaches by chance at this sample size, passes when within it.
    auto ceiling_gate = [&](const char* gate, const std::string& what, double value,
                            double noise, double limit, std::uint64_t n_c, std::uint64_t n_s) {
        const std::string seen = what + " " + number(value) + " vs stable over " +
                                 std::to_string(n_c) + " candidate and " + std::to_string(n_s) +
                                 " stable predictions";
        if (n_c < cfg.min_samples || n_s < cfg.min_samples) {
            add(gate, verdict::inconclusive, value, 0, limit, n_c, n_s,
                too_few(n_c, n_s, "predictions"));
        } else if (value - noise > limit) {
            add(gate, verdict::fail, value, 0, limit, n_c, n_s,
                seen + ": above the ceiling " + number(limit) + " by more than noise (" +
                    number(noise) + ")");
        } else if (value <= limit) {
            add(gate, verdict::pass, value, 0, limit, n_c, n_s,
                seen + ": within the ceiling " + number(limit));
        } else {
            add(gate, verdict::inconclusive, value, 0, limit, n_c, n_s,
                seen + ": above the ceiling " + number(limit) + " but within noise (" +
                    number(noise) + ")");
        }
    };
    if (cfg.max_psi) {
        const std::uint64_t cn = cfg.drift_on_values ? c.values : c.labels;
        const std::uint64_t sn = cfg.drift_on_values ? s.values : s.labels;
        const std::size_t bins = cfg.drift_on_values ? cfg.value_bins : metrics::prediction_bins;
        const auto& cb = cfg.drift_on_values ? c.value_bins : c.label_bins;
        const auto& sb = cfg.drift_on_values ? s.value_bins : s.label_bins;
        const double alpha = predictions::repeated_alpha(std::min(cn, sn), cfg.alpha);
        ceiling_gate("prediction_psi", "PSI", predictions::psi({cb.data(), bins}, {sb.data(), bins}),
                     predictions::psi_noise(cn, sn, bins, alpha), *cfg.max_psi, cn, sn);
    }
    if (cfg.max_ks) {
        const auto bins = cfg.value_bins;
        const double alpha = predictions::repeated_alpha(std::min(c.values, s.values), cfg.alpha);
        ceiling_gate("prediction_ks", "KS distance",
                     predictions::ks({c.value_bins.data(), bins}, {s.value_bins.data(), bins}),
                     predictions::ks_noise(c.values, s.values, alpha), *cfg.max_ks, c.values,
                     s.values);
    }
    if (cfg.max_accuracy_drop && cfg.candidate_serves_clients) {
        const double drop = *cfg.max_accuracy_drop;
        const auto fc = c.feedback;
        const auto fs = s.feedback;
        const double ac = fc ? static_cast<double>(c.correct) / static_cast<double>(fc) : 0;
        const double as = fs ? static_cast<double>(s.correct) / static_cast<double>(fs) : 0;
        // Two means at once: alpha / 2 each keeps the joint error at alpha.
        const double rc = predictions::mean_radius(fc, cfg.alpha / 2);
        const double rs = predictions::mean_radius(fs, cfg.alpha / 2);
        const std::string seen = "accuracy " + percent(ac) + " ± " + percent(std::min(rc, 1.0)) +
                                 " vs stable " + percent(as) + " ± " +
                                 percent(std::min(rs, 1.0)) + " over " + std::to_string(fc) +
                                 " and " + std::to_string(fs) + " labels";
        if (fc > 0 && fs > 0 && ac + rc < as - rs - drop) {
            add("accuracy_vs_stable", verdict::fail, ac, as, as - drop, fc, fs,
                seen + ": worse than stable by more than " + percent(drop));
        } else if (fc < cfg.min_samples || fs < cfg.min_samples) {
            add("accuracy_vs_stable", verdict::inconclusive, ac, as, as - drop, fc, fs,
                too_few(fc, fs, "labels"));
        } else if (ac >= as - drop) {
            add("accuracy_vs_stable", verdict::pass, ac, as, as - drop, fc, fs,
                seen + ": within " + percent(drop) + " of stable");
        } else {
            add("accuracy_vs_stable", verdict::inconclusive, ac, as, as - drop, fc, fs,
                seen + ": below stable by more than " + percent(drop) + " but within noise");
        }
    }
    if (cfg.max_mae_increase && cfg.candidate_serves_clients) {
        const double increase = *cfg.max_mae_increase;
        const auto fc = c.valued_feedback;
        const auto fs = s.valued_feedback;
        const double mc = fc ? c.abs_error_sum / static_cast<double>(fc) : 0;
        const double ms = fs ? s.abs_error_sum / static_cast<double>(fs) : 0;
        if (fc < cfg.min_samples || fs < cfg.min_samples) {
            add("mae_vs_stable", verdict::inconclusive, mc, ms, ms + increase, fc, fs,
                too_few(fc, fs, "labels"));
        } else {
            const bool ok = mc <= ms + increase;
            add("mae_vs_stable", ok ? verdict::pass : verdict::fail, mc, ms, ms + increase, fc,
                fs,
                "mean absolute error " + number(mc) + " vs stable " + number(ms) + " over " +
                    std::to_string(fc) + " and " + std::to_string(fs) + " labels" +
                    (ok ? ": within " : ": above ") + "the allowed " + number(ms + increase));
        }
    }
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
                    const metrics::series_counts& stable, double rho0,
                    const metrics::series_counts* mirror) {
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
    evaluate_quality(cfg, candidate.predictions, stable.predictions,
                     mirror ? &mirror->predictions : nullptr, out);
    return out;
}

}  // namespace stagegate::rollout
