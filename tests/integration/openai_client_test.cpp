// The official OpenAI Node SDK (tests/clients, pinned) through the gateway: what an
// application built on it sees (model discovery, chat, streamed chat arriving token by token,
// embeddings, a stream that fails mid-way) and what the gateway counts for it.
#include "support/shell.hpp"
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace stagegate::test {
namespace {

using json = nlohmann::json;


struct sdk_result {
    int exit_code = -1;
    json seen;
    std::string output;
};

// Runs one case of tests/clients/openai_sdk.mjs against the gateway on `port`.
sdk_result run_sdk(std::uint16_t port, const std::string& which) {
    sdk_result r;
    const std::string cmd = "node " + clients_dir + "/openai_sdk.mjs http://127.0.0.1:" +
                            std::to_string(port) + "/v1 m " + which + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) {
        return r;
    }
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) {
        r.output += buf;
    }
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    // The script's verdict is its last line (node may warn before it).
    std::string last_line = r.output;
    while (!last_line.empty() && last_line.back() == '\n') {
        last_line.pop_back();
    }
    if (const auto newline = last_line.rfind('\n'); newline != std::string::npos) {
        last_line.erase(0, newline + 1);
    }
    r.seen = json::parse(last_line, nullptr, false);
    return r;
}

bool sdk_installed() {
    return ::access((clients_dir + "/node_modules/openai/package.json").c_str(), R_OK) == 0;
}

class OpenAiSdk : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(sdk_installed())
            << "the openai npm package is missing: scripts/install-deps.sh installs it (npm ci "
               "in tests/clients)";
    }
};

TEST_F(OpenAiSdk, ListsChatsStreamsAndEmbedsThroughTheGateway) {
    mockmodel::options llm;
    llm.ttft_ms = 50;
    llm.tokens_per_second = 10;  // 100 ms between tokens
    llm.answer_tokens = 6;
    auto s = stack::make(0, 1, [](config::gateway&) {}, {}, llm);

    auto list = run_sdk(s.port, "list");
    ASSERT_EQ(list.exit_code, 0) << list.output;
    EXPECT_EQ(list.seen["ids"], json::array({"m"})) << list.output;

    auto chat = run_sdk(s.port, "chat");
    ASSERT_EQ(chat.exit_code, 0) << chat.output;
    EXPECT_EQ(chat.seen["content"], "answer from v1") << chat.output;
    EXPECT_EQ(chat.seen["usage"]["completion_tokens"], 6) << chat.output;
    EXPECT_EQ(chat.seen["usage"]["prompt_tokens"], 3) << chat.output;

    auto stream = run_sdk(s.port, "stream");
    ASSERT_EQ(stream.exit_code, 0) << stream.output;
    EXPECT_EQ(stream.seen["content"], "answer v1 v1 v1 v1 v1") << stream.output;
    EXPECT_EQ(stream.seen["usage"]["completion_tokens"], 6) << stream.output;
    EXPECT_EQ(stream.seen["usage"]["prompt_tokens"], 3) << stream.output;
    // The gateway read both usages as they passed (the chat's and the stream's last chunk,
    // which stream_options.include_usage asked for) and counted no token itself.
    metrics::series_counts v1;
    EXPECT_TRUE(wait_until([&] {
        for (const auto& m : s.gateway->read_metrics()) {
            if (m.version == "v1") {
                v1 = m.since_stage_start;
            }
        }
        return v1.stream_ends[static_cast<std::size_t>(metrics::stream_outcome::completed)] >= 1 &&
               v1.requests() >= 2;
    }));
    EXPECT_EQ(v1.input_tokens, 6u);
    EXPECT_EQ(v1.output_tokens[static_cast<std::size_t>(metrics::token_source::usage)], 12u);
    EXPECT_EQ(v1.output_tokens[static_cast<std::size_t>(metrics::token_source::counted)], 0u);
    EXPECT_EQ(v1.output_tokens_per_second.count(), 1u);
    // The six tokens leave the backend 100 ms apart (a timer never fires early): relayed as
    // they come, the SDK's first chunk arrives at least 500 ms before its last; held back
    // and sent together, they would arrive within a few milliseconds of each other. 300 ms
    // leaves room for a loaded machine delaying the first read.
    const auto& arrivals = stream.seen["arrivals"];
    ASSERT_GE(arrivals.size(), 6u) << stream.output;
    EXPECT_GE(arrivals.back().get<int>() - arrivals.front().get<int>(), 300) << stream.output;

    auto embed = run_sdk(s.port, "embed");
    ASSERT_EQ(embed.exit_code, 0) << embed.output;
    EXPECT_EQ(embed.seen["count"], 2) << embed.output;
    EXPECT_EQ(embed.seen["dims"], 4) << embed.output;

    // The gateway's own errors come in OpenAI's shape, so the SDK shows what went wrong.
    auto unknown = run_sdk(s.port, "unknown");
    ASSERT_EQ(unknown.exit_code, 0) << unknown.output;
    EXPECT_EQ(unknown.seen["raised"], "NotFoundError") << unknown.output;
    EXPECT_EQ(unknown.seen["status"], 404) << unknown.output;
    EXPECT_EQ(unknown.seen["type"], "invalid_request_error") << unknown.output;
    EXPECT_EQ(unknown.seen["code"], "unknown_model") << unknown.output;
    EXPECT_NE(unknown.seen["message"].get<std::string>().find("no model named \"nope\""),
              std::string::npos)
        << unknown.output;
}

TEST_F(OpenAiSdk, AStreamEndingInAnErrorEventFailsInTheSdkAndForTheVersion) {
    auto s = stack::make();
    auto broken = run_sdk(s.port, "broken");
    ASSERT_EQ(broken.exit_code, 0) << broken.output;
    EXPECT_EQ(broken.seen["raised"], "APIError") << broken.output;
    EXPECT_EQ(broken.seen["message"], "injected stream failure") << broken.output;
    // Its status was 200 and its chunked body ended cleanly, yet it failed: v1 counts it.
    metrics::series_counts v1;
    EXPECT_TRUE(wait_until([&] {
        for (const auto& m : s.gateway->read_metrics()) {
            if (m.version == "v1") {
                v1 = m.since_stage_start;
            }
        }
        return v1.requests() >= 1;
    }));
    EXPECT_EQ(v1.cut_short, 1u);
    EXPECT_EQ(v1.server_errors(), 1u);
    EXPECT_EQ(v1.codes[metrics::code_slot(200)], 1u);
}

}  // namespace
}  // namespace stagegate::test
