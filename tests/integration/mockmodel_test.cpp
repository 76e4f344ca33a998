// stagegate-mockmodel's users with error propensities of their own (#18's live sticky A/A):
// the propensity is a fixed function of the user's id with mean 1, and a real mock process
// fails a user's requests at error_rate x that propensity.
#include "stagegate/mockmodel/mock_model.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace stagegate::test {
namespace {

// Over 20,000 ids the propensities look like a lognormal with shape 1 and mean 1: the mean
// within 5 standard errors (its variance is e - 1, so 5 x 0.0093; about 1 in 3.5 million for
// a true lognormal, and the ids are fixed, so the outcome is too), the median near
// exp(-1/2) and the share above 1 near P(z > 1/2) = 0.309.
TEST(MockModel, UserErrorPropensitiesAreLognormalWithMeanOneAndFixedPerUser) {
    constexpr int users = 20000;
    std::vector<double> p;
    double sum = 0;
    for (int u = 0; u < users; ++u) {
        const std::string id = "user-" + std::to_string(u);
        p.push_back(mockmodel::user_error_propensity(id, 1.0));
        ASSERT_EQ(p.back(), mockmodel::user_error_propensity(id, 1.0)) << id;
        sum += p.back();
    }
    EXPECT_NEAR(sum / users, 1.0, 5 * std::sqrt((std::exp(1.0) - 1) / users));
    std::nth_element(p.begin(), p.begin() + users / 2, p.end());
    EXPECT_NEAR(p[users / 2], std::exp(-0.5), 0.03);
    const auto above = std::count_if(p.begin(), p.end(), [](double x) { return x > 1; });
    EXPECT_NEAR(static_cast<double>(above) / users, 0.3085, 0.02);
    EXPECT_EQ(mockmodel::user_error_propensity("user-1", 0.0), 1.0);
}

// A flaky user (propensity above 5) fails most of the time at a 15 % error rate, a steady
// one (below 0.1) almost never, through a real mock over loopback. Flake bounds: at least
// 0.75 per request, 200 requests, fewer than 100 failures is below 1e-12; at most 0.015,
// 20 or more failures is below 1e-9.
TEST(MockModel, ARequestFailsAtTheErrorRateTimesItsUsersPropensity) {
    std::string flaky;
    std::string steady;
    for (int u = 0; flaky.empty() || steady.empty(); ++u) {
        const std::string id = "user-" + std::to_string(u);
        const double p = mockmodel::user_error_propensity(id, 1.0);
        if (flaky.empty() && p > 5) {
            flaky = id;
        } else if (steady.empty() && p < 0.1) {
            steady = id;
        }
    }
    mockmodel::options o;
    o.error_rate = 0.15;
    o.error_status = 503;
    o.user_error_spread = 1.0;
    o.seed = 11;
    mockmodel::server mock(o);
    ASSERT_TRUE(mock.start());
    const std::string body = R"({"instances": [[1.0, 2.0]]})";
    auto failures = [&](const std::string& user) {
        connection c(mock.port());
        int failed = 0;
        for (int i = 0; i < 200; ++i) {
            const auto r = c.request("POST", "/v1/models/m:predict", body, {{"X-User-Id", user}});
            EXPECT_TRUE(r.status == 200 || r.status == 503) << r.status << " " << r.error;
            failed += r.status == 503 ? 1 : 0;
        }
        return failed;
    };
    EXPECT_GE(failures(flaky), 100) << flaky;
    EXPECT_LT(failures(steady), 20) << steady;
    mock.stop();
}

}  // namespace
}  // namespace stagegate::test
