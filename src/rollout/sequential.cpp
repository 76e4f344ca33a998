#include "stagegate/rollout/sequential.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace stagegate::rollout {

namespace {

double log_beta(double a, double b) { return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b); }

sequential_result finish(double log_bf, bool candidate_worse, double alpha, std::uint64_t x,
                         std::uint64_t y) {
    sequential_result r;
    r.log_bayes_factor = log_bf;
    r.p_value = std::min(1.0, std::exp(-log_bf));
    r.reject = candidate_worse && log_bf >= std::log(1.0 / alpha);
    r.candidate_events = x;
    r.stable_events = y;
    return r;
}

}  // namespace

double log_bayes_factor(std::uint64_t x, std::uint64_t y, double rho0, double kappa) {
    if (x + y == 0 || rho0 <= 0 || rho0 >= 1) {
        return 0;  // no events, or a degenerate split: no evidence either way
    }
    const double a = kappa * rho0;
    const double b = kappa * (1 - rho0);
    const double dx = static_cast<double>(x);
    const double dy = static_cast<double>(y);
    return log_beta(a + dx, b + dy) - log_beta(a, b) - dx * std::log(rho0) -
           dy * std::log(1 - rho0);
}

sequential_result error_rate_test(std::uint64_t candidate_errors, std::uint64_t stable_errors,
                                  double rho0, double alpha, double kappa) {
    const double total = static_cast<double>(candidate_errors + stable_errors);
    const bool worse = total > 0 && static_cast<double>(candidate_errors) / total > rho0;
    return finish(log_bayes_factor(candidate_errors, stable_errors, rho0, kappa), worse, alpha,
                  candidate_errors, stable_errors);
}

sequential_result latency_test(const metrics::latency_histogram& candidate,
                               const metrics::latency_histogram& stable, double rho0,
                               double alpha, latency_tolerance tolerance, double kappa,
                               int fine_per_coarse) {
    // The bins must not depend on the data: a partition chosen after looking would turn the
    // Bayes factor into a maximum over partitions and void the alpha guarantee. Groups of
    // `fine_per_coarse` consecutive fine buckets are fixed (16 = half an octave).
    using h = metrics::latency_histogram;
    const auto group = static_cast<std::size_t>(std::max(1, fine_per_coarse));
    double log_bf = 0;
    for (std::size_t start = 0; start < h::bucket_count; start += group) {
        std::uint64_t x = 0;
        std::uint64_t y = 0;
        for (std::size_t i = start; i < std::min(start + group, h::bucket_count); ++i) {
            x += candidate.bucket(i);
            y += stable.bucket(i);
        }
        log_bf += log_bayes_factor(x, y, rho0, kappa);
    }
    auto beyond = [&](double q) {
        const double c = candidate.quantile_micros(q);
        const double s = stable.quantile_micros(q);
        return c > s * tolerance.ratio && c - s > tolerance.micros;
    };
    const bool slower = candidate.count() > 0 && stable.count() > 0 &&
                        (beyond(0.5) || beyond(0.9) || beyond(0.99));
    return finish(log_bf, slower, alpha, candidate.count(), stable.count());
}

}  // namespace stagegate::rollout
