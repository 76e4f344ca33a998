// rollout/evidence: anytime-valid confidence bounds for what the gates judge.
// Owns: one-sided confidence bounds on a rate (errors, upstream failures, exceedances) and on
// a latency quantile, valid at every sample size at once, so the controller may look after
// every interval, for as long as a rollout lasts, without inflating its error rates; and the
// stage-weighted reference that a candidate's traffic is compared with.
//
// The bounds come from test martingales (Ville's inequality: a nonnegative martingale that
// starts at 1 ever reaches 1/level with probability at most level). For a rate p0, the
// evidence that the true rate is above it is a mixture of likelihood ratios against fixed
// alternatives at log-odds logit(p0) + j*h, j = 1..J, weighted 1/(j(j+1)): small effects,
// the ones tolerances are about, cost little of the level, large ones are found in a few
// samples anyway. Each ratio is a supermartingale for every rate at or below p0, so the
// mixture tests the one-sided null "rate <= p0". The bound is the edge of the set of p0
// that this test rejects. A quantile bound reads the rate bound off the histogram
// (Howard & Ramdas, "Sequential estimation of quantiles", 2022): the q-quantile is above x
// once the share of samples below x is shown to be below q.
//
// Must not touch: clocks, threads, I/O, configuration. Pure functions of counts.
#pragma once

#include "stagegate/metrics/histogram.hpp"

#include <array>
#include <cstdint>
#include <vector>

namespace stagegate::rollout::evidence {

// ln of the evidence that the rate of `events` in `trials` is above `p0` (below: under it).
// Counts may be fractional (a weighted reference). 0 when there is nothing to go on.
double log_evidence_above(double events, double trials, double p0);
double log_evidence_below(double events, double trials, double p0);

// Bounds that hold at every sample size at once: P(the rate is ever below lower) <= level.
// lower is 0 and upper 1 until the data say otherwise.
double rate_lower(double events, double trials, double level);
double rate_upper(double events, double trials, double level);

// One segment of a comparison of two versions' rates (a stretch at one traffic split): each
// version's events and trials in it.
struct rate_split {
    double candidate_events = 0;
    double candidate_trials = 0;
    double stable_events = 0;
    double stable_trials = 0;
};

// ln of the evidence that the candidate's rate is above (below) `ratio` x stable's. Judged on
// how the events split between the versions: within a segment in which the candidate had
// n_c of the trials and stable n_s, an event is the candidate's with probability
// r n_c / (r n_c + n_s) when its rate is r times stable's, whatever the rates themselves are
// and however they drift together over time. One parameter, one test: about half the samples
// that comparing two separate bounds needs when the versions see similar traffic. Segments
// in which either version had no trials say nothing about the ratio. `dispersion` (at least 1)
// divides the log-likelihood: the quasi-likelihood of correlated requests (see gates).
double log_evidence_ratio_above(const std::vector<rate_split>& segments, double ratio,
                                double dispersion = 1);
double log_evidence_ratio_below(const std::vector<rate_split>& segments, double ratio,
                                double dispersion = 1);

// ln of the evidence that the candidate's rate is below `ratio` (> 1) x stable's, for proving a
// tolerance met: half the mixture on the candidate being exactly as good as stable (ratio 1),
// the other half as log_evidence_ratio_below. Still a mixture of likelihood ratios fixed in
// advance (so as valid), but it pays ln 2 of the level for the alternative a pass is about
// instead of ln 20 (the 1/(j(j+1)) weight of a shift of ln 1.5): a healthy candidate is shown
// within x1.5 on about a fifth less evidence (1 nat of about 4.5), a worse one gains nothing.
double log_evidence_ratio_within(const std::vector<rate_split>& segments, double ratio,
                                 double dispersion = 1);

// Bounds on candidate rate / stable rate that hold at every sample size at once:
// P(the ratio is ever above upper) <= level. 0 and +infinity until the data say otherwise.
double ratio_lower(const std::vector<rate_split>& segments, double level, double dispersion = 1);
double ratio_upper(const std::vector<rate_split>& segments, double level, double dispersion = 1);

// How much each unit bucket's requests count, when requests of one unit (a user, a tenant: one
// bucket) are correlated. A random-effects model (DerSimonian & Laird): the buckets' rates
// vary around the version's by a between-bucket variance estimated from their spread beyond
// what independent requests give; a bucket of n requests then carries the information of
// n / (1 + n * variance / (p(1-p))) independent ones. A heavy user's bucket counts for about as
// much as any other bucket instead of for all its requests, so the version's rate is judged
// per unit rather than per request, and the bounds narrow with the number of units seen, not
// only with traffic. Without spread beyond chance every scale is 1 (requests are independent).
struct unit_weighting {
    std::vector<double> scale;  // per bucket, in (0, 1]: multiply its requests and events
    // What spread is left among the scaled buckets (quasi-binomial, at least 1): the bounds
    // divide their log-likelihood by it, for what the model misses.
    double dispersion = 1;
    // The between-bucket variance used, relative to the squared rate (the buckets' squared
    // coefficient of variation beyond chance).
    double relative_between = 0;
};
// `requests[b]` and `events[b]`: the version's counts in bucket b over the whole rollout,
// weighed by the between-bucket variance its own buckets show.
// With a single bucket in use nothing says its requests are independent: its scale leaves
// one request's worth.
unit_weighting weigh_units(const std::vector<double>& requests, const std::vector<double>& events);
// The same with a given relative between-bucket variance (pooled_relative_between).
unit_weighting weigh_units(const std::vector<double>& requests, const std::vector<double>& events,
                           double relative_between);
// How much units differ is a property of the users, not of the version: the relative
// between-bucket variance estimated from both versions' buckets at once (one moment estimate
// over their pooled Cochran's Q, each version about its own rate). A version seen on few units
// (a candidate at 5 %, most of its traffic one heavy, flaky user) cannot show the spread
// itself: weighed by its own estimate, such a user counted as all its requests. Pooling, rather
// than taking the larger of two versions' estimates, keeps the estimate's noise from adding to
// it: the larger of two noisy estimates is biased upward, most where events are few (low
// traffic), and every bit of it caps what a unit can count for.
double pooled_relative_between(const std::vector<double>& candidate_requests,
                               const std::vector<double>& candidate_events,
                               const std::vector<double>& stable_requests,
                               const std::vector<double>& stable_events);

// Latency samples as counts per histogram bucket, possibly weighted (see reference below).
struct latency_sample {
    std::array<double, metrics::latency_histogram::bucket_count> counts{};
    double total = 0;

    static latency_sample of(const metrics::latency_histogram& h);
    double quantile_micros(double q) const;  // the point estimate, at bucket midpoints
};

// Bounds on the q-quantile in microseconds, at bucket edges (rounded outwards). lower is 0
// and upper +infinity until enough samples bound it: a p99 needs a few hundred at least.
double quantile_lower(const latency_sample& s, double q, double level);
double quantile_upper(const latency_sample& s, double q, double level);

// What one version served in one segment of a rollout (a stretch at one traffic split).
struct segment_counts {
    double requests = 0;
    double errors = 0;
    latency_sample latency;  // successful answers only
};

// The stable figures a candidate is compared with when its share changed across segments:
// each segment's stable rate weighted by the candidate's requests in that segment, so that a
// stable whose error rate or latency moved over time is compared period for period (no
// Simpson's paradox). A segment in which stable served nothing (a 100 % stage) borrows
// stable's pooled figures from the segments before it. The weighted counts carry the
// effective sample size of the weighted mean, 1 / sum(w_k^2 / n_k).
segment_counts stable_reference(const std::vector<segment_counts>& candidate,
                                const std::vector<segment_counts>& stable);

}  // namespace stagegate::rollout::evidence
