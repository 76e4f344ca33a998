#include "stagegate/predictions/extract.hpp"

#include <charconv>
#include <cmath>

namespace stagegate::predictions {

namespace {

// A cursor over JSON text that can skip values and walk to a member or element. It checks
// only what it needs to find its way: values it skips are bracket-matched, not validated.
class scanner {
public:
    explicit scanner(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

    void ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) {
            ++p_;
        }
    }
    bool at(char c) {
        ws();
        return p_ < end_ && *p_ == c;
    }
    bool eat(char c) {
        if (at(c)) {
            ++p_;
            return true;
        }
        return false;
    }
    const char* pos() const { return p_; }

    // At '"': the raw content (escapes kept), cursor after the closing quote.
    bool string(std::string_view& out) {
        if (p_ >= end_ || *p_ != '"') {
            return false;
        }
        const char* start = ++p_;
        while (p_ < end_ && *p_ != '"') {
            if (*p_ == '\\') {
                ++p_;
            }
            ++p_;
        }
        if (p_ >= end_) {
            return false;
        }
        out = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
    }

    bool skip_value() {
        ws();
        if (p_ >= end_) {
            return false;
        }
        if (*p_ == '"') {
            std::string_view ignored;
            return string(ignored);
        }
        if (*p_ == '{' || *p_ == '[') {
            std::size_t depth = 0;
            while (p_ < end_) {
                const char c = *p_;
                if (c == '"') {
                    std::string_view ignored;
                    if (!string(ignored)) {
                        return false;
                    }
                    continue;
                }
                ++p_;
                if (c == '{' || c == '[') {
                    ++depth;
                } else if (c == '}' || c == ']') {
                    if (--depth == 0) {
                        return true;
                    }
                }
            }
            return false;
        }
        const char* start = p_;
        while (p_ < end_ && *p_ != ',' && *p_ != '}' && *p_ != ']' && *p_ != ' ' &&
               *p_ != '\t' && *p_ != '\n' && *p_ != '\r') {
            ++p_;
        }
        return p_ > start;
    }

    // Into an object, up to the value of member `key`.
    bool member(std::string_view key) {
        if (!eat('{')) {
            return false;
        }
        if (eat('}')) {
            return false;
        }
        for (;;) {
            ws();
            std::string_view name;
            if (!string(name) || !eat(':')) {
                return false;
            }
            if (name == key) {
                ws();
                return true;
            }
            if (!skip_value()) {
                return false;
            }
            if (eat(',')) {
                continue;
            }
            return false;  // '}' (not found) or malformed
        }
    }

    // Into an array, up to element `index`.
    bool element(std::size_t index) {
        if (!eat('[')) {
            return false;
        }
        if (eat(']')) {
            return false;
        }
        for (std::size_t i = 0; i < index; ++i) {
            if (!skip_value() || !eat(',')) {
                return false;
            }
        }
        ws();
        return true;
    }

private:
    const char* p_;
    const char* end_;
};

bool parse_number(std::string_view text, double& out) {
    if (text.empty()) {
        return false;
    }
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && std::isfinite(out);
}

bool parse_index(std::string_view token, std::size_t& out) {
    if (token.empty() || (token.size() > 1 && token[0] == '0')) {
        return false;
    }
    auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), out);
    return ec == std::errc() && end == token.data() + token.size();
}

// A score vector (possibly nested in single-element arrays): its length, argmax and max.
struct scores {
    std::size_t count = 0;
    std::size_t argmax = 0;
    double max = 0;
    std::string_view only;  // the text of the single element, when count == 1
};

bool read_scores(std::string_view text, scores& out, int depth = 0) {
    scanner sc(text);
    if (!sc.eat('[') || depth > 4) {
        return false;
    }
    if (sc.eat(']')) {
        return false;
    }
    for (;;) {
        sc.ws();
        const char* start = sc.pos();
        if (!sc.skip_value()) {
            return false;
        }
        std::string_view item(start, static_cast<std::size_t>(sc.pos() - start));
        if (!item.empty() && item.front() == '[') {
            // [[0.1, 0.9]]: a batch of one; read the first instance.
            return out.count == 0 && read_scores(item, out, depth + 1);
        }
        double v = 0;
        if (!parse_number(item, v)) {
            if (out.count == 0) {
                out.only = item;  // a one-element array of a non-number ("cat")
                out.count = 1;
                return !sc.eat(',');
            }
            return false;
        }
        if (out.count == 0 || v > out.max) {
            out.max = v;
            out.argmax = out.count;
        }
        if (out.count == 0) {
            out.only = item;
        }
        ++out.count;
        if (!sc.eat(',')) {
            return sc.eat(']');
        }
    }
}

// Reads `text` (a scalar's JSON text) as a label.
bool scalar_label(std::string_view text, prediction& out) {
    char digits[24];
    std::string_view canonical;
    if (text.size() >= 2 && text.front() == '"') {
        canonical = text.substr(1, text.size() - 2);
    } else if (text == "true" || text == "false") {
        canonical = text;
    } else {
        double v = 0;
        if (!parse_number(text, v) || v != std::floor(v) || std::fabs(v) > 9.0e15) {
            return false;  // a non-integral number is a value, not a class
        }
        auto [end, ec] = std::to_chars(digits, digits + sizeof digits,
                                       static_cast<long long>(v));
        canonical = std::string_view(digits, static_cast<std::size_t>(end - digits));
    }
    out.has_label = true;
    out.label_hash = label_hash(canonical);
    out.label_bin = label_bin(canonical);
    return true;
}

bool read_label(std::string_view text, prediction& out) {
    if (!text.empty() && text.front() == '[') {
        scores sc;
        if (!read_scores(text, sc)) {
            return false;
        }
        if (sc.count == 1) {
            return scalar_label(sc.only, out);
        }
        char digits[24];
        auto [end, ec] = std::to_chars(digits, digits + sizeof digits, sc.argmax);
        std::string_view canonical(digits, static_cast<std::size_t>(end - digits));
        out.has_label = true;
        out.label_hash = label_hash(canonical);
        out.label_bin = label_bin(canonical);
        return true;
    }
    return scalar_label(text, out);
}

bool read_value(std::string_view text, double& out) {
    if (text.empty()) {
        return false;
    }
    if (text.front() == '"') {
        out = static_cast<double>(text.size() - 2);  // JSON length of the string's content
        return true;
    }
    if (text.front() == '[') {
        scores sc;
        if (!read_scores(text, sc)) {
            return false;
        }
        return sc.count == 1 ? parse_number(sc.only, out) : (out = sc.max, true);
    }
    return parse_number(text, out);
}

}  // namespace

std::vector<std::string> parse_pointer(std::string_view pointer) {
    std::vector<std::string> tokens;
    if (pointer.empty()) {
        return tokens;
    }
    std::size_t pos = 1;
    for (;;) {
        auto next = pointer.find('/', pos);
        auto raw = pointer.substr(pos, next == std::string_view::npos ? pointer.npos : next - pos);
        std::string token;
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
                token += raw[i + 1] == '0' ? '~' : '/';
                ++i;
            } else {
                token += raw[i];
            }
        }
        tokens.push_back(std::move(token));
        if (next == std::string_view::npos) {
            return tokens;
        }
        pos = next + 1;
    }
}

spec compile(const config::predictions& cfg) {
    spec s;
    s.has_label = !cfg.label.empty();
    s.has_value = !cfg.value.empty();
    s.label_path = parse_pointer(cfg.label);
    s.value_path = parse_pointer(cfg.value);
    s.bins_min = cfg.bins_min;
    s.bins_max = cfg.bins_max;
    s.bins = std::min<std::uint32_t>(cfg.bins, max_value_bins);
    s.max_body_bytes = cfg.max_body_bytes;
    s.feedback = cfg.feedback;
    return s;
}

std::string_view locate(std::string_view json, const std::vector<std::string>& path) {
    scanner sc(json);
    for (const auto& token : path) {
        if (sc.at('{')) {
            if (!sc.member(token)) {
                return {};
            }
        } else if (sc.at('[')) {
            std::size_t index = 0;
            if (!parse_index(token, index) || !sc.element(index)) {
                return {};
            }
        } else {
            return {};
        }
    }
    sc.ws();
    const char* start = sc.pos();
    if (!sc.skip_value()) {
        return {};
    }
    return {start, static_cast<std::size_t>(sc.pos() - start)};
}

outcome extract(std::string_view body, const spec& s, prediction& out) {
    out = prediction{};
    scanner sc(body);
    if (!sc.at('{') && !sc.at('[')) {
        return outcome::invalid;
    }
    // One pass over the whole document first: a body cut short or followed by more is not
    // read, however much of it looks right.
    if (!sc.skip_value() || (sc.ws(), sc.pos() != body.data() + body.size())) {
        return outcome::invalid;
    }
    if (s.has_label) {
        auto text = locate(body, s.label_path);
        if (!text.empty()) {
            read_label(text, out);
        }
    }
    if (s.has_value) {
        auto text = locate(body, s.value_path);
        double v = 0;
        if (!text.empty() && read_value(text, v)) {
            out.has_value = true;
            out.value = v;
            out.value_bin = value_bin(s, v);
        }
    }
    return out.has_label || out.has_value ? outcome::parsed : outcome::missing;
}

std::uint64_t label_hash(std::string_view canonical) {
    // FNV-1a's 64-bit prime, but an offset basis one digit short of the standard
    // 14695981039346656037: any nonzero start mixes as well, and the label bins these hashes
    // pick travel between replicas (metrics/wire), so a replica of a release with the standard
    // basis would put the same label in another bin during a rolling upgrade and skew the
    // drift gate. Kept as it is; change it only with a versioned wire field.
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : canonical) {
        h = (h ^ c) * 1099511628211ULL;
    }
    return h;
}

std::uint32_t label_bin(std::string_view canonical) {
    std::uint32_t n = 0;
    auto [end, ec] = std::from_chars(canonical.data(), canonical.data() + canonical.size(), n);
    if (ec == std::errc() && end == canonical.data() + canonical.size() && n < label_bins &&
        !canonical.empty() && (canonical.size() == 1 || canonical[0] != '0')) {
        return n;
    }
    return static_cast<std::uint32_t>(label_hash(canonical) % label_bins);
}

std::uint32_t value_bin(const spec& s, double value) {
    const double width = (s.bins_max - s.bins_min) / s.bins;
    const double position = (value - s.bins_min) / width;
    if (!(position > 0)) {
        return 0;
    }
    return position >= s.bins ? s.bins - 1 : static_cast<std::uint32_t>(position);
}

}  // namespace stagegate::predictions
