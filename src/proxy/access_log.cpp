// The access log: formatting (worker threads), hand-over (one atomic exchange each way), and
// the writer thread (every write(2)). See access_log.hpp.
#include "stagegate/proxy/access_log.hpp"

#include "stagegate/core/log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>

namespace stagegate::proxy {

namespace {

enum field_id {
    f_time,
    f_request_id,
    f_client,
    f_method,
    f_path,
    f_protocol,
    f_model,
    f_version,
    f_stage,
    f_route,
    f_status,
    f_code,
    f_bytes_received,
    f_bytes_sent,
    f_upstream,
    f_upstream_head_ms,
    f_duration_ms,
    f_ttft_ms,
    f_cut_short,
    field_count
};
static_assert(field_count == config::access_log_fields.size(),
              "access_log_fields and field_id list the same fields in the same order");

void append_uint(std::string& out, std::uint64_t v) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, v);
    out.append(digits, end);
}

// Microseconds as milliseconds with three decimals: "12.345".
void append_ms(std::string& out, std::int64_t us) {
    append_uint(out, static_cast<std::uint64_t>(us / 1000));
    const auto frac = static_cast<unsigned>(us % 1000);
    const char text[4] = {'.', static_cast<char>('0' + frac / 100),
                          static_cast<char>('0' + frac / 10 % 10),
                          static_cast<char>('0' + frac % 10)};
    out.append(text, 4);
}

constexpr char hex_digits[] = "0123456789abcdef";

// Whether a byte must be escaped in a line: control bytes, DEL, quotes and backslashes.
bool needs_escape(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f || c == '"' || c == '\\';
}

// Appends `v` with each byte needing an escape written by `escape`; the runs between escapes
// (nearly always the whole value) are appended in one piece.
template <class Escape>
void append_escaped(std::string& out, std::string_view v, Escape&& escape) {
    std::size_t run = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (needs_escape(v[i])) {
            out.append(v.data() + run, i - run);
            escape(static_cast<unsigned char>(v[i]));
            run = i + 1;
        }
    }
    out.append(v.data() + run, v.size() - run);
}

// A JSON string's contents: quotes, backslashes and control bytes escaped; other bytes as
// they are (a path's invalid UTF-8 stays what the client sent).
void append_json_text(std::string& out, std::string_view v) {
    append_escaped(out, v, [&](unsigned char u) {
        if (u == '"' || u == '\\') {
            const char esc[2] = {'\\', static_cast<char>(u)};
            out.append(esc, 2);
        } else {
            const char esc[6] = {'\\', 'u', '0', '0', hex_digits[u >> 4], hex_digits[u & 15]};
            out.append(esc, 6);
        }
    });
}

// A template value: as nginx writes variables, control bytes, '"' and '\\' as \xHH, so a line
// always splits the same way; "-" when empty.
void append_text(std::string& out, std::string_view v) {
    if (v.empty()) {
        out.push_back('-');
        return;
    }
    append_escaped(out, v, [&](unsigned char u) {
        const char esc[4] = {'\\', 'x', hex_digits[u >> 4], hex_digits[u & 15]};
        out.append(esc, 4);
    });
}

// The JSON line's keys with their punctuation, built once: `{"time":`, `,"request_id":`, ...
const std::array<std::string, field_count>& json_keys() {
    static const auto keys = [] {
        std::array<std::string, field_count> k;
        for (std::size_t i = 0; i < k.size(); ++i) {
            k[i] = (i == 0 ? "{\"" : ",\"") + std::string(config::access_log_fields[i]) + "\":";
        }
        return k;
    }();
    return keys;
}

}  // namespace

access_format::access_format(std::string_view spec) {
    if (spec == "json") {
        json_ = true;
        return;
    }
    std::string literal;
    for (std::size_t i = 0; i < spec.size(); ++i) {
        if (spec[i] != '%') {
            literal.push_back(spec[i]);
            continue;
        }
        const auto close = spec.find('%', i + 1);
        if (close == std::string_view::npos) {
            literal.append(spec.substr(i));  // validated away; kept literal if not
            break;
        }
        const auto name = spec.substr(i + 1, close - i - 1);
        i = close;
        if (name.empty()) {
            literal.push_back('%');
            continue;
        }
        int id = -1;
        for (std::size_t f = 0; f < config::access_log_fields.size(); ++f) {
            if (config::access_log_fields[f] == name) {
                id = static_cast<int>(f);
            }
        }
        if (id < 0) {
            literal.append("%").append(name).append("%");
            continue;
        }
        if (!literal.empty()) {
            pieces_.push_back({-1, std::move(literal)});
            literal.clear();
        }
        pieces_.push_back({id, {}});
    }
    if (!literal.empty()) {
        pieces_.push_back({-1, std::move(literal)});
    }
}

void access_format::append(std::string& out, const access_entry& e,
                           std::chrono::system_clock::time_point now) const {
    const auto us_since_epoch =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() -
        e.duration_us;  // the request's start
    const std::int64_t second = us_since_epoch / 1000000;
    if (second != cached_second_) {
        const std::time_t t = static_cast<std::time_t>(second);
        std::tm utc{};
        gmtime_r(&t, &utc);
        std::strftime(second_text_, sizeof second_text_, "%Y-%m-%dT%H:%M:%S", &utc);
        cached_second_ = second;
    }
    auto write_field = [&](int id, bool json) {
        auto text = [&](std::string_view v) {
            if (!json) {
                append_text(out, v);
            } else if (v.empty()) {
                out.append("null");
            } else {
                out.push_back('"');
                append_json_text(out, v);
                out.push_back('"');
            }
        };
        auto millis = [&](std::int64_t us) {
            if (us < 0) {
                out.append(json ? "null" : "-");
            } else {
                append_ms(out, us);
            }
        };
        switch (id) {
            case f_time: {
                if (json) {
                    out.push_back('"');
                }
                out.append(second_text_, 19);
                const auto ms = static_cast<unsigned>(us_since_epoch / 1000 % 1000);
                const char frac[5] = {'.', static_cast<char>('0' + ms / 100),
                                      static_cast<char>('0' + ms / 10 % 10),
                                      static_cast<char>('0' + ms % 10), 'Z'};
                out.append(frac, 5);
                if (json) {
                    out.push_back('"');
                }
                break;
            }
            case f_request_id:
                text(e.request_id);
                break;
            case f_client:
                text(e.client);
                break;
            case f_method:
                text(e.method);
                break;
            case f_path:
                text(e.path);
                break;
            case f_protocol:
                text(e.client_version == 10   ? "HTTP/1.0"
                     : e.client_version == 20 ? "HTTP/2.0"
                                              : "HTTP/1.1");
                break;
            case f_model:
                text(e.model);
                break;
            case f_version:
                text(e.version);
                break;
            case f_stage:
                text(e.stage);
                break;
            case f_route:
                text(e.route);
                break;
            case f_status:
                append_uint(out, e.status);
                break;
            case f_code:
                text(e.code);
                break;
            case f_bytes_received:
                append_uint(out, e.bytes_received);
                break;
            case f_bytes_sent:
                append_uint(out, e.bytes_sent);
                break;
            case f_upstream:
                text(e.upstream);
                break;
            case f_upstream_head_ms:
                millis(e.upstream_head_us);
                break;
            case f_duration_ms:
                millis(e.duration_us);
                break;
            case f_ttft_ms:
                millis(e.ttft_us);
                break;
            case f_cut_short:
                out.append(e.cut_short ? "true" : "false");
                break;
            default:
                break;
        }
    };
    if (json_) {
        const auto& keys = json_keys();
        for (int id = 0; id < field_count; ++id) {
            out.append(keys[static_cast<std::size_t>(id)]);
            write_field(id, true);
        }
        out.append("}\n");
        return;
    }
    for (const auto& p : pieces_) {
        if (p.field < 0) {
            out.append(p.text);
        } else {
            write_field(p.field, false);
        }
    }
    out.push_back('\n');
}

// --- access_log_buffer ------------------------------------------------------------------

access_log_buffer::access_log_buffer(std::string_view format, double sample)
    : format_(format), sample_(sample), filling_(new std::string()), spare_(new std::string()) {
    filling_->reserve(hand_over_bytes * 2);
    spare_.load()->reserve(hand_over_bytes * 2);
}

access_log_buffer::~access_log_buffer() {
    delete filling_;
    delete handed_.load();
    delete spare_.load();
}

void access_log_buffer::add(const access_entry& e, double draw) {
    const bool always = e.status >= 500 || e.cut_short || !e.code.empty();
    if (!always && draw >= sample_) {
        return;
    }
    if (filling_->size() >= cap_bytes) {
        dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return;
    }
    format_.append(*filling_, e, std::chrono::system_clock::now());
    if (filling_->size() >= hand_over_bytes) {
        hand_over();
    }
}

void access_log_buffer::tick() {
    if (!filling_->empty()) {
        hand_over();
    }
}

// The writer has the other string until it gives it back: until then the lines stay here
// (and grow up to cap_bytes).
void access_log_buffer::hand_over() {
    std::string* empty = spare_.exchange(nullptr, std::memory_order_acquire);
    if (!empty) {
        return;
    }
    handed_.store(filling_, std::memory_order_release);
    filling_ = empty;
}

void access_log_buffer::give_back(std::string* s) {
    s->clear();
    if (s->capacity() > cap_bytes) {
        s->shrink_to_fit();  // a burst made it large: do not keep it so
        s->reserve(hand_over_bytes * 2);
    }
    spare_.store(s, std::memory_order_release);
}

// --- access_log_writer ------------------------------------------------------------------

access_log_writer::access_log_writer(const config::access_log& cfg, std::uint32_t workers,
                                     std::string& error_out) {
    if (cfg.path == "stdout") {
        fd_ = STDOUT_FILENO;
    } else if (cfg.path == "stderr") {
        fd_ = STDERR_FILENO;
    } else {
        // O_APPEND: logrotate's copytruncate works, and lines of two processes do not overlap.
        fd_ = ::open(cfg.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) {
            error_out = "cannot open the access log " + cfg.path + ": " + std::strerror(errno);
            return;
        }
        own_fd_ = true;
    }
    for (std::uint32_t i = 0; i < workers; ++i) {
        buffers_.push_back(std::make_unique<access_log_buffer>(cfg.format, cfg.sample));
    }
    thread_ = std::thread([this] { run(); });
}

access_log_writer::~access_log_writer() {
    stop_.store(true);
    if (thread_.joinable()) {
        thread_.join();
    }
    flush_now();
    for (auto& b : buffers_) {
        write_all(b->remaining());
        b->remaining().clear();
    }
    if (own_fd_) {
        ::close(fd_);
    }
}

std::uint64_t access_log_writer::dropped() const {
    std::uint64_t n = 0;
    for (const auto& b : buffers_) {
        n += b->dropped();
    }
    return n;
}

void access_log_writer::flush_now() {
    std::lock_guard lock(pass_mutex_);
    for (auto& b : buffers_) {
        if (std::string* s = b->take()) {
            write_all(*s);
            b->give_back(s);
        }
    }
}

void access_log_writer::run() {
    std::uint64_t dropped_before = 0;
    auto warned = std::chrono::steady_clock::time_point{};
    while (!stop_.load()) {
        flush_now();
        if (const auto now = std::chrono::steady_clock::now(); now - warned > std::chrono::seconds(10)) {
            if (const auto d = dropped(); d != dropped_before) {
                log::warn("access_log", "the access log could not keep up; lines were dropped",
                          {{"dropped", std::to_string(d - dropped_before)}});
                dropped_before = d;
                warned = now;
            }
        }
        // Workers hand over at most every tick (10 ms) or each 64 KiB: polling at that pace
        // costs 100 wake-ups a second and no cross-thread signal on the request path.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

void access_log_writer::write_all(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        const int err = errno;
        write_failures_.fetch_add(1);
        const auto now = std::chrono::steady_clock::now();
        if (now - last_warning_ > std::chrono::seconds(10)) {
            last_warning_ = now;
            log::warn("access_log", "cannot write the access log; lines are lost",
                      {{"error", std::strerror(err)}});
        }
        return;
    }
}

}  // namespace stagegate::proxy
