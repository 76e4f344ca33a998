// LLM traffic end to end over real sockets, stagegate-mockmodel playing the versions: tokens
// read from usage or counted, streams counted by how they ended (exact, for streams with
// known faults), the figures in /metrics and the model metrics API, and a candidate that
// streams at half stable's rate rolled back by the tokens/s gate while its time to first token
// is stable's.
#include "support/admin.hpp"
#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

namespace stagegate::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

const std::string stream_body = R"({"model":"m","stream":true,"messages":[]})";
const std::string stream_with_usage_body =
    R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]})";

// v1's counts once `ready` holds of them (the worker records an answer after relaying it).
metrics::series_counts v1_counts(app::gateway& gw,
                                 const std::function<bool(const metrics::series_counts&)>& ready) {
    metrics::series_counts counts;
    wait_until([&] {
        for (const auto& m : gw.read_metrics()) {
            if (m.version == "v1") {
                counts = m.since_stage_start;
            }
        }
        return ready(counts);
    });
    return counts;
}

std::uint64_t ended(const metrics::series_counts& c, metrics::stream_outcome o) {
    return c.stream_ends[static_cast<std::size_t>(o)];
}

std::uint64_t all_ended(const metrics::series_counts& c) {
    std::uint64_t n = 0;
    for (auto k : c.stream_ends) {
        n += k;
    }
    return n;
}

// The value of the one /metrics sample whose line contains every fragment; -1 if none.
double sample(const std::string& text, std::initializer_list<std::string> fragments) {
    std::size_t at = 0;
    while (at < text.size()) {
        const auto end = text.find('\n', at);
        const auto line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
        at = end == std::string::npos ? text.size() : end + 1;
        if (line.empty() || line[0] == '#') {
            continue;
        }
        bool all = true;
        for (const auto& f : fragments) {
            all = all && line.find(f) != std::string::npos;
        }
        if (all) {
            return std::stod(line.substr(line.rfind(' ') + 1));
        }
    }
    return -1;
}

TEST(LlmStreams, OutcomesAndTokensAreCountedExactlyForStreamsWithKnownFaults) {
    mockmodel::options llm;
    llm.ttft_ms = 0;
    llm.tokens_per_second = 500;  // 2 ms between tokens
    llm.answer_tokens = 6;
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.models[0].timeouts.stream_idle = 300ms;
    }, {}, llm);
    auto stream = [&](const std::string& body, header_list headers = {}) {
        return request(s.port, "POST", "/v1/chat/completions", body, headers);
    };
    // Known outcomes: 2 completed without usage (6 counted tokens each), 1 with usage (3 in,
    // 6 out), 2 cut by the backend after 3 tokens, 2 error events after 3 tokens, 1 stalled
    // past stream_idle_ms before its first token; and one non-streamed answer (usage 3 / 6).
    EXPECT_EQ(stream(stream_body).status, 200);
    EXPECT_EQ(stream(stream_body).status, 200);
    EXPECT_EQ(stream(stream_with_usage_body).status, 200);
    // A stream cut by the backend or the gateway: its 200 went out, then the chunked body broke
    // off, and the test client reads no whole answer (status 0).
    EXPECT_EQ(stream(stream_body, {{"X-Mock-Stream-Cut", "1"}}).status, 0);
    EXPECT_EQ(stream(stream_body, {{"X-Mock-Stream-Cut", "1"}}).status, 0);
    EXPECT_EQ(stream(stream_body, {{"X-Mock-Stream-Error", "1"}}).status, 200);
    EXPECT_EQ(stream(stream_body, {{"X-Mock-Stream-Error", "1"}}).status, 200);
    EXPECT_EQ(stream(stream_body, {{"X-Mock-Ttft-Ms", "5000"}}).status, 0);
    EXPECT_EQ(stream(R"({"model":"m","messages":[]})").status, 200);

    auto c = v1_counts(*s.gateway, [](const metrics::series_counts& k) {
        return k.requests() >= 9 && all_ended(k) >= 8;
    });
    using o = metrics::stream_outcome;
    EXPECT_EQ(c.requests(), 9u);
    EXPECT_EQ(ended(c, o::completed), 3u);
    EXPECT_EQ(ended(c, o::cut_by_upstream), 2u);
    EXPECT_EQ(ended(c, o::error_event), 2u);
    EXPECT_EQ(ended(c, o::cut_by_idle_timeout), 1u);
    EXPECT_EQ(ended(c, o::cut_by_total_timeout), 0u);
    EXPECT_EQ(ended(c, o::client_gone), 0u);
    // Every cut and error event is a failure of the version, under its 200.
    EXPECT_EQ(c.cut_short, 5u);
    EXPECT_EQ(c.server_errors(), 5u);
    EXPECT_EQ(c.codes[metrics::code_slot(200)], 9u);
    EXPECT_EQ(c.input_tokens, 6u);
    EXPECT_EQ(c.output_tokens[static_cast<std::size_t>(metrics::token_source::usage)], 12u);
    // 2 x 6 completed, 2 x 3 cut, 2 x 3 before the error event.
    EXPECT_EQ(c.output_tokens[static_cast<std::size_t>(metrics::token_source::counted)], 24u);
    // A rate for completed streams only (its value is the gateway's view: a first token read
    // late shortens the span, so no bound on it here; the rollout test compares versions).
    EXPECT_EQ(c.output_tokens_per_second.count(), 3u);
    EXPECT_GT(c.output_tokens_per_second.quantile_micros(0.5), 0);

    // The same figures in /metrics and in the model metrics API.
    const std::string text = api(s.gateway->admin_port(), "GET", "/metrics", "", "").body;
    EXPECT_EQ(sample(text, {"stagegate_stream_outcomes_total{", "version=\"v1\"",
                            "outcome=\"completed\""}),
              3)
        << text;
    EXPECT_EQ(sample(text, {"stagegate_stream_outcomes_total{", "version=\"v1\"",
                            "outcome=\"client_gone\""}),
              0);
    EXPECT_EQ(sample(text, {"stagegate_stream_outcomes_total{", "version=\"v1\"",
                            "outcome=\"cut_by_idle_timeout\""}),
              1);
    EXPECT_EQ(sample(text, {"stagegate_gen_ai_tokens_total{", "version=\"v1\"", "type=\"input\"",
                            "source=\"usage\""}),
              6);
    EXPECT_EQ(sample(text, {"stagegate_gen_ai_tokens_total{", "version=\"v1\"",
                            "type=\"output\"", "source=\"counted\""}),
              24);
    EXPECT_EQ(sample(text, {"stagegate_stream_output_tokens_per_second_count{",
                            "version=\"v1\""}),
              3);
    EXPECT_EQ(sample(text, {"stagegate_responses_cut_short_total{", "version=\"v1\""}), 5);

    auto m = body_of(api(s.gateway->admin_port(), "GET", "/api/v1/models/m/metrics", "", ""));
    json v1;
    json v2;
    for (const auto& v : m["versions"]) {
        (v["version"] == "v1" ? v1 : v2) = v["since_stage_start"];
    }
    ASSERT_TRUE(v1.contains("stream_outcomes")) << m.dump(2);
    EXPECT_EQ(v1["stream_outcomes"]["completed"], 3) << m.dump(2);
    EXPECT_EQ(v1["stream_outcomes"]["error_event"], 2);
    EXPECT_EQ(v1["stream_outcomes"]["cut_by_upstream"], 2);
    EXPECT_GT(v1["time_to_first_token_seconds"]["p99"].get<double>(), 0);
    EXPECT_GT(v1["output_tokens_per_second"]["p50"].get<double>(), 0);
    EXPECT_EQ(v1["tokens"]["output_by"]["usage"], 12);
    // A version without streams shows none.
    EXPECT_FALSE(v2.contains("stream_outcomes")) << m.dump(2);

    // A client that leaves mid-stream: the backend is not to blame.
    {
        connection leaving(s.port);
        ASSERT_TRUE(leaving.write_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                "Content-Type: application/json\r\nX-Mock-Answer-Tokens: 2000\r\n"
                                "Content-Length: " +
                                std::to_string(stream_body.size()) + "\r\n\r\n" + stream_body));
        ASSERT_NE(leaving.read_until("data: ").find("data: "), std::string::npos);
    }  // closed
    auto after = v1_counts(*s.gateway, [](const metrics::series_counts& k) {
        return all_ended(k) >= 9;
    });
    EXPECT_EQ(ended(after, o::client_gone), 1u);
    EXPECT_EQ(after.cut_short, 5u);
    EXPECT_EQ(after.server_errors(), 5u);
}

TEST(LlmStreams, AStreamPastTheTotalCapIsCutByTheTotalTimeoutNotTheIdleOne) {
    mockmodel::options llm;
    llm.tokens_per_second = 500;  // a token every 2 ms: never idle
    auto s = stack::make(0, 1, [](config::gateway& c) {
        c.models[0].timeouts.first_byte = 400ms;
        c.models[0].timeouts.stream_idle = 300ms;
        c.models[0].timeouts.total = 400ms;
    }, {}, llm);
    // 2000 tokens take 4 s: the 400 ms cap cuts it (its 200 went out: no whole answer).
    EXPECT_EQ(request(s.port, "POST", "/v1/chat/completions", stream_body,
                      {{"X-Mock-Answer-Tokens", "2000"}})
                  .status,
              0);
    auto c = v1_counts(*s.gateway, [](const metrics::series_counts& k) {
        return all_ended(k) >= 1;
    });
    EXPECT_EQ(ended(c, metrics::stream_outcome::cut_by_total_timeout), 1u);
    EXPECT_EQ(ended(c, metrics::stream_outcome::cut_by_idle_timeout), 0u);
    EXPECT_EQ(c.cut_short, 1u);
}

// The stack's model with a rollout of v2 at 50 % judged on these gates, every 100 ms.
auto with_rollout(const std::string& state_dir, config::rollout_gates gates) {
    return [=](config::gateway& c) {
        config::rollout r;
        r.candidate = "v2";
        config::rollout_stage half;
        half.weight = 5000;
        half.name = "canary-50";
        half.min_bake = std::chrono::hours(1);
        half.min_requests = 1000000;
        r.stages = {half};
        r.gates = gates;
        r.interval = 100ms;
        c.models[0].rollout_spec = r;
        c.models[0].split.weights = {{"v1", 10000}};
        c.models[0].split.allow_force_version = false;
        c.state_dir = state_dir;
    };
}

TEST(LlmRollout, ACandidateStreamingAtHalfTheTokenRateIsRolledBackWithTheSameFirstToken) {
    temp_dir state;
    config::rollout_gates gates;
    gates.min_requests = 20;
    // Whole answers take longer at half the rate: only the token rate is judged here (with
    // errors), so the test shows that gate catching it.
    gates.sequential_latency = false;
    gates.min_tokens_per_second_ratio = {{0.5, 0.8}};
    gates.max_ttft_ratio = {{0.5, 1.5}};
    // The gates' bounds are anytime-valid: a gate of a candidate within its tolerance fails
    // with probability at most alpha over the gates, so the time to first token gate (equal
    // at the backends) fails first at most 1 in 10^6 runs.
    gates.alpha = 1e-6;
    mockmodel::options stable;
    stable.ttft_ms = 60;
    stable.tokens_per_second = 100;  // 10 tokens: 60 + 90 ms
    stable.answer_tokens = 10;
    stable.threads = 2;
    mockmodel::options candidate = stable;
    candidate.tokens_per_second = 50;  // 60 + 180 ms
    auto s = stack::make(0, 2, with_rollout(state.path, gates), candidate, stable);
    {
        std::atomic<bool> stop{false};
        std::vector<std::thread> clients;
        for (int t = 0; t < 8; ++t) {
            clients.emplace_back([&, t] {
                auto c = std::make_unique<connection>(s.port);
                while (!stop) {
                    // Half the clients ask for usage: the rate is the same either way.
                    auto r = c->request("POST", "/v1/chat/completions",
                                        t % 2 == 0 ? stream_body : stream_with_usage_body);
                    if (r.status == 0) {
                        c = std::make_unique<connection>(s.port);
                    }
                }
            });
        }
        const bool rolled_back = wait_until(
            [&] { return s.gateway->rollout_status("m")["phase"] == "rolled_back"; }, 120s);
        stop = true;
        for (auto& c : clients) {
            c.join();
        }
        ASSERT_TRUE(rolled_back) << s.gateway->rollout_status("m").dump(2);
    }
    auto reason = s.gateway->rollout_status("m")["last_reason"].get<std::string>();
    EXPECT_NE(reason.find("p50 output rate"), std::string::npos) << reason;
    EXPECT_NE(reason.find("slower than allowed"), std::string::npos) << reason;
    // Its first tokens came as early as stable's: the time to first token gate did not fail,
    // its medians within 1.5x of each other (both 60 ms at the backend plus loopback); and
    // the candidate streamed at about half stable's rate.
    const json status = s.gateway->rollout_status("m");
    const auto gate_named = [&](const std::string& name) {
        for (const auto& g : status["gates"]) {
            if (g["gate"] == name) {
                return g;
            }
        }
        return json();
    };
    const auto ttft = gate_named("p50_ttft_vs_stable");
    ASSERT_TRUE(ttft.is_object()) << status.dump(2);
    EXPECT_NE(ttft["verdict"], "fail") << ttft.dump(2);
    EXPECT_LT(ttft["candidate"].get<double>(), ttft["stable"].get<double>() * 1.5) << ttft.dump();
    EXPECT_LT(ttft["stable"].get<double>(), ttft["candidate"].get<double>() * 1.5) << ttft.dump();
    const auto rate = gate_named("p50_tokens_per_second_vs_stable");
    ASSERT_TRUE(rate.is_object());
    EXPECT_EQ(rate["verdict"], "fail");
    EXPECT_LT(rate["candidate"].get<double>(), rate["stable"].get<double>() * 0.7) << rate.dump();
}

}  // namespace
}  // namespace stagegate::test
