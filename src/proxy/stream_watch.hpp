// Private to proxy: watching an OpenAI stream's Server-Sent Events as they are relayed, to
// tell a stream that ended the way the API promises from one that did not. A chat or
// completions stream ends with `data: [DONE]`; a Responses stream with a `response.completed`
// event; either may carry an error event instead. The HTTP framing can end cleanly without
// that end (a backend that gave up mid-answer and closed its chunked body properly): the
// client's SDK then fails, so the version must count it as failed too.
// Reads each line's first bytes only (fixed storage, no allocation, any split of the bytes),
// and passes every byte to a token_scan: the usage a stream may end with, and which events
// carried a content delta (its tokens, when it sends no usage).
// Must not touch: sockets, metrics, routing (the exchange decides what a bad end means).
#pragma once

#include "token_scan.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace stagegate::proxy {

// Which end an OpenAI request's stream promises, from the request's path.
enum class openai_stream {
    none,       // not an OpenAI streaming endpoint (embeddings, KServe, custom paths)
    chat,       // /v1/chat/completions, /v1/completions: `data: [DONE]`
    responses,  // /v1/responses: `event: response.completed`
};

openai_stream openai_stream_of(std::string_view target);

class stream_watch {
public:
    explicit stream_watch(openai_stream kind) : kind_(kind), scan_(kind) {}

    void feed(const char* data, std::size_t n);
    // Call once the body has ended: a last line without its newline counts too.
    void finish();

    bool ended_well() const { return finished_ && !error_; }
    bool error_event() const { return error_; }
    // Data events so far, the end marker and error events aside: the token deltas, and the
    // usage or finish events some servers send after them.
    std::uint32_t data_events() const { return data_events_; }
    // Data events that carried a non-empty content delta (token_scan): one token each.
    std::uint32_t content_events() const { return content_events_; }
    // The usage the stream carried, if any.
    const token_scan& tokens() const { return scan_; }

private:
    void end_line();

    openai_stream kind_;
    // The current line's first bytes: enough to tell the lines that matter apart.
    std::array<char, 48> line_{};
    std::size_t line_size_ = 0;
    bool finished_ = false;
    bool error_ = false;
    std::uint32_t data_events_ = 0;
    std::uint32_t content_events_ = 0;
    token_scan scan_;
};

}  // namespace stagegate::proxy
