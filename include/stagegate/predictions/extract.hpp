// predictions/extract: finding a model's prediction in an answer body.
// Owns: compiled extraction specs (JSON pointers from the config), a scanner that walks to a
// pointer without building a DOM or allocating, and reading what is there as a class label
// (string, integer, bool, or the argmax of a score vector) and a value (number, the max of a
// score vector, or a string's length), each with its fixed drift bin.
// Must not touch: sockets, threads, metrics. Never throws; bad bodies are an outcome.
#pragma once

#include "stagegate/config/config.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stagegate::predictions {

// Label bins are fixed (labels are hashed into them; small integer labels keep their index),
// value bins come from the config (at most this many).
inline constexpr std::size_t label_bins = 32;
inline constexpr std::size_t max_value_bins = 32;

struct spec {
    std::vector<std::string> label_path;  // unescaped pointer tokens
    std::vector<std::string> value_path;
    bool has_label = false;
    bool has_value = false;
    double bins_min = 0;
    double bins_max = 1;
    std::uint32_t bins = 20;
    std::uint64_t max_body_bytes = 256 * 1024;
    bool feedback = false;
};

spec compile(const config::predictions& cfg);

// "/a/b~1c/0" -> {"a", "b/c", "0"}; "" -> {}.
std::vector<std::string> parse_pointer(std::string_view pointer);

struct prediction {
    bool has_label = false;
    bool has_value = false;
    std::uint64_t label_hash = 0;  // of the label's canonical text (label_hash())
    std::uint32_t label_bin = 0;
    std::uint32_t value_bin = 0;
    double value = 0;
};

enum class outcome : std::uint8_t {
    parsed,   // a label or a value (or both) was read
    missing,  // JSON, but nothing usable at the pointers
    invalid,  // not JSON
};

outcome extract(std::string_view body, const spec& s, prediction& out);

// The raw text of the value at `path` in a JSON document (strings keep their quotes); empty
// when absent or the document is malformed. Exposed for tests and fuzzing.
std::string_view locate(std::string_view json, const std::vector<std::string>& path);

// Canonical label text -> hash (FNV-1a), and its bin: what feedback labels are compared by.
// Canonical: a string's JSON text without quotes, an integer in decimal, "true"/"false".
std::uint64_t label_hash(std::string_view canonical);
std::uint32_t label_bin(std::string_view canonical);
std::uint32_t value_bin(const spec& s, double value);

}  // namespace stagegate::predictions
