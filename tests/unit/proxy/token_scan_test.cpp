// Reading an OpenAI answer's tokens as its bytes pass: usage when the backend sends it, content
// deltas counted when it does not, the same whichever way the bytes are split.
#include "proxy/stream_watch.hpp"
#include "proxy/token_scan.hpp"

#include <gtest/gtest.h>

#include <string>

namespace stagegate::proxy {
namespace {

// What a stream_watch concluded, for comparing splits.
struct seen {
    bool ended_well = false;
    bool error_event = false;
    std::uint32_t data_events = 0;
    std::uint32_t content_events = 0;
    bool has_input = false;
    bool has_output = false;
    std::uint64_t input = 0;
    std::uint64_t output = 0;
    bool operator==(const seen&) const = default;
};

std::ostream& operator<<(std::ostream& os, const seen& s) {
    return os << "ended_well " << s.ended_well << " error " << s.error_event << " events "
              << s.data_events << " content " << s.content_events << " input " << s.has_input
              << "/" << s.input << " output " << s.has_output << "/" << s.output;
}

// Feeds `body` split at `at` (two reads; `at` 0 or size is one read), then ends it.
seen watch_split(openai_stream kind, const std::string& body, std::size_t at) {
    stream_watch w(kind);
    w.feed(body.data(), at);
    w.feed(body.data() + at, body.size() - at);
    w.finish();
    const auto& t = w.tokens();
    return {w.ended_well(),        w.error_event(),     w.data_events(),
            w.content_events(),    t.has_input_tokens(), t.has_output_tokens(),
            t.input_tokens(),      t.output_tokens()};
}

seen watch_bytewise(openai_stream kind, const std::string& body) {
    stream_watch w(kind);
    for (char c : body) {
        w.feed(&c, 1);
    }
    w.finish();
    const auto& t = w.tokens();
    return {w.ended_well(),        w.error_event(),     w.data_events(),
            w.content_events(),    t.has_input_tokens(), t.has_output_tokens(),
            t.input_tokens(),      t.output_tokens()};
}

// Every split of `body` at one byte boundary, and one byte at a time, sees what one read sees.
void expect_any_split(openai_stream kind, const std::string& body, const seen& expected) {
    for (std::size_t at = 0; at <= body.size(); ++at) {
        ASSERT_EQ(watch_split(kind, body, at), expected) << "split at " << at;
    }
    EXPECT_EQ(watch_bytewise(kind, body), expected);
}

std::string chat_chunk(const std::string& delta, const std::string& finish = "null") {
    return "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
           "\"delta\":" + delta + ",\"finish_reason\":" + finish + "}]}\n\n";
}

// vLLM's and OpenAI's shape: a role chunk with empty content, a chunk per token, a finish
// chunk with an empty delta.
const std::string chat_tokens =
    chat_chunk(R"({"role":"assistant","content":""})") + chat_chunk(R"({"content":"Hel"})") +
    chat_chunk(R"({"content":"lo"})") + chat_chunk(R"({"content":" there"})") +
    chat_chunk("{}", "\"stop\"");

const std::string chat_usage =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
    "{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,"
    "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n";

TEST(TokenScan, AStreamWithUsageReportsItsUsageAtEverySplit) {
    expect_any_split(openai_stream::chat, chat_tokens + chat_usage + "data: [DONE]\n\n",
                     {true, false, 6, 3, true, true, 12, 3});
}

TEST(TokenScan, AStreamWithoutUsageCountsItsNonEmptyContentDeltas) {
    // The role chunk ("content":"") and the finish chunk ({}) are no tokens.
    expect_any_split(openai_stream::chat, chat_tokens + "data: [DONE]\n\n",
                     {true, false, 5, 3, false, false, 0, 0});
}

TEST(TokenScan, AnErrorEventEndsTheStreamBadlyAndKeepsTheTokensBeforeIt) {
    const std::string body =
        chat_chunk(R"({"role":"assistant","content":""})") + chat_chunk(R"({"content":"Hel"})") +
        "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    expect_any_split(openai_stream::chat, body, {false, true, 2, 1, false, false, 0, 0});
}

TEST(TokenScan, LegacyCompletionsCountTheirTextAndCarriageReturnsChangeNothing) {
    std::string body;
    for (const char* t : {"a", "b", ""}) {
        body += std::string("data: {\"choices\":[{\"text\":\"") + t + "\",\"index\":0}]}\r\n\r\n";
    }
    body += "data: [DONE]\r\n\r\n";
    expect_any_split(openai_stream::chat, body, {true, false, 3, 2, false, false, 0, 0});
}

TEST(TokenScan, GeneratedTextCanNeverPassForUsage) {
    // The model wrote `"completion_tokens": 999` in its answer: inside a JSON string its quotes
    // are escaped, so no key is seen; nor is a "content" key inside the text a delta.
    const std::string body =
        chat_chunk(R"({"content":"{\"completion_tokens\": 999, \"content\":\"x\"}"})") +
        chat_chunk(R"({"content":"\\\"prompt_tokens\\\":7"})") + "data: [DONE]\n\n";
    expect_any_split(openai_stream::chat, body, {true, false, 2, 2, false, false, 0, 0});
}

// Strings are taken a run at a time up to their next quote or escape, eight bytes at once:
// escapes at every offset of such a run, a key longer than the storage for key bytes that
// begins with a known key, and an escaped quote followed by what looks like usage must read
// as they do byte by byte.
TEST(TokenScan, EscapesAtAnyOffsetAndLongKeysReadAsByteByByte) {
    std::string body;
    for (int at = 0; at < 10; ++at) {
        const std::string text = std::string(static_cast<std::size_t>(at), 'a') +
                                 R"(\"prompt_tokens\": 5, \\)" + std::string(9, 'b') +
                                 R"(\u00e9)";
        body += chat_chunk(R"({"content":")" + text + R"("})");
    }
    body += R"(data: {"usage":{"completion_tokens_details_and_more":77,"prompt_tokens":4,)"
            R"("completion_tokens":10}})"
            "\n\n"
            "data: [DONE]\n\n";
    expect_any_split(openai_stream::chat, body, {true, false, 11, 10, true, true, 4, 10});
}

TEST(TokenScan, AResponsesStreamCountsDeltasAndReadsUsageFromItsCompletedEvent) {
    const std::string body =
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n"
        "event: response.output_text.delta\n"
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"
        "event: response.output_text.delta\n"
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\" you\"}\n\n"
        "event: response.output_text.done\n"
        "data: {\"type\":\"response.output_text.done\",\"text\":\"Hi you\"}\n\n"
        "event: response.completed\n"
        "data: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"content\":[{"
        "\"text\":\"Hi you\"}]}],\"usage\":{\"input_tokens\":9,\"input_tokens_details\":{"
        "\"cached_tokens\":4},\"output_tokens\":2,\"output_tokens_details\":{"
        "\"reasoning_tokens\":0},\"total_tokens\":11}}}\n\n";
    expect_any_split(openai_stream::responses, body, {true, false, 4, 2, true, true, 9, 2});
}

// A non-streamed answer: only its usage is read (pretty-printed or not), at any split.
TEST(TokenScan, ANonStreamedAnswersUsageIsReadAtEverySplit) {
    const std::string body = R"({
  "id": "chatcmpl-1", "object": "chat.completion",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "prompt_tokens: 5"},
               "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 21, "completion_tokens" :  140, "total_tokens": 161,
            "prompt_tokens_details": {"cached_tokens": 0}}
})";
    for (std::size_t at = 0; at <= body.size(); ++at) {
        token_scan scan(openai_stream::chat);
        scan.feed(body.data(), at);
        scan.feed(body.data() + at, body.size() - at);
        scan.end_line();
        ASSERT_TRUE(scan.has_input_tokens()) << at;
        ASSERT_TRUE(scan.has_output_tokens()) << at;
        ASSERT_EQ(scan.input_tokens(), 21u) << at;
        ASSERT_EQ(scan.output_tokens(), 140u) << at;
    }
    token_scan none(openai_stream::chat);
    const std::string without = R"({"choices":[{"message":{"content":"hi"}}],"usage":null})";
    none.feed(without.data(), without.size());
    none.end_line();
    EXPECT_FALSE(none.has_input_tokens());
    EXPECT_FALSE(none.has_output_tokens());
}

}  // namespace
}  // namespace stagegate::proxy
