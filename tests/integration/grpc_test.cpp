// gRPC through the gateway with real clients and servers nobody here wrote: @grpc/grpc-js
// (tests/clients, pinned) calling the KServe v2 / Triton inference service, and grpc-js
// servers playing v1 and v2 behind the gateway's HTTP/2 upstreams (h2c, and h2 over TLS). What an application
// sees (answers, status codes, response metadata), what the gateway counts (a grpc-status in
// the trailers is the call's outcome), and what the rollout controller decides on it.
#include "support/admin.hpp"
#include "support/node_process.hpp"
#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace stagegate::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

const std::string grpc_dir = std::string(STAGEGATE_SOURCE_DIR) + "/tests/clients/grpc";

// One grpc-js model server (backend.mjs) playing `version`.
struct grpc_backend {
    temp_dir dir;
    std::unique_ptr<node_process> process;
    std::uint16_t port = 0;

    // `max_connection_age_ms`: each connection gets a GOAWAY once that old (grpc's
    // MAX_CONNECTION_AGE), 0 for never.
    // `latency_ms`: each ModelInfer answers that late.
    // `tls`: serves HTTP/2 over TLS with that certificate (ALPN "h2"), else h2c.
    // `client_ca`: with `tls`, only clients presenting a certificate it signed (mutual TLS).
    explicit grpc_backend(const std::string& version, int unavailable_every = 0,
                          int max_connection_age_ms = 0, int latency_ms = 0,
                          const test_certificate* tls = nullptr,
                          const test_certificate* client_ca = nullptr) {
        const std::string port_file = dir.path + "/port";
        std::vector<std::string> args{
            grpc_dir + "/backend.mjs", "--version", version, "--port-file", port_file,
            "--unavailable-every", std::to_string(unavailable_every), "--max-connection-age-ms",
            std::to_string(max_connection_age_ms), "--latency-ms", std::to_string(latency_ms),
            "--cancel-file", dir.path + "/cancelled"};
        if (tls) {
            args.insert(args.end(), {"--cert", tls->cert_file, "--key", tls->key_file});
        }
        if (client_ca) {
            args.insert(args.end(), {"--client-ca", client_ca->cert_file});
        }
        process = std::make_unique<node_process>(args);
        port = read_port_file(port_file);
    }
};

// Runs client.mjs to its end and parses its last line.
json run_client(std::uint16_t port, const std::vector<std::string>& args) {
    std::vector<std::string> all{grpc_dir + "/client.mjs", "127.0.0.1:" + std::to_string(port)};
    all.insert(all.end(), args.begin(), args.end());
    node_process client(all);
    std::string out = client.finish();
    while (!out.empty() && out.back() == '\n') {
        out.pop_back();
    }
    return json::parse(out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1),
                       nullptr, false);
}

class GrpcJs : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access((std::string(STAGEGATE_SOURCE_DIR) +
                            "/tests/clients/node_modules/@grpc/grpc-js/package.json")
                               .c_str(),
                           R_OK),
                  0)
            << "@grpc/grpc-js is missing: scripts/install-deps.sh installs it (npm ci in "
               "tests/clients)";
    }
};

std::string read_file(const std::string& path) {
    std::string out;
    if (FILE* f = std::fopen(path.c_str(), "r")) {
        char buf[256];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) {
            out.append(buf, n);
        }
        std::fclose(f);
    }
    return out;
}

std::uint64_t count_of(const json& counts, const std::string& key) {
    return counts.contains(key) ? counts[key].get<std::uint64_t>() : 0;
}

// The counts of v1 and v2 once the gateway has recorded `calls` calls in all (false, with
// what it had, when it has not within the deadline): its workers record after answering.
bool counted(app::gateway& gw, std::uint64_t calls, metrics::series_counts& c1,
             metrics::series_counts& c2) {
    return wait_until([&] {
        for (const auto& m : gw.read_metrics()) {
            (m.version == "v1" ? c1 : c2) = m.since_stage_start;
        }
        return c1.requests() + c2.requests() == calls;
    });
}

TEST_F(GrpcJs, ServerAndModelCallsReachTheRightVersionAndRefusalsAreGrpcStatuses) {
    grpc_backend v1("v1");
    grpc_backend v2("v2");
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    auto cfg = h2c_stack_config(v1.port, v2.port, 10000);  // every model call to v2
    cfg.grpc.model_header = "x-model-name";
    app::gateway gw(std::move(cfg));
    ASSERT_TRUE(gw.start());
    const auto seen = run_client(gw.ports()[0], {"tour"});
    ASSERT_TRUE(seen.is_object()) << seen;
    EXPECT_EQ(seen["live"], true) << seen;  // ServerLive: about the server, to stable
    EXPECT_EQ(seen["ready"], true);
    EXPECT_EQ(seen["model_ready"], true);
    EXPECT_EQ(seen["infer"]["code"], 0) << seen;
    EXPECT_EQ(seen["infer"]["version"], "v2");
    EXPECT_EQ(seen["infer"]["id"], "req-1");
    EXPECT_EQ(seen["infer"]["sum"], 6.5);
    // The stamps arrive as response metadata, as for HTTP.
    EXPECT_EQ(seen["infer"]["header_version"], "v2");
    EXPECT_EQ(seen["infer"]["header_stage"], "canary");
    // The gateway's own refusals are trailers-only answers with a gRPC status and message.
    EXPECT_EQ(seen["unknown"]["code"], 5) << seen;  // NOT_FOUND
    EXPECT_EQ(seen["unknown"]["details"], "no model named \"nosuch\" is served here");
    EXPECT_EQ(seen["unnamed"]["code"], 3) << seen;  // INVALID_ARGUMENT
    EXPECT_NE(seen["unnamed"]["details"].get<std::string>().find("names no model"),
              std::string::npos);
    // A service the gateway does not read is routed by the configured metadata, split as any
    // call of its model; without the metadata, UNIMPLEMENTED says which would route it.
    EXPECT_EQ(seen["other"]["code"], 0) << seen;
    EXPECT_EQ(seen["other"]["version"], "v2") << seen;
    EXPECT_EQ(seen["other_unnamed"]["code"], 12) << seen;
    EXPECT_NE(seen["other_unnamed"]["details"].get<std::string>().find("\"x-model-name\""),
              std::string::npos)
        << seen;
}

TEST_F(GrpcJs, ThousandCallsOnOneConnectionAreSplitByWeightAndCountedExactly) {
    grpc_backend v1("v1");
    grpc_backend v2("v2", 10);  // every 10th of v2's calls: UNAVAILABLE in the trailers
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    app::gateway gw(h2c_stack_config(v1.port, v2.port, 5000));
    ASSERT_TRUE(gw.start());
    const auto seen = run_client(gw.ports()[0], {"load", "1000"});
    ASSERT_TRUE(seen.is_object()) << seen;
    const auto ok = count_of(seen["codes"], "0");
    const auto unavailable = count_of(seen["codes"], "14");
    ASSERT_EQ(ok + unavailable, 1000u) << seen;
    const auto v2_calls = count_of(seen["versions"], "v2") + unavailable;
    // Binomial(1000, 0.5): outside [405, 595] with probability below 1 in 10^8.
    EXPECT_GE(v2_calls, 405u) << seen;
    EXPECT_LE(v2_calls, 595u) << seen;
    EXPECT_EQ(unavailable, v2_calls / 10) << seen;  // every 10th, exactly

    // The gateway counted every call under its version, a 200 carrying UNAVAILABLE as 503.
    metrics::series_counts c1;
    metrics::series_counts c2;
    ASSERT_TRUE(counted(gw, 1000, c1, c2)) << c1.requests() << " + " << c2.requests();
    EXPECT_EQ(c2.requests(), v2_calls);
    EXPECT_EQ(c2.codes[metrics::code_slot(503)], unavailable);
    EXPECT_EQ(c2.server_errors(), unavailable);
    EXPECT_EQ(c1.server_errors(), 0u);
    // All of it over one connection per backend, now idle (the gauges are read per interval).
    std::string text;
    EXPECT_TRUE(wait_until([&] {
        text = api(gw.admin_port(), "GET", "/metrics", "", "").body;
        return text.find(R"(stagegate_upstream_connections{model="m",version="v1",state="idle"} 1)") !=
                   std::string::npos &&
               text.find(R"(stagegate_upstream_connections{model="m",version="v2",state="idle"} 1)") !=
                   std::string::npos;
    })) << text.substr(text.find("stagegate_upstream_connections{"), 400);
    // The gRPC codes the clients got, as go-grpc-prometheus labels them.
    EXPECT_NE(text.find("stagegate_grpc_calls_total{model=\"m\",version=\"v2\",stage=\"canary\","
                        "grpc_code=\"Unavailable\"} " + std::to_string(unavailable) + "\n"),
              std::string::npos)
        << text.substr(text.find("stagegate_grpc_calls_total"), 600);
    EXPECT_NE(text.find("stagegate_grpc_calls_total{model=\"m\",version=\"v1\",stage=\"canary\","
                        "grpc_code=\"OK\"} " + std::to_string(count_of(seen["versions"], "v1")) +
                        "\n"),
              std::string::npos);
}

TEST_F(GrpcJs, BackendsSendingGoawayMidLoadLoseNoCall) {
    // Both backends end every connection with a GOAWAY after 100-200 ms: calls already on it
    // finish there, streams the gateway opened after the backend's last one are refused
    // unprocessed and go out again on a new connection. No call may fail for it.
    grpc_backend v1("v1", 0, 100);
    grpc_backend v2("v2", 0, 150);
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    app::gateway gw(h2c_stack_config(v1.port, v2.port, 5000));
    ASSERT_TRUE(gw.start());
    // Until the gateway has had to reconnect a few times (bounded: 10 rounds of 500 calls).
    for (int round = 0; round < 10 && gw.totals().upstream_connects < 6; ++round) {
        const auto seen = run_client(gw.ports()[0], {"load", "500"});
        ASSERT_TRUE(seen.is_object()) << seen;
        ASSERT_EQ(count_of(seen["codes"], "0"), 500u) << "round " << round << ": " << seen;
    }
    EXPECT_GE(gw.totals().upstream_connects, 6u);
    EXPECT_EQ(gw.totals().upstream_connect_failures, 0u);
}

TEST_F(GrpcJs, ACallTheClientCancelsIsCancelledAtTheBackendAtOnce) {
    // The backend would answer after 5 s; each client cancels after 300 ms (RST_STREAM), and
    // the gateway resets the backend's stream then, so the model server stops working on an
    // answer nobody reads (no grpc-timeout is sent: only the gateway's reset can tell it).
    grpc_backend v1("v1", 0, 0, 5000);
    grpc_backend v2("v2");
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    app::gateway gw(h2c_stack_config(v1.port, v2.port, 0));
    ASSERT_TRUE(gw.start());
    const auto seen = run_client(gw.ports()[0], {"cancel", "10"});
    ASSERT_TRUE(seen.is_object()) << seen;
    EXPECT_EQ(count_of(seen["codes"], "1"), 10u) << seen;  // CANCELLED, as the client asked
    std::string cancelled;
    EXPECT_TRUE(wait_until([&] {
        cancelled = read_file(v1.dir.path + "/cancelled");
        return cancelled == "10\n";
    }, 4s)) << "the backend saw " << cancelled << " cancellations";
    // Recorded as the client's doing (nginx's 499), not as the version's failure.
    metrics::series_counts c1;
    ASSERT_TRUE(wait_until([&] {
        for (const auto& m : gw.read_metrics()) {
            if (m.version == "v1") {
                c1 = m.since_stage_start;
            }
        }
        return c1.requests() == 10;
    }));
    EXPECT_EQ(c1.codes[metrics::code_slot(499)], 10u);
    EXPECT_EQ(c1.server_errors(), 0u);
}

TEST_F(GrpcJs, StreamingCallsFlowMessageByMessageBothWaysOnOneVersion) {
    // Triton's ModelStreamInfer: requests and answers interleave on one call. The client sends
    // each message only once the last one's answer came back, so a gateway that held the
    // request (or the answer) until the stream's end would stall every call until its deadline.
    grpc_backend v1("v1");
    grpc_backend v2("v2");
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    app::gateway gw(h2c_stack_config(v1.port, v2.port, 5000));
    ASSERT_TRUE(gw.start());
    const auto seen = run_client(gw.ports()[0], {"stream", "32", "4", "3"});
    ASSERT_TRUE(seen.is_object()) << seen;
    EXPECT_EQ(count_of(seen["codes"], "0"), 32u) << seen;
    EXPECT_EQ(seen["answers"], 128) << seen;
    EXPECT_EQ(seen["in_order"], true) << seen;
    EXPECT_EQ(seen["sums_ok"], true) << seen;
    EXPECT_EQ(seen["mixed"], 0) << seen;  // a call is routed once, by its first message
    // 32 calls split 50/50: all on one version with probability 2^-31.
    EXPECT_GT(count_of(seen["versions"], "v1"), 0u) << seen;
    EXPECT_GT(count_of(seen["versions"], "v2"), 0u) << seen;

    // 1.5 MiB written at once: more than the client's stream window at the gateway (1 MiB)
    // and many times the backend's (64 KiB), so both fill and reopen as the backend reads.
    const auto upload = run_client(gw.ports()[0], {"upload", "24", "16384"});
    EXPECT_EQ(upload["code"], 0) << upload;
    EXPECT_EQ(upload["answers"], 24) << upload;
    EXPECT_EQ(upload["in_order"], true) << upload;
    EXPECT_EQ(upload["sums_ok"], true) << upload;

    // A stream the backend ends with UNAVAILABLE after two answers: the client gets both and
    // the status; the call counts as its version's failure.
    const auto failed = run_client(gw.ports()[0], {"stream", "1", "3", "1", "2"});
    EXPECT_EQ(count_of(failed["codes"], "14"), 1u) << failed;
    EXPECT_EQ(failed["answers"], 2) << failed;
    metrics::series_counts c1;
    metrics::series_counts c2;
    ASSERT_TRUE(counted(gw, 34, c1, c2)) << c1.requests() << " + " << c2.requests();
    EXPECT_EQ(c1.server_errors() + c2.server_errors(), 1u);
    EXPECT_EQ(c1.codes[metrics::code_slot(503)] + c2.codes[metrics::code_slot(503)], 1u);
    // Each stream's answer messages are its events, timed as an LLM stream's tokens
    // (stagegate_stream_time_to_first_token_seconds and time per output token).
    EXPECT_EQ(c1.streams + c2.streams, 34u);
    EXPECT_EQ(c1.stream_events + c2.stream_events, 128u + 24u + 2u);

    // A client that takes 1.5 s over its messages, with a first-byte timeout of 400 ms: the
    // backend answers only once the request has ended, and the timeout counts from there.
    auto slow_cfg = h2c_stack_config(v1.port, v2.port, 0);
    slow_cfg.models[0].timeouts.first_byte = 400ms;
    app::gateway slow_gw(std::move(slow_cfg));
    ASSERT_TRUE(slow_gw.start());
    const auto slow = run_client(slow_gw.ports()[0], {"slow", "6", "250"});
    EXPECT_EQ(slow["code"], 0) << slow;
    EXPECT_EQ(slow["answers"], 6) << slow;

    // A version reached over HTTP/1.1 cannot carry one: a clear UNIMPLEMENTED, not a hang.
    auto h1 = h2c_stack_config(v1.port, v2.port, 0);
    h1.models[0].versions[0].protocol = config::upstream_protocol::http1;
    app::gateway gw1(std::move(h1));
    ASSERT_TRUE(gw1.start());
    const auto refused = run_client(gw1.ports()[0], {"stream", "1", "2", "1"});
    EXPECT_EQ(count_of(refused["codes"], "12"), 1u) << refused;
    EXPECT_NE(refused.dump().find("h2c"), std::string::npos) << refused;
}

TEST_F(GrpcJs, ACallOfAServiceTheGatewayDoesNotParseStreamsFromItsHeaders) {
    // /test.Echo/Chat is routed by its x-model-name metadata, not by a message. Its server
    // speaks first and each client sends nothing before that greeting, then one message per
    // answer: a gateway that waited for a first message (as for ModelStreamInfer) or for the
    // request's end would stall every call until its deadline.
    grpc_backend v1("v1");
    grpc_backend v2("v2");
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    auto cfg = h2c_stack_config(v1.port, v2.port, 5000);
    cfg.grpc.model_header = "x-model-name";
    app::gateway gw(std::move(cfg));
    ASSERT_TRUE(gw.start());
    const auto seen = run_client(gw.ports()[0], {"chat", "24", "3"});
    ASSERT_TRUE(seen.is_object()) << seen;
    EXPECT_EQ(count_of(seen["codes"], "0"), 24u) << seen;
    EXPECT_EQ(seen["answers"], 72) << seen;
    EXPECT_EQ(seen["in_order"], true) << seen;
    // 24 calls split 50/50: all on one version with probability 2^-23.
    EXPECT_GT(count_of(seen["versions"], "v1"), 0u) << seen;
    EXPECT_GT(count_of(seen["versions"], "v2"), 0u) << seen;
    // Counted as streams, the greeting and the three answers their events.
    metrics::series_counts c1;
    metrics::series_counts c2;
    ASSERT_TRUE(counted(gw, 24, c1, c2)) << c1.requests() << " + " << c2.requests();
    EXPECT_EQ(c1.requests(), count_of(seen["versions"], "v1"));
    EXPECT_EQ(c1.server_errors() + c2.server_errors(), 0u);
    EXPECT_EQ(c1.streams + c2.streams, 24u);
    EXPECT_EQ(c1.stream_events + c2.stream_events, 96u);
}

TEST_F(GrpcJs, BackendsOverTlsSelectH2ByAlpnAndCarryEveryKindOfCall) {
    // "protocol": "h2": HTTP/2 over TLS, the certificate verified against the version's CA and
    // name, as an "http1" version's "tls" is. v2 ends each connection with a GOAWAY after
    // 100 ms, so later calls go out on new TLS connections.
    const auto cert = make_test_certificate();
    grpc_backend v1("v1", 0, 0, 0, &cert);
    grpc_backend v2("v2", 0, 100, 0, &cert);
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    auto over_tls = [&](std::uint16_t p1, std::uint16_t p2) {
        auto cfg = h2c_stack_config(p1, p2, 10000);  // every model call to v2; the server's to v1
        for (auto& v : cfg.models[0].versions) {
            v.protocol = config::upstream_protocol::h2;
            v.tls = config::upstream_tls{.ca_file = cert.cert_file, .server_name = "localhost"};
        }
        return cfg;
    };
    app::gateway gw(over_tls(v1.port, v2.port));
    ASSERT_TRUE(gw.start());
    const auto seen = run_client(gw.ports()[0], {"tour"});
    ASSERT_TRUE(seen.is_object()) << seen;
    EXPECT_EQ(seen["live"], true) << seen;
    EXPECT_EQ(seen["infer"]["code"], 0) << seen;
    EXPECT_EQ(seen["infer"]["version"], "v2");
    EXPECT_EQ(seen["infer"]["sum"], 6.5);
    EXPECT_EQ(seen["infer"]["header_version"], "v2");
    const auto streamed = run_client(gw.ports()[0], {"stream", "4", "3", "2"});
    EXPECT_EQ(count_of(streamed["codes"], "0"), 4u) << streamed;
    EXPECT_EQ(streamed["answers"], 12) << streamed;
    EXPECT_EQ(streamed["in_order"], true) << streamed;
    // v2's first connection got its GOAWAY before the streams (a client process starts in
    // more than 100 ms), which went out on a new one: v1's, v2's two. Else load until then.
    for (int round = 0; round < 5 && gw.totals().upstream_connects < 3; ++round) {
        const auto load = run_client(gw.ports()[0], {"load", "200"});
        ASSERT_EQ(count_of(load["codes"], "0"), 200u) << "round " << round << ": " << load;
    }
    EXPECT_GE(gw.totals().upstream_connects, 3u);
    EXPECT_EQ(gw.totals().upstream_connect_failures, 0u);

    // A backend serving HTTP/1.1 over TLS only (its handshake selects no ALPN protocol): a
    // clear UNAVAILABLE naming the cause, counted against the version as a connect failure.
    mockmodel::options http1_tls;
    http1_tls.cert_file = cert.cert_file;
    http1_tls.key_file = cert.key_file;
    auto http1_only = start_mock("v2", http1_tls);
    app::gateway wrong(over_tls(v1.port, http1_only->port()));
    ASSERT_TRUE(wrong.start());
    const auto refused = run_client(wrong.ports()[0], {"load", "3"});
    EXPECT_EQ(count_of(refused["codes"], "14"), 3u) << refused;
    EXPECT_NE(refused["details"].dump().find("did not select HTTP/2 by ALPN"), std::string::npos)
        << refused;
    metrics::series_counts c1;
    metrics::series_counts c2;
    ASSERT_TRUE(counted(wrong, 3, c1, c2)) << c1.requests() << " + " << c2.requests();
    EXPECT_EQ(c2.codes[metrics::code_slot(502)], 3u);
    EXPECT_EQ(c2.upstream_failures[static_cast<std::size_t>(metrics::upstream_failure::connect)],
              3u);
}

// A rollout of v2 whose traffic is gRPC calls from grpc-js.
config::gateway grpc_rollout(std::uint16_t v1, std::uint16_t v2, const std::string& state_dir) {
    auto cfg = h2c_stack_config(v1, v2, 0);
    config::rollout r;
    r.candidate = "v2";
    config::rollout_stage s;
    s.weight = 5000;
    s.name = "canary-50";
    s.min_bake = 1s;
    s.min_requests = 200;
    r.stages = {s};
    r.gates.min_requests = 200;
    r.gates.max_error_rate_delta = 0.02;
    // Two node processes on a loaded machine differ in latency for real: this is about errors.
    r.gates.sequential_latency = false;
    r.interval = 100ms;
    cfg.models[0].rollout_spec = r;
    cfg.models[0].split.weights = {{"v1", 10000}};
    cfg.state_dir = state_dir;
    return cfg;
}

// A rollout of v2 (whose backend fails every `unavailable_every`th call, 0 for never) under
// grpc-js traffic until its phase is `phase`; what the client saw.
json rollout_until(const std::string& phase, int unavailable_every) {
    temp_dir state;
    grpc_backend v1("v1");
    grpc_backend v2("v2", unavailable_every);
    EXPECT_NE(v1.port, 0);
    EXPECT_NE(v2.port, 0);
    app::gateway gw(grpc_rollout(v1.port, v2.port, state.path));
    EXPECT_TRUE(gw.start());
    node_process traffic({grpc_dir + "/client.mjs",
                          "127.0.0.1:" + std::to_string(gw.ports()[0]), "flood"});
    EXPECT_TRUE(wait_until([&] { return gw.rollout_status("m")["phase"] == phase; }, 90s))
        << gw.rollout_status("m").dump(2);
    if (phase == "rolled_back") {
        EXPECT_NE(gw.rollout_status("m")["last_reason"].get<std::string>().find("error rate"),
                  std::string::npos)
            << gw.rollout_status("m").dump(2);
    }
    return json::parse(traffic.finish(), nullptr, false);
}

TEST_F(GrpcJs, BackendsRequiringAClientCertificateGetTheVersionsOne) {
    // Mutual TLS with grpc-js's server: it asks for a client certificate and verifies it.
    const auto cert = make_test_certificate();
    const auto client_cert = make_test_certificate();
    grpc_backend v1("v1", 0, 0, 0, &cert, &client_cert);
    grpc_backend v2("v2", 0, 0, 0, &cert, &client_cert);
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    auto with_client_cert = [&](const std::string& cert_file, const std::string& key_file) {
        auto cfg = h2c_stack_config(v1.port, v2.port, 10000);
        for (auto& v : cfg.models[0].versions) {
            v.protocol = config::upstream_protocol::h2;
            v.tls = config::upstream_tls{.ca_file = cert.cert_file,
                                         .server_name = "localhost",
                                         .cert_file = cert_file,
                                         .key_file = key_file};
        }
        return cfg;
    };
    app::gateway gw(with_client_cert(client_cert.cert_file, client_cert.key_file));
    ASSERT_TRUE(gw.start());
    const auto seen = run_client(gw.ports()[0], {"load", "20"});
    EXPECT_EQ(count_of(seen["codes"], "0"), 20u) << seen;
    EXPECT_EQ(count_of(seen["versions"], "v2"), 20u) << seen;

    // No client certificate: the backend ends the handshake, and each call fails UNAVAILABLE.
    app::gateway without(with_client_cert("", ""));
    ASSERT_TRUE(without.start());
    const auto refused = run_client(without.ports()[0], {"load", "3"});
    EXPECT_EQ(count_of(refused["codes"], "14"), 3u) << refused;
}

// A shadow stage mirrors unary calls to a candidate served over HTTP/2: each copy reaches the
// candidate as a well-formed gRPC call (grpc-js answers it OK) and is counted as the
// candidate's shadow traffic, its gRPC status too, while every client gets stable's answer.
TEST_F(GrpcJs, AShadowStageMirrorsUnaryCallsToACandidateOverHttp2) {
    temp_dir state;
    grpc_backend v1("v1");
    grpc_backend v2("v2");
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    auto cfg = grpc_rollout(v1.port, v2.port, state.path);
    auto& shadow = cfg.models[0].rollout_spec->stages[0];
    shadow.name = "shadow";
    shadow.weight = 0;
    shadow.mirror = 10000;
    shadow.min_bake = 1h;  // stays in shadow for the test
    app::gateway gw(std::move(cfg));
    ASSERT_TRUE(gw.start());
    // 100 calls at once: within the mirror's room (32 in flight, 256 waiting), none dropped.
    const auto seen = run_client(gw.ports()[0], {"load", "100"});
    ASSERT_TRUE(seen.is_object()) << seen;
    EXPECT_EQ(count_of(seen["codes"], "0"), 100u) << seen;
    EXPECT_EQ(count_of(seen["versions"], "v1"), 100u) << seen;
    std::string text;
    EXPECT_TRUE(wait_until([&] {
        text = api(gw.admin_port(), "GET", "/metrics", "", "").body;
        return text.find("stagegate_requests_total{model=\"m\",version=\"v2\","
                         "stage=\"shadow/mirror\",code=\"200\"} 100\n") != std::string::npos &&
               text.find("stagegate_grpc_calls_total{model=\"m\",version=\"v2\","
                         "stage=\"shadow/mirror\",grpc_code=\"OK\"} 100\n") != std::string::npos;
    })) << text;
}

TEST_F(GrpcJs, CandidateAnsweringUnavailableOnFivePercentOfCallsIsRolledBack) {
    const auto seen = rollout_until("rolled_back", 20);  // 5 % UNAVAILABLE, every status 200
    EXPECT_GT(count_of(seen["codes"], "14"), 0u) << seen;
}

TEST_F(GrpcJs, HealthyCandidateIsPromoted) {
    const auto seen = rollout_until("completed", 0);
    EXPECT_EQ(count_of(seen["codes"], "14"), 0u) << seen;
    EXPECT_GT(count_of(seen["versions"], "v2"), 0u) << seen;
}

}  // namespace
}  // namespace stagegate::test
