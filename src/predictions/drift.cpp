#include "stagegate/predictions/drift.hpp"

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/complement.hpp>
#include <boost/math/distributions/kolmogorov_smirnov.hpp>
#include <boost/math/distributions/normal.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace stagegate::predictions {

namespace {

namespace math = boost::math;

// The gates run on the control thread, which must not throw: a domain error (it cannot
// happen with the arguments clamped below) gives NaN and errno instead of an exception.
namespace policies = boost::math::policies;
using no_throw = policies::policy<policies::domain_error<policies::errno_on_error>,
                                  policies::overflow_error<policies::errno_on_error>,
                                  policies::evaluation_error<policies::errno_on_error>>;

double total(std::span<const std::uint64_t> bins) {
    return static_cast<double>(std::accumulate(bins.begin(), bins.end(), std::uint64_t{0}));
}

}  // namespace

double psi(std::span<const std::uint64_t> candidate, std::span<const std::uint64_t> stable) {
    const std::size_t k = std::min(candidate.size(), stable.size());
    const double nc = total(candidate) + 0.5 * static_cast<double>(k);
    const double ns = total(stable) + 0.5 * static_cast<double>(k);
    double sum = 0;
    for (std::size_t i = 0; i < k; ++i) {
        const double c = (static_cast<double>(candidate[i]) + 0.5) / nc;
        const double s = (static_cast<double>(stable[i]) + 0.5) / ns;
        sum += (c - s) * std::log(c / s);
    }
    return sum;
}

double ks(std::span<const std::uint64_t> candidate, std::span<const std::uint64_t> stable) {
    const std::size_t k = std::min(candidate.size(), stable.size());
    const double nc = total(candidate);
    const double ns = total(stable);
    if (nc == 0 || ns == 0) {
        return 0;
    }
    double fc = 0;
    double fs = 0;
    double gap = 0;
    for (std::size_t i = 0; i < k; ++i) {
        fc += static_cast<double>(candidate[i]) / nc;
        fs += static_cast<double>(stable[i]) / ns;
        gap = std::max(gap, std::fabs(fc - fs));
    }
    return gap;
}

double psi_noise(std::uint64_t nc, std::uint64_t ns, std::size_t bins, double alpha) {
    if (nc == 0 || ns == 0 || bins < 2) {
        return INFINITY;
    }
    const double n_eff = static_cast<double>(nc) * static_cast<double>(ns) /
                         (static_cast<double>(nc) + static_cast<double>(ns));
    return chi_square_quantile(1 - alpha, static_cast<double>(bins - 1)) / n_eff;
}

double ks_noise(std::uint64_t nc, std::uint64_t ns, double alpha) {
    if (nc == 0 || ns == 0) {
        return INFINITY;
    }
    const double n_eff = static_cast<double>(nc) * static_cast<double>(ns) /
                         (static_cast<double>(nc) + static_cast<double>(ns));
    return kolmogorov_upper_quantile(alpha, n_eff);
}

double repeated_alpha(std::uint64_t n, double alpha) {
    const double epoch = 1 + std::floor(std::log2(static_cast<double>(std::max<std::uint64_t>(n, 1))));
    return alpha / (2 * epoch * epoch);
}

double mean_radius(std::uint64_t n, double alpha) {
    if (n == 0) {
        return INFINITY;
    }
    constexpr double variance = 0.25;  // of anything in [0, 1]
    constexpr double rho = 500 * variance;
    const double v = static_cast<double>(n) * variance;
    // Two-sided: alpha / 2 on each side.
    const double a2 = 2 * std::log(2 / alpha);
    return std::sqrt((v + rho) * (std::log((v + rho) / rho) + a2)) / static_cast<double>(n);
}

double normal_quantile(double p) {
    p = std::clamp(p, 1e-300, 1 - 1e-16);
    return quantile(math::normal_distribution<double, no_throw>(), p);
}

double chi_square_quantile(double p, double dof) {
    if (!(dof > 0)) {
        return 0;
    }
    p = std::clamp(p, 0.0, 1 - 1e-16);
    return quantile(math::chi_squared_distribution<double, no_throw>(dof), p);
}

double kolmogorov_upper_quantile(double alpha, double n) {
    if (!(n > 0)) {
        return INFINITY;
    }
    alpha = std::clamp(alpha, 1e-300, 1.0);
    return quantile(complement(math::kolmogorov_smirnov_distribution<double, no_throw>(n), alpha));
}

}  // namespace stagegate::predictions
