#include "stagegate/predictions/drift.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace stagegate::predictions {

namespace {

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
    return std::sqrt(std::log(2 / alpha) / 2 *
                     (1 / static_cast<double>(nc) + 1 / static_cast<double>(ns)));
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
    // Acklam's rational approximation (relative error < 1.2e-9).
    static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                   -2.759285104469687e+02, 1.383577518672690e+02,
                                   -3.066479806614716e+01, 2.506628277459239e+00};
    static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                   -1.556989798598866e+02, 6.680131188771972e+01,
                                   -1.328068155288572e+01};
    static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                   -2.400758277161838e+00, -2.549732539343734e+00,
                                   4.374664141464968e+00, 2.938163982698783e+00};
    static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                   2.445134137142996e+00, 3.754408661907416e+00};
    p = std::clamp(p, 1e-300, 1 - 1e-16);
    constexpr double low = 0.02425;
    if (p < low) {
        const double q = std::sqrt(-2 * std::log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - low) {
        const double q = std::sqrt(-2 * std::log(1 - p));
        return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    const double q = p - 0.5;
    const double r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

double chi_square_quantile(double p, double dof) {
    // Wilson-Hilferty: accurate to a few percent for dof >= 3, conservative enough below.
    const double z = normal_quantile(p);
    const double h = 2 / (9 * dof);
    const double x = dof * std::pow(1 - h + z * std::sqrt(h), 3);
    return std::max(x, 0.0);
}

}  // namespace stagegate::predictions
