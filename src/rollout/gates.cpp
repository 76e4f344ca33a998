#include "stagegate/rollout/gates.hpp"

#include "stagegate/predictions/drift.hpp"
#include "stagegate/rollout/evidence.hpp"

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

std::string quantile_name(double q) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "p%g", q * 100.0);
    return buf;
}

std::uint64_t failures(const metrics::series_counts& c) {
    std::uint64_t n = 0;
    for (auto f : c.upstream_failures) {
        n += f;
    }
    return n;
}

// An answer cut short (a stream the backend broke off or stalled, an error event after a 200)
// is a failure whatever statuses are configured as errors: counted under its status code, it
// would otherwise pass for a success once `errors` names codes.
std::uint64_t errors_of(const metrics::series_counts& c, const std::vector<std::size_t>& slots) {
    if (slots.empty()) {
        return c.server_errors();
    }
    std::uint64_t n = c.cut_short;
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
        out.gates.push_back({std::move(gate), v, cv, sv, limit, cv, cv, cn, sn, std::move(why),
                             v == verdict::pass});
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
        // The variance-adaptive bounds of rollout/evidence: a shadow that agrees 100 % clears
        // a 98 % floor within about 600 comparisons (a Hoeffding-style radius needed 9,000).
        const double floor = *cfg.min_agreement;
        const auto n = m->compared_labels;
        const double agreed = static_cast<double>(m->agreed_labels);
        const double trials = static_cast<double>(n);
        const double rate = n ? agreed / trials : 0;
        const double low = evidence::rate_lower(agreed, trials, cfg.beta);
        const double high = evidence::rate_upper(agreed, trials, cfg.alpha);
        const std::string seen = "top-1 agreement with stable " + percent(rate) + " (between " +
                                 percent(low) + " and " + percent(high) + ") over " +
                                 std::to_string(n) + " mirrored requests";
        if (n > 0 && high < floor) {
            add("prediction_agreement", verdict::fail, rate, 0, floor, n, n,
                seen + ": below the floor " + percent(floor));
        } else if (n >= cfg.min_samples && low >= floor) {
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

bool evaluation::all_on_track() const {
    for (const auto& g : gates) {
        if (!g.on_track) {
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

namespace {

std::string fixed(double v, int digits) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

std::string ratio_text(double r) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "x%g", r);
    return buf;
}

// The candidate's figure as a multiple of stable's, for the sentences: " (2.09x)". Nothing
// against a stable figure of zero, where a multiple says nothing (it read "0.00x": better).
std::string times_text(double candidate, double stable) {
    if (!(stable > 0)) {
        return {};
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, " (%.2fx)", candidate / stable);
    return buf;
}

double ms_of(double micros) { return micros / 1000.0; }

std::string ms_text(double micros) {
    if (!std::isfinite(micros)) {
        return "unbounded";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", ms_of(micros));
    return buf;
}

// A version's requests and `events` per unit bucket over the whole rollout: requests of one
// user share a bucket, so a heavy user or a tenant with flaky inputs shows as one bucket.
struct bucket_totals {
    std::vector<double> requests;
    std::vector<double> events;
};
bucket_totals totals_of(const std::vector<metrics::series_counts>& all,
                        std::array<std::uint64_t, metrics::unit_buckets>
                            metrics::unit_counts::*events) {
    bucket_totals t{std::vector<double>(metrics::unit_buckets),
                    std::vector<double>(metrics::unit_buckets)};
    for (const auto& k : all) {
        for (std::size_t b = 0; b < metrics::unit_buckets; ++b) {
            t.requests[b] += static_cast<double>(k.units.requests[b]);
            t.events[b] += static_cast<double>((k.units.*events)[b]);
        }
    }
    return t;
}

// The counts the evidence module judges, per segment: requests and errors as `errors_in`
// counts them, scaled by the weights of the unit buckets they came from and divided by the
// spread left (the effective numbers of independent requests the bounds may rely on), and
// the successful answers' latencies. Errors that the buckets do not count the same way
// (configured error statuses) take the scale of the bucket events; counts without buckets
// are unscaled.
template <class Errors>
std::vector<evidence::segment_counts> segments_of(
    const std::vector<metrics::series_counts>& all, Errors errors_in,
    std::array<std::uint64_t, metrics::unit_buckets> metrics::unit_counts::*events,
    const evidence::unit_weighting& w, bool with_latency) {
    std::vector<evidence::segment_counts> out(all.size());
    for (std::size_t k = 0; k < all.size(); ++k) {
        double n = 0;
        double scaled_n = 0;
        double e = 0;
        double scaled_e = 0;
        for (std::size_t b = 0; b < metrics::unit_buckets; ++b) {
            const auto nb = static_cast<double>(all[k].units.requests[b]);
            const auto eb = static_cast<double>((all[k].units.*events)[b]);
            n += nb;
            scaled_n += w.scale[b] * nb;
            e += eb;
            scaled_e += w.scale[b] * eb;
        }
        const double request_scale = n > 0 ? scaled_n / n : 1.0;
        const double event_scale = e > 0 ? scaled_e / e : request_scale;
        out[k].requests = static_cast<double>(all[k].requests()) * request_scale / w.dispersion;
        out[k].errors = static_cast<double>(errors_in(all[k])) * event_scale / w.dispersion;
        if (with_latency) {
            out[k].latency = evidence::latency_sample::of(all[k].success_latency);
        }
    }
    return out;
}

// Both versions' weighed events and requests per segment, for the split test: the spread
// left is not divided out here (the test divides its log-likelihood by the larger one), since
// dividing each version by its own would move the split it expects.
std::vector<evidence::rate_split> split_of(const std::vector<evidence::segment_counts>& c,
                                           const evidence::unit_weighting& cw,
                                           const std::vector<evidence::segment_counts>& s,
                                           const evidence::unit_weighting& sw) {
    const std::size_t n = std::min(c.size(), s.size());
    std::vector<evidence::rate_split> out(n);
    for (std::size_t k = 0; k < n; ++k) {
        out[k] = {c[k].errors * cw.dispersion, c[k].requests * cw.dispersion,
                  s[k].errors * sw.dispersion, s[k].requests * sw.dispersion};
    }
    return out;
}

// How much more a version's rate varies between groups of unit buckets than independent
// requests would make it (the quasi-binomial dispersion, at least 1), over 32 groups (the
// buckets folded by their low bits, as the gateway kept them until 2026-12-05): dividing the
// counts by it leaves the effective number of independent requests when every request counts
// alike.
double request_dispersion(const std::vector<metrics::series_counts>& all,
                          std::array<std::uint64_t, metrics::unit_buckets>
                              metrics::unit_counts::*events) {
    constexpr std::size_t groups = 32;
    std::array<double, groups> n{};
    std::array<double, groups> e{};
    for (const auto& k : all) {
        for (std::size_t b = 0; b < metrics::unit_buckets; ++b) {
            n[b % groups] += static_cast<double>(k.units.requests[b]);
            e[b % groups] += static_cast<double>((k.units.*events)[b]);
        }
    }
    double total_n = 0;
    double total_e = 0;
    int used = 0;
    for (std::size_t g = 0; g < groups; ++g) {
        total_n += n[g];
        total_e += e[g];
        used += n[g] > 0 ? 1 : 0;
    }
    if (total_n <= 0 || total_e <= 0 || total_e >= total_n) {
        return 1;
    }
    if (used < 2) {
        return std::max(1.0, total_n);  // one group: nothing says its requests are independent
    }
    const double p = total_e / total_n;
    double chi2 = 0;
    for (std::size_t g = 0; g < groups; ++g) {
        if (n[g] > 0) {
            const double d = e[g] - n[g] * p;
            chi2 += d * d / (n[g] * p * (1 - p));
        }
    }
    return std::max(1.0, chi2 / (used - 1));
}

// The level of the "hint of harm" that holds widening back: the fail test at an even chance
// (a likelihood ratio of 2 against no harm, where rollback asks for 1/alpha).
constexpr double widen_level = 0.5;

// Everything one evaluation shares between its gates.
struct judging {
    const gate_config& cfg;
    evaluation& out;
    std::uint64_t cn = 0;  // candidate requests, all segments
    std::uint64_t sn = 0;
    double gate_alpha = 0;  // alpha split over the operational gates

    std::string sample() const {
        return std::to_string(cn) + " candidate vs " + std::to_string(sn) + " stable requests";
    }
    bool enough_candidate() const { return cn >= cfg.min_requests; }
    bool enough_both() const { return enough_candidate() && sn >= cfg.min_requests; }
    std::string too_little(bool need_stable) const {
        return "too little data: " + sample() + ", " + std::to_string(cfg.min_requests) +
               " needed" + (need_stable ? " on each version" : " on the candidate");
    }
    // `hint_of_harm`: the fail test at `widen_level` holds. An inconclusive gate without it is
    // on track: widening asks for no hint of harm, not for the estimate within the limit (a
    // p99 over a few hundred answers swings past any tolerance by chance and held a healthy
    // candidate at 5 % on live traffic).
    void add(std::string gate, verdict v, double c, double s, double limit, double low,
             double high, std::string why, bool hint_of_harm = false) {
        gate_result g{std::move(gate), v, c, s, limit, low, high, cn, sn, std::move(why)};
        g.on_track = v == verdict::pass ||
                     (v == verdict::inconclusive && !hint_of_harm && enough_both());
        out.gates.push_back(std::move(g));
    }
};

// An absolute ceiling on a candidate rate.
void rate_limit_gate(judging& j, const char* gate, const char* what, double events,
                     double trials, double limit) {
    const double estimate = trials > 0 ? events / trials : 0;
    const double low = evidence::rate_lower(events, trials, j.gate_alpha);
    const double high = evidence::rate_upper(events, trials, j.cfg.beta);
    const std::string seen = std::string("candidate ") + what + " " + percent(estimate) +
                             " over " + std::to_string(j.cn) + " requests";
    if (low > limit) {
        j.add(gate, verdict::fail, estimate, 0, limit, low, high,
              seen + ": above the limit " + percent(limit) + " (at least " + percent(low) + ")");
    } else if (!j.enough_candidate()) {
        j.add(gate, verdict::inconclusive, estimate, 0, limit, low, high, j.too_little(false));
    } else if (high <= limit) {
        j.add(gate, verdict::pass, estimate, 0, limit, low, high,
              seen + ": within the limit " + percent(limit) + " (at most " + percent(high) + ")");
    } else {
        j.add(gate, verdict::inconclusive, estimate, 0, limit, low, high,
              seen + ": between " + percent(low) + " and " + percent(high) +
                  ", not yet clearly within or above the limit " + percent(limit),
              evidence::rate_lower(events, trials, widen_level) > limit);
    }
}

// What the two tests of a tolerance gate found: `fail` at the rollback level, `pass` at the
// pass level, `hint` the fail test at `widen_level`.
struct tolerance_tests {
    bool fail = false;
    bool pass = false;
    bool hint = false;
};

// The candidate's rate against an allowance on stable's, by two separate bounds (each at half
// the level): the way to judge an additive tolerance, and a segment in which stable served
// nothing (a 100 % stage: its stable figures are borrowed from earlier segments).
template <class Allowed>
tolerance_tests by_separate_bounds(double events, double trials,
                                   const evidence::segment_counts& ref, Allowed allowed,
                                   double fail_level, double pass_level) {
    const auto shown_above = [&](double level) {
        return evidence::rate_lower(events, trials, level / 2) >
               allowed(evidence::rate_upper(ref.errors, ref.requests, level / 2));
    };
    return {shown_above(fail_level),
            evidence::rate_upper(events, trials, pass_level / 2) <=
                allowed(evidence::rate_lower(ref.errors, ref.requests, pass_level / 2)),
            shown_above(widen_level)};
}

// The candidate's rate against `ratio` x stable's, by how the versions' events split within
// each segment (evidence::ratio_*): one test instead of two bounds.
tolerance_tests by_split(const std::vector<evidence::rate_split>& split, double dispersion,
                         double ratio, double fail_level, double pass_level) {
    const double above = evidence::log_evidence_ratio_above(split, ratio, dispersion);
    return {above >= std::log(1 / fail_level),
            evidence::log_evidence_ratio_within(split, ratio, dispersion) >=
                std::log(1 / pass_level),
            above >= std::log(1 / widen_level)};
}

// One way of counting both versions' events for a rate tolerance: each version's segments
// (scaled to the effective numbers of independent requests) and the split test's input.
struct rate_counts {
    std::vector<evidence::segment_counts> candidate;
    std::vector<evidence::segment_counts> stable;
    std::vector<evidence::rate_split> split;
    double split_dispersion = 1;
};

// What the tolerance tests find on one way of counting, and the ratio bound behind a
// split-based verdict ("; the candidate's rate is at least 1.54x stable's").
struct tolerance_finding {
    tolerance_tests tests;
    std::string how;
    std::string open;  // undecided on the split, when asked: how far its bound still is
};

tolerance_finding judge_tolerance(const judging& j, const rate_counts& counts, double ratio,
                                  double delta, bool say_why_open) {
    double events = 0;
    double trials = 0;
    for (const auto& k : counts.candidate) {
        events += k.errors;
        trials += k.requests;
    }
    const auto ref = evidence::stable_reference(counts.candidate, counts.stable);
    const auto allowed = [&](double p) { return std::max(p * ratio, p + delta); };
    const auto& split = counts.split;
    const bool stable_beside_candidate =
        std::all_of(split.begin(), split.end(), [](const evidence::rate_split& k) {
            return k.candidate_trials <= 0 || k.stable_trials > 0;
        });
    if (!stable_beside_candidate) {
        return {by_separate_bounds(events, trials, ref, allowed, j.gate_alpha, j.cfg.beta), "", ""};
    }
    const bool ratio_part = ratio > 1 || delta <= 0;
    const bool delta_part = delta > 0;
    const double pass_level = ratio_part && delta_part ? j.cfg.beta / 2 : j.cfg.beta;
    tolerance_tests r{true, false, true};
    tolerance_tests d{true, false, true};
    if (ratio_part) {
        r = by_split(split, counts.split_dispersion, ratio, j.gate_alpha, pass_level);
    }
    if (delta_part) {
        d = by_separate_bounds(events, trials, ref, [&](double p) { return p + delta; },
                               j.gate_alpha, pass_level);
    }
    tolerance_finding out{{r.fail && d.fail, r.pass || d.pass, r.hint && d.hint}, "", ""};
    if (ratio_part && (r.fail || r.pass)) {
        const double bound =
            r.fail ? evidence::ratio_lower(split, j.gate_alpha, counts.split_dispersion)
                   : evidence::ratio_upper(split, pass_level, counts.split_dispersion);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.2fx", bound);
        out.how = std::string("; the candidate's rate is ") + (r.fail ? "at least " : "at most ") +
                  buf + " stable's";
        if (r.pass && bound > ratio) {
            // Passed on the test that favours "as good as stable" (log_evidence_ratio_within)
            // before the plain bound reached the tolerance.
            const double odds = std::exp(
                evidence::log_evidence_ratio_within(split, ratio, counts.split_dispersion));
            std::snprintf(buf, sizeof buf, "%.0f", odds);
            out.how = std::string("; the evidence that the candidate's rate is within ") +
                      ratio_text(ratio) + " stable's is " + buf + " to 1";
        }
    } else if (say_why_open && ratio_part && !out.tests.pass) {
        // Why it waits, where the interval of the candidate's rate alone looks clear of the
        // allowance: the ratio is judged on how the errors split between the versions, whose
        // bound is wider when heavy users with flaky inputs make the errors clump.
        const double bound = evidence::ratio_upper(split, pass_level, counts.split_dispersion);
        if (std::isfinite(bound)) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.2fx", bound);
            out.open = std::string("; its rate is at most ") + buf + " stable's so far (" +
                       ratio_text(ratio) + " allowed)";
        }
    }
    return out;
}

// A candidate rate against stable's, within max(stable x ratio, stable + delta). The ratio
// part is judged on how the events split between the versions (when stable served in every
// segment the candidate did), the additive part by separate bounds; with both, the candidate
// fails only when both tests show it beyond (an intersection-union test: each at the full
// level) and passes when either shows it within (each at half the pass level).
//
// Counted two ways: `by_unit`, each unit bucket weighed (a heavy user counts as one unit among
// many), which is what passes; and `by_request`, every request alike with the bounds widened
// by how much the buckets' rates spread (the quasi-likelihood of correlated requests). A
// candidate fails only when both show harm (again an intersection-union test): with few units
// and few events, early in a sticky rollout, the units' spread is poorly known, and one flaky
// heavy user on the candidate made the unit test alone roll back 2 of 100 healthy sticky
// candidates in the simulator.
void rate_tolerance_gate(judging& j, const char* gate, const char* what,
                         const rate_counts& by_unit, const rate_counts& by_request, double ratio,
                         double delta) {
    // The figures shown are the plain per-request ones (by_request scales all of a version's
    // requests alike, so its rates are the raw rates).
    double events = 0;
    double trials = 0;
    for (const auto& k : by_request.candidate) {
        events += k.errors;
        trials += k.requests;
    }
    const auto ref = evidence::stable_reference(by_request.candidate, by_request.stable);
    const auto allowed = [&](double p) { return std::max(p * ratio, p + delta); };
    const double c_rate = trials > 0 ? events / trials : 0;
    const double s_rate = ref.requests > 0 ? ref.errors / ref.requests : 0;
    double unit_events = 0;
    double unit_trials = 0;
    for (const auto& k : by_unit.candidate) {
        unit_events += k.errors;
        unit_trials += k.requests;
    }
    const double c_low = evidence::rate_lower(unit_events, unit_trials, j.gate_alpha / 2);
    const double c_high = evidence::rate_upper(unit_events, unit_trials, j.cfg.beta / 2);
    // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict on `" " + string`.
    std::string tolerance = "stable";
    if (ratio > 1) {
        tolerance.append(" ").append(ratio_text(ratio));
    }
    if (delta > 0) {
        tolerance.append(ratio > 1 ? " or + " : " + ");
        tolerance.append(fixed(delta * 100, 2)).append(" points");
    }
    if (ratio > 1 && delta > 0) {
        tolerance += ", whichever is larger";
    }
    const std::string seen = std::string(what) + " " + percent(c_rate) + " vs stable " +
                             percent(s_rate) + times_text(c_rate, s_rate) + " over " + j.sample();
    const double limit = allowed(s_rate);
    if (ref.requests <= 0) {
        j.add(gate, verdict::inconclusive, c_rate, s_rate, limit, c_low, c_high,
              j.too_little(true));
        return;
    }
    // Only the per-unit counting's words are shown, so only it says why a tolerance waits.
    const auto unit = judge_tolerance(j, by_unit, ratio, delta, j.enough_both());
    // The per-request tests only matter where the per-unit ones show harm or a hint of it
    // (most ticks of a healthy rollout show neither): judged only then, which halves a tick's
    // cost.
    tolerance_tests t{false, unit.tests.pass, false};
    if (unit.tests.fail || unit.tests.hint) {
        const auto request = judge_tolerance(j, by_request, ratio, delta, false);
        t.fail = unit.tests.fail && request.tests.fail;
        t.hint = unit.tests.hint && request.tests.hint;
    }
    if (t.fail) {
        j.add(gate, verdict::fail, c_rate, s_rate, limit, c_low, c_high,
              seen + ": higher than allowed (" + tolerance + ")" + unit.how +
                  " (the candidate's at least " + percent(c_low) + ")");
    } else if (!j.enough_both()) {
        j.add(gate, verdict::inconclusive, c_rate, s_rate, limit, c_low, c_high,
              j.too_little(true));
    } else if (t.pass) {
        j.add(gate, verdict::pass, c_rate, s_rate, limit, c_low, c_high,
              seen + ": within the allowance (" + tolerance + ")" + unit.how +
                  " (the candidate's at most " + percent(c_high) + ")");
    } else {
        j.add(gate, verdict::inconclusive, c_rate, s_rate, limit, c_low, c_high,
              seen + ": not yet clear against the allowance (" + tolerance +
                  "): the candidate's is between " + percent(c_low) + " and " + percent(c_high) +
                  unit.open,
              t.hint);
    }
}

// What a timing gate judges: the latency of successful answers, or an OpenAI stream's time
// to first token or time per output token. `key` names the gate ("p99_ttft_vs_stable").
struct timing {
    const char* key;
    const char* words;
    const char* samples;
};
constexpr timing answer_latency{"latency", "latency", "successful answers"};
constexpr timing first_token{"ttft", "time to first token", "streams"};
constexpr timing per_token{"time_per_token", "time per output token", "streams"};

// An absolute ceiling on a candidate timing quantile.
void latency_limit_gate(judging& j, const evidence::latency_sample& c, double q,
                        double limit_seconds, const timing& what = answer_latency) {
    const std::string name = quantile_name(q) + "_" + what.key;
    const double limit = limit_seconds * 1e6;
    const double estimate = c.quantile_micros(q);
    const double low = evidence::quantile_lower(c, q, j.gate_alpha);
    const double high = evidence::quantile_upper(c, q, j.cfg.beta);
    const double high_or_zero = high / 1e6;  // +infinity: not yet bounded
    const std::string seen = "candidate " + quantile_name(q) + " " + what.words + " " +
                             ms_text(estimate) + " over " +
                             std::to_string(static_cast<std::uint64_t>(c.total)) + " " +
                             what.samples;
    if (low > limit) {
        j.add(name, verdict::fail, estimate / 1e6, 0, limit_seconds, low / 1e6, high_or_zero,
              seen + ": slower than the limit " + ms_text(limit) + " (at least " + ms_text(low) +
                  ")");
    } else if (!j.enough_candidate()) {
        j.add(name, verdict::inconclusive, estimate / 1e6, 0, limit_seconds, low / 1e6,
              high_or_zero, j.too_little(false));
    } else if (high <= limit) {
        j.add(name, verdict::pass, estimate / 1e6, 0, limit_seconds, low / 1e6, high_or_zero,
              seen + ": within the limit " + ms_text(limit) + " (at most " + ms_text(high) + ")");
    } else {
        j.add(name, verdict::inconclusive, estimate / 1e6, 0, limit_seconds, low / 1e6,
              high_or_zero,
              seen + ": between " + ms_text(low) + " and " + ms_text(high) +
                  ", not yet clearly within or above the limit " + ms_text(limit),
              evidence::quantile_lower(c, q, widen_level) > limit);
    }
}

// A candidate latency quantile against stable's, within max(stable x ratio, stable + slack).
void latency_tolerance_gate(judging& j, const evidence::latency_sample& c,
                            const evidence::latency_sample& ref, double q, double ratio,
                            const timing& what = answer_latency) {
    const std::string name = quantile_name(q) + "_" + what.key + "_vs_stable";
    const double slack = j.cfg.latency_slack_seconds * 1e6;
    const auto allowed = [&](double x) { return std::max(x * ratio, x + slack); };
    const double c_q = c.quantile_micros(q);
    const double s_q = ref.quantile_micros(q);
    const double half_alpha = j.gate_alpha / 2;
    const double half_beta = j.cfg.beta / 2;
    const double c_low = evidence::quantile_lower(c, q, half_alpha);
    const double s_high = evidence::quantile_upper(ref, q, half_alpha);
    const double c_high = evidence::quantile_upper(c, q, half_beta);
    const double s_low = evidence::quantile_lower(ref, q, half_beta);
    const double high_or_zero = c_high / 1e6;  // +infinity: not yet bounded
    const std::string tolerance = "stable " + ratio_text(ratio) + " or + " + ms_text(slack) +
                                  ", whichever is larger";
    const std::string seen = quantile_name(q) + " " + what.words + " " + ms_text(c_q) +
                             " vs stable " + ms_text(s_q) + times_text(c_q, s_q) + " over " +
                             std::to_string(static_cast<std::uint64_t>(c.total)) +
                             " candidate " + what.samples;
    const double limit = allowed(s_q) / 1e6;
    auto add = [&](verdict v, std::string why, bool hint_of_harm = false) {
        j.add(name, v, c_q / 1e6, s_q / 1e6, limit, c_low / 1e6, high_or_zero, std::move(why),
              hint_of_harm);
    };
    if (ref.total <= 0) {
        add(verdict::inconclusive, j.too_little(true));
    } else if (std::isfinite(s_high) && c_low > allowed(s_high)) {
        add(verdict::fail, seen + ": slower than allowed (" + tolerance +
                               "): the candidate's is at least " + ms_text(c_low) +
                               ", the allowance at most " + ms_text(allowed(s_high)));
    } else if (!j.enough_both()) {
        add(verdict::inconclusive, j.too_little(true));
    } else if (c_high <= allowed(s_low)) {
        add(verdict::pass, seen + ": within the allowance (" + tolerance +
                               "): the candidate's is at most " + ms_text(c_high) +
                               ", the allowance at least " + ms_text(allowed(s_low)));
    } else {
        add(verdict::inconclusive,
            seen + ": not yet clear against the allowance (" + tolerance +
                "): the candidate's is between " + ms_text(c_low) + " and " + ms_text(c_high) +
                ", the allowance between " + ms_text(allowed(s_low)) + " and " +
                ms_text(allowed(s_high)),
            [&] {
                const double hint = widen_level / 2;
                const double s_hint = evidence::quantile_upper(ref, q, hint);
                return std::isfinite(s_hint) &&
                       evidence::quantile_lower(c, q, hint) > allowed(s_hint);
            }());
    }
}

// The timing gates of OpenAI streams: `member` picks the histogram from each segment's counts,
// stable's figures weighted segment by segment like latency's.
void stream_timing_gates(judging& j, const traffic& seen, const metrics::latency_histogram& all,
                         metrics::latency_histogram metrics::series_counts::*member,
                         const std::vector<quantile_limit>& limits,
                         const std::vector<relative_quantile_limit>& ratios, const timing& what) {
    if (limits.empty() && ratios.empty()) {
        return;
    }
    const auto c = evidence::latency_sample::of(all);
    for (const auto& q : limits) {
        latency_limit_gate(j, c, q.quantile, q.seconds, what);
    }
    if (ratios.empty()) {
        return;
    }
    auto segments = [&](const std::vector<metrics::series_counts>& of) {
        std::vector<evidence::segment_counts> out(of.size());
        for (std::size_t k = 0; k < of.size(); ++k) {
            out[k].latency = evidence::latency_sample::of(of[k].*member);
            out[k].requests = out[k].latency.total;
        }
        return out;
    };
    const auto ref = evidence::stable_reference(segments(seen.candidate), segments(seen.stable));
    for (const auto& q : ratios) {
        latency_tolerance_gate(j, c, ref.latency, q.quantile, q.max_ratio, what);
    }
}

// An output rate kept in a histogram (metrics::token_rate_scale units) as words.
std::string rate_text(double scaled) {
    if (!std::isfinite(scaled)) {
        return "unbounded";
    }
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.1f tokens/s", scaled / metrics::token_rate_scale);
    return buf;
}

// An absolute floor on a quantile of the candidate's per-stream output rate: it fails when
// the rate is shown below the floor (its upper bound under it), passes when shown above.
void token_rate_floor_gate(judging& j, const evidence::latency_sample& c, double q,
                           double floor_tokens_per_second) {
    const std::string name = quantile_name(q) + "_tokens_per_second";
    const double scale = metrics::token_rate_scale;
    const double limit = floor_tokens_per_second * scale;
    const double estimate = c.quantile_micros(q);
    const double high = evidence::quantile_upper(c, q, j.gate_alpha);  // +infinity: unbounded
    const double low = evidence::quantile_lower(c, q, j.cfg.beta);
    const std::string seen = "candidate " + quantile_name(q) + " output rate " +
                             rate_text(estimate) + " over " +
                             std::to_string(static_cast<std::uint64_t>(c.total)) +
                             " completed streams";
    auto add = [&](verdict v, std::string why, bool hint_of_harm = false) {
        j.add(name, v, estimate / scale, 0, floor_tokens_per_second, low / scale, high / scale,
              std::move(why), hint_of_harm);
    };
    if (high < limit) {
        add(verdict::fail, seen + ": slower than the floor " + rate_text(limit) + " (at most " +
                               rate_text(high) + ")");
    } else if (!j.enough_candidate()) {
        add(verdict::inconclusive, j.too_little(false));
    } else if (low >= limit) {
        add(verdict::pass, seen + ": above the floor " + rate_text(limit) + " (at least " +
                               rate_text(low) + ")");
    } else {
        add(verdict::inconclusive,
            seen + ": between " + rate_text(low) + " and " + rate_text(high) +
                ", not yet clearly above or below the floor " + rate_text(limit),
            evidence::quantile_upper(c, q, widen_level) < limit);
    }
}

// A quantile of the candidate's per-stream output rate against stable's: at least stable x
// ratio. Each version's bound at half the level, as latency tolerances are judged.
void token_rate_ratio_gate(judging& j, const evidence::latency_sample& c,
                           const evidence::latency_sample& ref, double q, double ratio) {
    const std::string name = quantile_name(q) + "_tokens_per_second_vs_stable";
    const double scale = metrics::token_rate_scale;
    const auto allowed = [&](double x) { return x * ratio; };
    const double c_q = c.quantile_micros(q);
    const double s_q = ref.quantile_micros(q);
    const double half_alpha = j.gate_alpha / 2;
    const double half_beta = j.cfg.beta / 2;
    const double c_high = evidence::quantile_upper(c, q, half_alpha);
    const double s_low = evidence::quantile_lower(ref, q, half_alpha);
    const double c_low = evidence::quantile_lower(c, q, half_beta);
    const double s_high = evidence::quantile_upper(ref, q, half_beta);
    const std::string tolerance = "at least stable " + ratio_text(ratio);
    const std::string seen = quantile_name(q) + " output rate " + rate_text(c_q) +
                             " vs stable " + rate_text(s_q) + times_text(c_q, s_q) + " over " +
                             std::to_string(static_cast<std::uint64_t>(c.total)) +
                             " candidate completed streams";
    auto add = [&](verdict v, std::string why, bool hint_of_harm = false) {
        j.add(name, v, c_q / scale, s_q / scale, allowed(s_q) / scale, c_low / scale,
              c_high / scale, std::move(why), hint_of_harm);
    };
    if (ref.total <= 0) {
        add(verdict::inconclusive, j.too_little(true));
    } else if (std::isfinite(c_high) && c_high < allowed(s_low)) {
        add(verdict::fail, seen + ": slower than allowed (" + tolerance +
                               "): the candidate's is at most " + rate_text(c_high) +
                               ", the allowance at least " + rate_text(allowed(s_low)));
    } else if (!j.enough_both()) {
        add(verdict::inconclusive, j.too_little(true));
    } else if (std::isfinite(s_high) && c_low >= allowed(s_high)) {
        add(verdict::pass, seen + ": within the allowance (" + tolerance +
                               "): the candidate's is at least " + rate_text(c_low) +
                               ", the allowance at most " + rate_text(allowed(s_high)));
    } else {
        add(verdict::inconclusive,
            seen + ": not yet clear against the allowance (" + tolerance +
                "): the candidate's is between " + rate_text(c_low) + " and " +
                rate_text(c_high) + ", the allowance between " + rate_text(allowed(s_low)) +
                " and " + rate_text(allowed(s_high)),
            [&] {
                const double hint = widen_level / 2;
                return evidence::quantile_upper(c, q, hint) <
                       allowed(evidence::quantile_lower(ref, q, hint));
            }());
    }
}

// The output rate gates of OpenAI streams, stable's figures weighted segment by segment.
void token_rate_gates(judging& j, const gate_config& cfg, const traffic& seen,
                      const metrics::latency_histogram& all) {
    if (cfg.min_tokens_per_second.empty() && cfg.min_tokens_per_second_ratio.empty()) {
        return;
    }
    const auto c = evidence::latency_sample::of(all);
    for (const auto& f : cfg.min_tokens_per_second) {
        token_rate_floor_gate(j, c, f.quantile, f.minimum);
    }
    if (cfg.min_tokens_per_second_ratio.empty()) {
        return;
    }
    auto segments = [&](const std::vector<metrics::series_counts>& of) {
        std::vector<evidence::segment_counts> out(of.size());
        for (std::size_t k = 0; k < of.size(); ++k) {
            out[k].latency = evidence::latency_sample::of(of[k].output_tokens_per_second);
            out[k].requests = out[k].latency.total;
        }
        return out;
    };
    const auto ref = evidence::stable_reference(segments(seen.candidate), segments(seen.stable));
    for (const auto& f : cfg.min_tokens_per_second_ratio) {
        token_rate_ratio_gate(j, c, ref.latency, f.quantile, f.min_ratio);
    }
}

// 4xx answers of either version: a tracked 4xx code or the 4xx class slot.
std::uint64_t client_errors_of(const metrics::series_counts& c) {
    std::uint64_t n = 0;
    for (std::size_t slot = 0; slot < metrics::code_slots; ++slot) {
        const auto label = metrics::code_label(slot);
        if (!label.empty() && label[0] == '4') {
            n += c.codes[slot];
        }
    }
    return n;
}

}  // namespace

evaluation evaluate(const gate_config& cfg, const traffic& seen) {
    evaluation out;
    metrics::series_counts candidate;
    metrics::series_counts stable;
    for (const auto& k : seen.candidate) {
        candidate.merge(k);
    }
    for (const auto& k : seen.stable) {
        stable.merge(k);
    }
    judging j{cfg, out};
    j.cn = candidate.requests();
    j.sn = stable.requests();

    // The relative gates, with the default tolerances where none is configured.
    const bool error_gate =
        cfg.max_error_rate_delta || cfg.max_error_rate_ratio || cfg.sequential_errors;
    // A ratio alone gets an additive floor: it is judged on how the versions' errors split,
    // and two versions that both answer without errors (the 4xx comparison, a model that never
    // fails) split nothing, so a healthy candidate could never pass. Live A/A runs held at
    // 50 % for good on 0 % vs 0 % 4xx.
    double ratio = cfg.max_error_rate_ratio.value_or(1.0);
    double delta = cfg.max_error_rate_delta.value_or(cfg.max_error_rate_ratio ? ratio_only_floor
                                                                              : 0.0);
    if (!cfg.max_error_rate_delta && !cfg.max_error_rate_ratio) {
        ratio = 1.2;
        delta = 0.005;
    }
    const auto slot_of_4xx = metrics::code_slot(499);
    const bool errors_include_4xx =
        std::find(cfg.error_slots.begin(), cfg.error_slots.end(), slot_of_4xx) !=
        cfg.error_slots.end();
    const bool client_gate = cfg.client_errors && error_gate && !errors_include_4xx;
    // The default comparison of whole answers' latency is left out where the streams' own
    // figures are judged: a stream's latency is its whole length, so a candidate that writes
    // longer answers (or an LLM user asking for longer ones) would look slower. Configured
    // latency ratios still apply.
    const bool judges_streams =
        !cfg.max_ttft.empty() || !cfg.max_ttft_ratio.empty() || !cfg.max_time_per_token.empty() ||
        !cfg.max_time_per_token_ratio.empty() || !cfg.min_tokens_per_second.empty() ||
        !cfg.min_tokens_per_second_ratio.empty();
    std::vector<relative_quantile_limit> latency_ratios = cfg.max_latency_ratio;
    if (latency_ratios.empty() && cfg.sequential_latency && !judges_streams) {
        latency_ratios = {{0.5, 1.2}, {0.9, 1.2}};
    }
    const std::size_t gates = (cfg.max_error_rate ? 1 : 0) +
                              (cfg.max_upstream_failure_rate ? 1 : 0) + cfg.max_latency.size() +
                              (error_gate ? 1 : 0) + (client_gate ? 1 : 0) +
                              latency_ratios.size() + cfg.max_ttft.size() +
                              cfg.max_ttft_ratio.size() + cfg.max_time_per_token.size() +
                              cfg.max_time_per_token_ratio.size() +
                              cfg.min_tokens_per_second.size() +
                              cfg.min_tokens_per_second_ratio.size();
    j.gate_alpha = cfg.alpha / static_cast<double>(std::max<std::size_t>(gates, 1));

    const auto errors = [&](const metrics::series_counts& c) { return errors_of(c, cfg.error_slots); };
    if (cfg.max_error_rate) {
        rate_limit_gate(j, "error_rate", "error rate", static_cast<double>(errors(candidate)),
                        static_cast<double>(j.cn), *cfg.max_error_rate);
    }
    if (cfg.max_upstream_failure_rate) {
        rate_limit_gate(j, "upstream_failure_rate", "upstream failure rate",
                        static_cast<double>(failures(candidate)), static_cast<double>(j.cn),
                        *cfg.max_upstream_failure_rate);
    }
    const auto c_latency = evidence::latency_sample::of(candidate.success_latency);
    for (const auto& q : cfg.max_latency) {
        latency_limit_gate(j, c_latency, q.quantile, q.seconds);
    }
    if (error_gate || client_gate || !latency_ratios.empty()) {
        // Each rate counted per unit (see weigh) and per request (see request_dispersion),
        // each version and kind of event on its own.
        using bucket_events = std::array<std::uint64_t, metrics::unit_buckets>
            metrics::unit_counts::*;
        const auto by_unit = [&](auto errors_in, bucket_events events, bool with_latency) {
            // The units' spread is the users', whichever version serves them: both versions
            // weighed by one variance estimated from all their buckets (see
            // pooled_relative_between).
            const auto c = totals_of(seen.candidate, events);
            const auto s = totals_of(seen.stable, events);
            const double between =
                evidence::pooled_relative_between(c.requests, c.events, s.requests, s.events);
            const auto cw = evidence::weigh_units(c.requests, c.events, between);
            const auto sw = evidence::weigh_units(s.requests, s.events, between);
            rate_counts counts{segments_of(seen.candidate, errors_in, events, cw, with_latency),
                            segments_of(seen.stable, errors_in, events, sw, with_latency),
                            {}, std::max(cw.dispersion, sw.dispersion)};
            counts.split = split_of(counts.candidate, cw, counts.stable, sw);
            return counts;
        };
        const auto by_request = [&](auto errors_in, bucket_events events) {
            evidence::unit_weighting cw;
            evidence::unit_weighting sw;
            cw.scale.assign(metrics::unit_buckets, 1.0);
            sw.scale.assign(metrics::unit_buckets, 1.0);
            cw.dispersion = request_dispersion(seen.candidate, events);
            sw.dispersion = request_dispersion(seen.stable, events);
            rate_counts counts{segments_of(seen.candidate, errors_in, events, cw, false),
                            segments_of(seen.stable, errors_in, events, sw, false),
                            {}, std::max(cw.dispersion, sw.dispersion)};
            // The split test divides by the larger spread itself: split the raw counts.
            cw.dispersion = 1;
            sw.dispersion = 1;
            counts.split = split_of(segments_of(seen.candidate, errors_in, events, cw, false), cw,
                                 segments_of(seen.stable, errors_in, events, sw, false), sw);
            return counts;
        };
        const auto server = &metrics::unit_counts::server_errors;
        const auto client = &metrics::unit_counts::client_errors;
        const auto errors_by_unit = by_unit(errors, server, !latency_ratios.empty());
        if (error_gate) {
            rate_tolerance_gate(j, "error_rate_vs_stable", "error rate", errors_by_unit,
                                by_request(errors, server), ratio, delta);
        }
        if (!latency_ratios.empty()) {
            const auto ref =
                evidence::stable_reference(errors_by_unit.candidate, errors_by_unit.stable);
            for (const auto& q : latency_ratios) {
                latency_tolerance_gate(j, c_latency, ref.latency, q.quantile, q.max_ratio);
            }
        }
        if (client_gate) {
            rate_tolerance_gate(j, "client_error_rate_vs_stable", "4xx rate",
                                by_unit(client_errors_of, client, false),
                                by_request(client_errors_of, client), ratio, delta);
        }
    }
    stream_timing_gates(j, seen, candidate.time_to_first_token,
                        &metrics::series_counts::time_to_first_token, cfg.max_ttft,
                        cfg.max_ttft_ratio, first_token);
    stream_timing_gates(j, seen, candidate.time_per_output_token,
                        &metrics::series_counts::time_per_output_token, cfg.max_time_per_token,
                        cfg.max_time_per_token_ratio, per_token);
    token_rate_gates(j, cfg, seen, candidate.output_tokens_per_second);
    if (!seen.candidate.empty() && !seen.stable.empty()) {
        evaluate_quality(cfg, seen.candidate.back().predictions, seen.stable.back().predictions,
                         seen.mirror ? &seen.mirror->predictions : nullptr, out);
    }
    return out;
}

}  // namespace stagegate::rollout
