#include "stagegate/server/descriptors.hpp"

#include <gtest/gtest.h>

namespace stagegate::server {
namespace {

TEST(Descriptors, ConnectionsAreCappedToWhatTheLimitHolds) {
    // ulimit -n 1024 and the default 10,000 per worker on 2 workers: a quarter kept back, two
    // descriptors per client connection.
    auto fit = fit_connections(1024, 2, 10000);
    EXPECT_TRUE(fit.capped);
    EXPECT_EQ(fit.reserve, 256u);
    EXPECT_EQ(fit.per_worker, (1024u - 256u) / 2 / 2);
    // Everything a full table would take stays under the limit.
    EXPECT_LE(2u * fit.per_worker * 2 + fit.reserve, 1024u);
    // A large limit leaves the configured number alone, and the reserve stops growing.
    fit = fit_connections(1 << 20, 16, 10000);
    EXPECT_FALSE(fit.capped);
    EXPECT_EQ(fit.per_worker, 10000u);
    EXPECT_EQ(fit.reserve, 1024u);
    // A tiny limit still lets each worker hold a connection; no worker count divides by 0.
    EXPECT_EQ(fit_connections(8, 64, 10000).per_worker, 1u);
    EXPECT_GE(fit_connections(1024, 0, 10000).per_worker, 1u);
}

TEST(Descriptors, TheSoftLimitIsRaisedToTheHardOne) {
    const auto now = raise_descriptor_limit();
    EXPECT_GT(now, 0u);
    EXPECT_EQ(raise_descriptor_limit(), now);  // idempotent
}

}  // namespace
}  // namespace stagegate::server
