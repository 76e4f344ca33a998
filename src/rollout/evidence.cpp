#include "stagegate/rollout/evidence.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>

namespace stagegate::rollout::evidence {

namespace {

using histogram = metrics::latency_histogram;

// The alternatives: log-odds steps of h above (or below) the null, J of them; a step of 0.1 is
// about 10 % in odds, the last one e^8 (3,000) times the null odds: larger effects are found
// through the nearer alternatives within a few samples anyway.
constexpr double step = 0.1;
constexpr int alternatives = 80;
constexpr double smallest_rate = 1e-12;

// The log-likelihood of `events` events and `misses` misses at log-odds x:
// events ln(sigmoid(x)) + misses ln(1 - sigmoid(x)), without cancellation. Both logarithms
// share ln(1 + e^-|x|), so it costs one exp and one log1p: the bounds' bisections call it
// millions of times (in the simulator, most of its time).
double log_likelihood_at(double events, double misses, double x) {
    const double tail = std::log1p(std::exp(-std::abs(x)));
    return events * (std::min(x, 0.0) - tail) + misses * (std::min(-x, 0.0) - tail);
}

double logit(double p) { return std::log(p) - std::log1p(-p); }

// The mixture weights 1/(j(j+1)), normalised over j = 1..J (their sum is 1 - 1/(J+1)); ln of
// each, indexed by j - 1, computed once.
const std::array<double, alternatives> log_weights = [] {
    std::array<double, alternatives> w{};
    const double total = 1.0 - 1.0 / (alternatives + 1);
    for (int j = 1; j <= alternatives; ++j) {
        w[static_cast<std::size_t>(j - 1)] =
            -std::log(static_cast<double>(j) * (j + 1)) - std::log(total);
    }
    return w;
}();

// Callers that only ask whether the evidence reaches a threshold pass it as `enough`; those
// that want its value pass no_threshold.
constexpr double no_threshold = std::numeric_limits<double>::infinity();

// ln sum_j w_j LR_j over the alternatives on the side `direction` (+1 above, -1 below) of the
// null: `log_ratio(shift)` is ln LR of the alternative `shift` log-odds away from it.
// Once one term reaches `enough` it returns that term, as the sum is at least its largest
// term (top + ln(sum) with sum >= 1, also in floating point): a bisection asking "at least
// the threshold?" gets the same answer as from the whole sum, without the rest of the terms.
template <class LogRatio>
double log_mixture_of(int direction, LogRatio log_ratio, double enough) {
    double top = -std::numeric_limits<double>::infinity();
    std::array<double, alternatives> terms{};
    for (int j = 1; j <= alternatives; ++j) {
        const double t =
            log_weights[static_cast<std::size_t>(j - 1)] + log_ratio(direction * j * step);
        if (t >= enough) {
            return t;
        }
        terms[static_cast<std::size_t>(j - 1)] = t;
        top = std::max(top, t);
    }
    double sum = 0;
    for (double t : terms) {
        // exp underflows to exactly 0 below -745.2: skipping it adds the same 0 without exp's
        // slow underflow path
        if (const double d = t - top; d > -746) {
            sum += std::exp(d);
        }
    }
    return top + std::log(sum);
}

// ln sum_j w_j LR_j for a rate: alternatives at log-odds logit(p0) + direction * j * step.
double log_mixture(double events, double trials, double p0, int direction, double enough) {
    if (trials <= 0) {
        return 0;
    }
    p0 = std::clamp(p0, smallest_rate, 1 - smallest_rate);
    events = std::clamp(events, 0.0, trials);
    const double misses = trials - events;
    const double x0 = logit(p0);
    const double null_log_likelihood = log_likelihood_at(events, misses, x0);
    return log_mixture_of(direction, [&](double shift) {
        return log_likelihood_at(events, misses, x0 + shift) - null_log_likelihood;
    }, enough);
}

// The segments that carry evidence on the ratio: both versions had trials, and some event.
// `offset` is ln(n_c / n_s): the null log-odds that an event is the candidate's is
// ln(ratio) + offset.
struct split_term {
    double candidate_events;
    double stable_events;
    double offset;
};

std::vector<split_term> split_terms(const std::vector<rate_split>& segments) {
    std::vector<split_term> out;
    out.reserve(segments.size());
    for (const auto& k : segments) {
        if (k.candidate_trials > 0 && k.stable_trials > 0 &&
            k.candidate_events + k.stable_events > 0) {
            out.push_back({std::max(0.0, k.candidate_events), std::max(0.0, k.stable_events),
                           std::log(k.candidate_trials) - std::log(k.stable_trials)});
        }
    }
    return out;
}

double log_mixture_ratio(const std::vector<split_term>& terms, double ratio, double dispersion,
                         int direction, double enough) {
    if (terms.empty() || ratio <= 0) {
        return 0;
    }
    const double log_ratio = std::log(ratio);
    const double scale = 1 / std::max(1.0, dispersion);
    auto log_likelihood = [&](double shift) {
        double ll = 0;
        for (const auto& t : terms) {
            ll += log_likelihood_at(t.candidate_events, t.stable_events,
                                    log_ratio + t.offset + shift);
        }
        return ll;
    };
    const double null_log_likelihood = log_likelihood(0);
    return log_mixture_of(direction, [&](double shift) {
        return (log_likelihood(shift) - null_log_likelihood) * scale;
    }, enough);
}

// The edge of the rejected set of log-ratios by bisection: `rejected(log r)` holds at `from`
// and not at `to`. Returns the conservative end (on the rejected side).
template <class Rejected>
double log_ratio_edge(double from, double to, Rejected rejected) {
    for (int i = 0; i < 40; ++i) {
        const double mid = 0.5 * (from + to);
        if (rejected(mid)) {
            from = mid;
        } else {
            to = mid;
        }
    }
    return from;
}

// Ratios beyond e^±20 are "unbounded" (0 or +infinity).
constexpr double widest_log_ratio = 20;

// The edge of the rejected set of p0 by bisection in log-odds: `rejected(p0)` holds on the
// `from` side and not on the other. Returns a point on the rejected side of the edge (the
// conservative end of the bound).
template <class Rejected>
double edge(double from, double to, Rejected rejected) {
    double a = logit(from);
    double b = logit(to);
    for (int i = 0; i < 48; ++i) {
        const double mid = 0.5 * (a + b);
        const double p = 1.0 / (1.0 + std::exp(-mid));
        if (rejected(p)) {
            a = mid;
        } else {
            b = mid;
        }
    }
    return 1.0 / (1.0 + std::exp(-a));
}

std::array<double, histogram::bucket_count> cumulative(const latency_sample& s) {
    std::array<double, histogram::bucket_count> c{};
    double run = 0;
    for (std::size_t i = 0; i < c.size(); ++i) {
        run += s.counts[i];
        c[i] = run;
    }
    return c;
}

// log_evidence_above (direction +1) or log_evidence_below (-1); see log_mixture_of for `enough`.
double log_evidence(double events, double trials, double p0, int direction, double enough) {
    if (trials <= 0 || (direction > 0 ? p0 >= 1 : p0 <= 0)) {
        return 0;
    }
    return log_mixture(events, trials, p0, direction, enough);
}

// Whether the evidence on the side `direction` of p0 reaches `threshold`.
bool evidence_reaches(double events, double trials, double p0, int direction, double threshold) {
    return log_evidence(events, trials, p0, direction, threshold) >= threshold;
}

}  // namespace

double log_evidence_above(double events, double trials, double p0) {
    return log_evidence(events, trials, p0, +1, no_threshold);
}

double log_evidence_below(double events, double trials, double p0) {
    return log_evidence(events, trials, p0, -1, no_threshold);
}

double rate_lower(double events, double trials, double level) {
    if (trials <= 0 || events <= 0) {
        return 0;
    }
    const double threshold = std::log(1 / level);
    const double estimate = std::min(events / trials, 1 - smallest_rate);
    auto rejected = [&](double p0) { return evidence_reaches(events, trials, p0, +1, threshold); };
    if (!rejected(smallest_rate)) {
        return 0;
    }
    return edge(smallest_rate, estimate, rejected);
}

double rate_upper(double events, double trials, double level) {
    if (trials <= 0 || events >= trials) {
        return 1;
    }
    const double threshold = std::log(1 / level);
    const double estimate = std::max(events / trials, smallest_rate);
    auto rejected = [&](double p0) { return evidence_reaches(events, trials, p0, -1, threshold); };
    if (!rejected(1 - smallest_rate)) {
        return 1;
    }
    return edge(1 - smallest_rate, estimate, rejected);
}

double log_evidence_ratio_above(const std::vector<rate_split>& segments, double ratio,
                                double dispersion) {
    return log_mixture_ratio(split_terms(segments), ratio, dispersion, +1, no_threshold);
}

double log_evidence_ratio_below(const std::vector<rate_split>& segments, double ratio,
                                double dispersion) {
    return log_mixture_ratio(split_terms(segments), ratio, dispersion, -1, no_threshold);
}

double log_evidence_ratio_within(const std::vector<rate_split>& segments, double ratio,
                                 double dispersion) {
    const auto terms = split_terms(segments);
    const double spread = log_mixture_ratio(terms, ratio, dispersion, -1, no_threshold);
    if (terms.empty() || ratio <= 1) {
        return spread;
    }
    // The likelihood ratio of "ratio 1" against "ratio `ratio`", on the same scaled
    // log-likelihood as the mixture's alternatives.
    const double scale = 1 / std::max(1.0, dispersion);
    double at_one = 0;
    double at_null = 0;
    for (const auto& t : terms) {
        at_one += log_likelihood_at(t.candidate_events, t.stable_events, t.offset);
        at_null += log_likelihood_at(t.candidate_events, t.stable_events,
                                     std::log(ratio) + t.offset);
    }
    const double point = (at_one - at_null) * scale;
    // ln(0.5 e^point + 0.5 e^spread) without overflow.
    const double top = std::max(point, spread);
    return top + std::log(0.5 * std::exp(point - top) + 0.5 * std::exp(spread - top));
}

double ratio_lower(const std::vector<rate_split>& segments, double level, double dispersion) {
    const auto terms = split_terms(segments);
    const double threshold = std::log(1 / level);
    auto rejected = [&](double log_r) {
        return log_mixture_ratio(terms, std::exp(log_r), dispersion, +1, threshold) >= threshold;
    };
    if (terms.empty() || !rejected(-widest_log_ratio)) {
        return 0;
    }
    if (rejected(widest_log_ratio)) {
        return std::exp(widest_log_ratio);
    }
    return std::exp(log_ratio_edge(-widest_log_ratio, widest_log_ratio, rejected));
}

double ratio_upper(const std::vector<rate_split>& segments, double level, double dispersion) {
    const auto terms = split_terms(segments);
    const double threshold = std::log(1 / level);
    auto rejected = [&](double log_r) {
        return log_mixture_ratio(terms, std::exp(log_r), dispersion, -1, threshold) >= threshold;
    };
    if (terms.empty() || !rejected(widest_log_ratio)) {
        return std::numeric_limits<double>::infinity();
    }
    if (rejected(-widest_log_ratio)) {
        return std::exp(-widest_log_ratio);
    }
    return std::exp(log_ratio_edge(widest_log_ratio, -widest_log_ratio, rejected));
}

namespace {

// Cochran's Q of one version's buckets (weights n_b / p(1-p)), its degrees of freedom, and what
// a relative between-bucket variance of 1 would add to Q's expectation: E[Q] = df + v * slope,
// v relative to the squared rate. All 0 when the version says nothing about the spread (no
// events, every request an event, or fewer than two buckets in use).
struct bucket_spread {
    double q = 0;
    double df = 0;
    double slope = 0;
};

// A version's totals over its buckets: requests, events, squared requests, buckets in use.
struct bucket_sums {
    double n = 0;
    double e = 0;
    double n_squared = 0;
    int used = 0;
};

bucket_sums sums_of(const std::vector<double>& requests, const std::vector<double>& events) {
    bucket_sums t;
    for (std::size_t b = 0; b < requests.size(); ++b) {
        t.n += requests[b];
        t.e += events[b];
        t.n_squared += requests[b] * requests[b];
        t.used += requests[b] > 0 ? 1 : 0;
    }
    return t;
}

bucket_spread spread_of(const std::vector<double>& requests, const std::vector<double>& events) {
    const auto [n, e, n_squared, used] = sums_of(requests, events);
    if (n <= 0 || e <= 0 || e >= n || used < 2) {
        return {};
    }
    const double p = e / n;
    const double binomial = p * (1 - p);
    bucket_spread s;
    for (std::size_t b = 0; b < requests.size(); ++b) {
        if (requests[b] > 0) {
            const double d = events[b] - requests[b] * p;
            s.q += d * d / (requests[b] * binomial);
        }
    }
    s.df = used - 1;
    s.slope = (n - n_squared / n) / binomial * p * p;
    return s;
}

// The moment estimate (DerSimonian & Laird) from one or more versions' spreads: 0 when the
// buckets vary as chance alone would make them.
double moment_estimate(std::initializer_list<bucket_spread> spreads) {
    double q = 0;
    double df = 0;
    double slope = 0;
    for (const auto& s : spreads) {
        q += s.q;
        df += s.df;
        slope += s.slope;
    }
    return slope > 0 ? std::max(0.0, (q - df) / slope) : 0.0;
}

}  // namespace

double pooled_relative_between(const std::vector<double>& candidate_requests,
                               const std::vector<double>& candidate_events,
                               const std::vector<double>& stable_requests,
                               const std::vector<double>& stable_events) {
    return moment_estimate(
        {spread_of(candidate_requests, candidate_events), spread_of(stable_requests, stable_events)});
}

unit_weighting weigh_units(const std::vector<double>& requests, const std::vector<double>& events) {
    return weigh_units(requests, events, moment_estimate({spread_of(requests, events)}));
}

unit_weighting weigh_units(const std::vector<double>& requests, const std::vector<double>& events,
                           double relative_between) {
    unit_weighting w;
    w.scale.assign(requests.size(), 1.0);
    const auto [n, e, n_squared, used] = sums_of(requests, events);
    if (n <= 0 || e <= 0 || e >= n) {
        return w;
    }
    if (used < 2) {
        for (std::size_t b = 0; b < requests.size(); ++b) {
            w.scale[b] = requests[b] > 1 ? 1 / requests[b] : 1.0;
        }
        return w;
    }
    const double p = e / n;
    const double binomial = p * (1 - p);
    const double between = relative_between * p * p;
    w.relative_between = relative_between;
    double scaled_n = 0;
    double scaled_e = 0;
    for (std::size_t b = 0; b < requests.size(); ++b) {
        w.scale[b] = 1 / (1 + requests[b] * between / binomial);
        scaled_n += w.scale[b] * requests[b];
        scaled_e += w.scale[b] * events[b];
    }
    // What is left among the scaled buckets: about 1 when the model holds, more when this
    // version's units vary more than the variance used says (a candidate that fails some users
    // only): the bounds divide by it, so a version never counts as more independent than its
    // own buckets show.
    const double pw = scaled_e / scaled_n;
    double left = 0;
    for (std::size_t b = 0; b < requests.size(); ++b) {
        const double m = w.scale[b] * requests[b];
        if (m > 0) {
            const double d = w.scale[b] * events[b] - m * pw;
            left += d * d / (m * pw * (1 - pw));
        }
    }
    w.dispersion = std::max(1.0, left / (used - 1));
    return w;
}

latency_sample latency_sample::of(const metrics::latency_histogram& h) {
    latency_sample s;
    for (std::size_t i = 0; i < histogram::bucket_count; ++i) {
        s.counts[i] = static_cast<double>(h.bucket(i));
    }
    s.total = static_cast<double>(h.count());
    return s;
}

double latency_sample::quantile_micros(double q) const {
    if (total <= 0) {
        return 0;
    }
    const double rank = std::max(q * total, 1e-9);
    double run = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        run += counts[i];
        if (run >= rank) {
            return histogram::bucket_midpoint(i);
        }
    }
    return histogram::bucket_midpoint(counts.size() - 1);
}

double quantile_lower(const latency_sample& s, double q, double level) {
    if (s.total <= 0) {
        return 0;
    }
    const double threshold = std::log(1 / level);
    const auto below = cumulative(s);
    // The q-quantile is at least bucket b's upper edge once the share of samples under that
    // edge is shown to be below q. The evidence falls as b grows: the last bucket with it.
    auto shown = [&](std::size_t b) {
        return evidence_reaches(below[b], s.total, q, -1, threshold);
    };
    if (!shown(0)) {
        return 0;
    }
    std::size_t lo = 0;
    std::size_t hi = histogram::bucket_count;  // first bucket not shown (or past the end)
    while (hi - lo > 1) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (shown(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return static_cast<double>(histogram::bucket_upper(lo));
}

double quantile_upper(const latency_sample& s, double q, double level) {
    if (s.total <= 0) {
        return std::numeric_limits<double>::infinity();
    }
    const double threshold = std::log(1 / level);
    const auto below = cumulative(s);
    // The q-quantile is below bucket b's upper edge once the share of samples under that edge
    // is shown to be above q: the first bucket with that evidence.
    auto shown = [&](std::size_t b) {
        return evidence_reaches(below[b], s.total, q, +1, threshold);
    };
    const std::size_t last = histogram::bucket_count - 1;
    if (!shown(last)) {
        return std::numeric_limits<double>::infinity();
    }
    std::size_t lo = 0;  // lo - 1 not shown
    std::size_t hi = last;
    if (shown(0)) {
        return static_cast<double>(histogram::bucket_upper(0));
    }
    while (hi - lo > 1) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (shown(mid)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    return static_cast<double>(histogram::bucket_upper(hi));
}

segment_counts stable_reference(const std::vector<segment_counts>& candidate,
                                const std::vector<segment_counts>& stable) {
    segment_counts ref;
    const std::size_t n = std::min(candidate.size(), stable.size());
    double c_requests = 0;
    double c_latency = 0;
    for (std::size_t k = 0; k < n; ++k) {
        c_requests += candidate[k].requests;
        c_latency += candidate[k].latency.total;
    }
    // Stable's pooled figures so far, for segments in which it served nothing.
    segment_counts pooled;
    double rate = 0;
    double rate_variance_weight = 0;  // sum w^2 / n
    double latency_variance_weight = 0;
    std::array<double, histogram::bucket_count> mixture{};
    for (std::size_t k = 0; k < n; ++k) {
        const segment_counts& s = stable[k].requests > 0 ? stable[k] : pooled;
        if (c_requests > 0 && candidate[k].requests > 0 && s.requests > 0) {
            const double w = candidate[k].requests / c_requests;
            rate += w * s.errors / s.requests;
            rate_variance_weight += w * w / s.requests;
        }
        if (c_latency > 0 && candidate[k].latency.total > 0 && s.latency.total > 0) {
            const double w = candidate[k].latency.total / c_latency;
            for (std::size_t i = 0; i < mixture.size(); ++i) {
                mixture[i] += w * s.latency.counts[i] / s.latency.total;
            }
            latency_variance_weight += w * w / s.latency.total;
        }
        pooled.requests += stable[k].requests;
        pooled.errors += stable[k].errors;
        for (std::size_t i = 0; i < mixture.size(); ++i) {
            pooled.latency.counts[i] += stable[k].latency.counts[i];
        }
        pooled.latency.total += stable[k].latency.total;
    }
    if (rate_variance_weight > 0) {
        ref.requests = 1 / rate_variance_weight;
        ref.errors = rate * ref.requests;
    }
    if (latency_variance_weight > 0) {
        ref.latency.total = 1 / latency_variance_weight;
        for (std::size_t i = 0; i < mixture.size(); ++i) {
            ref.latency.counts[i] = mixture[i] * ref.latency.total;
        }
    }
    return ref;
}

}  // namespace stagegate::rollout::evidence
