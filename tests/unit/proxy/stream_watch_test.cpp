// How an OpenAI stream's end is recognised, whatever way its bytes are split.
#include "proxy/stream_watch.hpp"

#include <gtest/gtest.h>

#include <string>

namespace stagegate::proxy {
namespace {

// Feeds `body` in pieces of `piece` bytes, then ends it.
stream_watch watched(openai_stream kind, const std::string& body, std::size_t piece) {
    stream_watch w(kind);
    for (std::size_t at = 0; at < body.size(); at += piece) {
        w.feed(body.data() + at, std::min(piece, body.size() - at));
    }
    w.finish();
    return w;
}

const std::string chunk =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";

TEST(StreamWatch, TheEndpointSaysWhichEndAStreamPromises) {
    EXPECT_EQ(openai_stream_of("/v1/chat/completions"), openai_stream::chat);
    EXPECT_EQ(openai_stream_of("/v1/completions?x=1"), openai_stream::chat);
    EXPECT_EQ(openai_stream_of("/v1/responses"), openai_stream::responses);
    EXPECT_EQ(openai_stream_of("/v1/embeddings"), openai_stream::none);
    EXPECT_EQ(openai_stream_of("/v1/models/m:predict"), openai_stream::none);
}

TEST(StreamWatch, AChatStreamEndsWellOnlyWithDone) {
    for (std::size_t piece : {1u, 3u, 7u, 4096u}) {
        EXPECT_TRUE(watched(openai_stream::chat, chunk + chunk + "data: [DONE]\n\n", piece)
                        .ended_well())
            << piece;
        EXPECT_TRUE(watched(openai_stream::chat, chunk + "data:[DONE]\r\n\r\n", piece)
                        .ended_well())
            << piece;
        // A last line without its newline still counts.
        EXPECT_TRUE(watched(openai_stream::chat, chunk + "data: [DONE]", piece).ended_well())
            << piece;
        // The backend gave up mid-answer and ended its body cleanly: not a finished stream.
        EXPECT_FALSE(watched(openai_stream::chat, chunk + chunk, piece).ended_well()) << piece;
        // "[DONE]" inside content, or a longer line starting with it, is not the end.
        EXPECT_FALSE(watched(openai_stream::chat, chunk + "data: [DONE] and more\n\n", piece)
                         .ended_well())
            << piece;
    }
}

TEST(StreamWatch, AnErrorEventFailsTheStreamEvenIfDoneFollows) {
    const std::string error =
        "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    auto w = watched(openai_stream::chat, chunk + error + "data: [DONE]\n\n", 5);
    EXPECT_TRUE(w.error_event());
    EXPECT_FALSE(w.ended_well());
    auto named = watched(openai_stream::chat, chunk + "event: error\ndata: {}\n\n", 5);
    EXPECT_TRUE(named.error_event());
}

TEST(StreamWatch, AResponsesStreamEndsWithResponseCompleted) {
    const std::string delta =
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
        "\"delta\":\"hi\"}\n\n";
    const std::string completed =
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n";
    EXPECT_TRUE(watched(openai_stream::responses, delta + completed, 2).ended_well());
    EXPECT_FALSE(watched(openai_stream::responses, delta + delta, 2).ended_well());
    // [DONE] is not how a Responses stream ends.
    EXPECT_FALSE(watched(openai_stream::responses, delta + "data: [DONE]\n\n", 2).ended_well());
    auto failed = watched(
        openai_stream::responses,
        delta + "event: response.failed\ndata: {\"type\":\"response.failed\"}\n\n" + completed, 9);
    EXPECT_TRUE(failed.error_event());
    EXPECT_FALSE(failed.ended_well());
}

}  // namespace
}  // namespace stagegate::proxy
