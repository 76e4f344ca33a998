// rollout/sequential: anytime-valid tests comparing a candidate with the stable version.
// Owns: mixture sequential probability ratio tests (mSPRT) on the arm labels of events, after
// Lindon, Sanden & Shirikian, "Rapid Regression Detection in Software Deployments through
// Sequential Testing" (KDD 2022) and Lindon & Malek's multinomial counts.
//
// The idea: the router sends each request to the candidate with a known probability rho0 (its
// share of the two versions' weight). If the candidate is as good as stable, every error (or
// every request landing in a given latency bin) belongs to the candidate with probability rho0,
// whatever the traffic volume. The test mixes the alternative over a Beta prior on that
// probability; the resulting Bayes factor is a nonnegative martingale under the null, so by
// Ville's inequality P(it ever reaches 1/alpha) <= alpha: checking it after every interval, as
// often as we like, never inflates false rollbacks beyond alpha.
//
// Must not touch: clocks, threads, I/O. Pure functions of counts.
#pragma once

#include "stagegate/metrics/histogram.hpp"

#include <cstdint>
#include <string>

namespace stagegate::rollout {

struct sequential_result {
    double log_bayes_factor = 0;  // ln BF; reject when >= ln(1/alpha)
    bool reject = false;          // evidence that the candidate is worse, at level alpha
    double p_value = 1;           // anytime-valid p-value: min(1, 1/max BF so far) here 1/BF
    std::uint64_t candidate_events = 0;
    std::uint64_t stable_events = 0;
};

// Beta-binomial mixture: ln of the Bayes factor for `x` of `x + y` events on the candidate,
// against the null probability rho0, with a Beta(kappa * rho0, kappa * (1 - rho0)) prior
// centred on the null (kappa sets how far from rho0 the test looks for effects).
double log_bayes_factor(std::uint64_t x, std::uint64_t y, double rho0, double kappa);

// Error rates: candidate_errors of the candidate's requests vs stable_errors of stable's.
// Rejects only when the candidate's share of errors is above rho0 (the candidate is worse).
sequential_result error_rate_test(std::uint64_t candidate_errors, std::uint64_t stable_errors,
                                  double rho0, double alpha, double kappa = 50);

// How much slower counts as slower: a powerful test finds real but irrelevant differences
// (tens of microseconds between two processes), so a rejection also needs the candidate's
// p50, p90 or p99 above stable's by both margins. Requiring more than the test keeps the
// false-rollback bound.
struct latency_tolerance {
    double ratio = 1.10;          // at least 10 % slower
    double micros = 1000;         // and at least 1 ms slower
};

// Latency distributions: the histograms' fine buckets are grouped into fixed coarse bins of
// `fine_per_coarse` buckets (16: half an octave); the per-bin Bayes factors multiply
// (independent Beta priors: Lindon & Malek's multinomial test). Rejects only when the
// candidate is slower beyond `tolerance`.
sequential_result latency_test(const metrics::latency_histogram& candidate,
                               const metrics::latency_histogram& stable, double rho0,
                               double alpha, latency_tolerance tolerance = {},
                               double kappa = 50, int fine_per_coarse = 16);

}  // namespace stagegate::rollout
