// predictions/drift: comparing two versions' predictions, with bounds that say when a
// difference is more than noise.
// Owns: the population stability index and the Kolmogorov-Smirnov distance of two binned
// distributions, the noise each has at a given sample size, and an anytime-valid confidence
// radius for a mean in [0, 1] (agreement and accuracy rates).
// Must not touch: clocks, threads, I/O. Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace stagegate::predictions {

// PSI = sum (c_i - s_i) ln(c_i / s_i) over bin shares, each bin's count smoothed by +0.5 so
// an empty bin does not make it infinite.
double psi(std::span<const std::uint64_t> candidate, std::span<const std::uint64_t> stable);

// The largest gap between the two cumulative bin shares (bins in value order).
double ks(std::span<const std::uint64_t> candidate, std::span<const std::uint64_t> stable);

// What PSI reaches by chance alone with probability `alpha`: two samples of one distribution
// over k bins give n_eff * PSI ~ chi-square(k - 1), n_eff = nc ns / (nc + ns).
double psi_noise(std::uint64_t nc, std::uint64_t ns, std::size_t bins, double alpha);

// The same for KS: the Kolmogorov distribution's upper alpha quantile at n_eff (the two-sample
// statistic's limit). For the small alphas the gates use it equals the Dvoretzky-Kiefer-
// Wolfowitz bound sqrt(ln(2 / alpha) / (2 n_eff)) to many digits.
double ks_noise(std::uint64_t nc, std::uint64_t ns, double alpha);

// The level to use for a sample of n when the gate is looked at again and again: alpha spent
// over doubling sample sizes (alpha / (2 (1 + log2 n)^2) at n), so that the chance of a false
// failure over all looks stays near alpha.
double repeated_alpha(std::uint64_t n, double alpha);

// A radius r such that, with probability at least 1 - alpha, |mean_n - mean| <= r holds for
// every n at once (a normal-mixture confidence sequence for 1/4-sub-Gaussian increments,
// Robbins 1970 / Howard et al. 2021), tuned to be tightest near n = 500.
double mean_radius(std::uint64_t n, double alpha);

// Quantiles used above: the exact distributions' (Boost.Math), not approximations.
double normal_quantile(double p);
double chi_square_quantile(double p, double dof);
// x with P(D > x) = alpha for D of Kolmogorov's limiting distribution at n observations.
double kolmogorov_upper_quantile(double alpha, double n);

}  // namespace stagegate::predictions
