// Private to proxy: reading an OpenAI answer's token counts out of its bytes as they are
// relayed, without copying or allocating. Two things: the `usage` object's numbers
// (`prompt_tokens` / `completion_tokens` in chat and completions answers, `input_tokens` /
// `output_tokens` in Responses ones; a stream carries them in a last chunk when the request set
// `stream_options.include_usage`, or in `response.completed`), and whether one line of a
// stream (one SSE data event) carried a non-empty content delta: a token, counted when the
// backend sends no usage.
// A small JSON lexer, one byte at a time: it follows strings and their escapes, so a quoted
// key is a key (a quote inside a JSON string is always escaped: generated text can never fake
// one), keeps a key's first bytes in fixed storage, and then reads the number, or the first
// byte of the string, that is its value. Any split of the bytes gives the same result.
// Must not touch: sockets, metrics, SSE framing (stream_watch ends its lines).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace stagegate::proxy {

enum class openai_stream;  // stream_watch.hpp: which API's events these are

class token_scan {
public:
    explicit token_scan(openai_stream kind) : kind_(kind) {}

    void feed(char c);
    // The same as feeding each byte, with the JSON structure between strings and a string's
    // plain bytes taken a run at a time: a streamed chunk is mostly those, and byte by byte
    // they cost about 40 instructions each (9,800 for a 233-byte vLLM chunk).
    void feed(const char* data, std::size_t n);
    // A stream's line ended: the lexer starts afresh (an SSE data line holds one JSON value,
    // and a JSON string never holds a raw newline), and the line's content flag is cleared.
    void end_line();
    // The current line carried a non-empty content delta: `content`, `reasoning_content`,
    // `reasoning`, `text` or a tool call's `arguments` in chat and completions chunks, `delta`
    // in Responses events.
    bool content_in_line() const { return content_in_line_; }

    // The last usage numbers seen (a stream may repeat them; the last one is the total).
    bool has_input_tokens() const { return has_input_; }
    bool has_output_tokens() const { return has_output_; }
    std::uint64_t input_tokens() const { return input_tokens_; }
    std::uint64_t output_tokens() const { return output_tokens_; }

private:
    enum class state : std::uint8_t {
        structure,     // between tokens of the JSON structure
        in_string,     // inside a string (maybe a key, maybe a value)
        after_string,  // a string ended: a key if a colon follows
        value,         // after a known key's colon: waiting for its value's first byte
        number,        // reading a usage number's digits
        first_char,    // after a content key's opening quote: is the string empty?
    };
    enum class key : std::uint8_t { other, input, output, content };

    key key_of() const;
    void finish_number();
    void keep_string_bytes(const char* from, std::size_t n);  // a string's first bytes

    openai_stream kind_;
    state state_ = state::structure;
    bool escaped_ = false;
    key pending_ = key::other;
    // The current string's first bytes; a longer string is no key we look for.
    std::array<char, 20> string_{};
    std::size_t string_size_ = 0;
    std::uint64_t number_ = 0;
    bool content_in_line_ = false;
    bool has_input_ = false;
    bool has_output_ = false;
    std::uint64_t input_tokens_ = 0;
    std::uint64_t output_tokens_ = 0;
};

}  // namespace stagegate::proxy
