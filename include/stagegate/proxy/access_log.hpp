// proxy: the access log. Owns the line format (JSON lines or a %field% template), each
// worker's line buffer, and the writer thread that hands full buffers to the file.
// A worker formats its lines into its own buffer (no lock, no allocation once the buffer has
// grown to its working size) and hands the buffer over with one atomic exchange when it is
// large or at the worker's next 10 ms tick; the writer thread does every write(2), so a slow
// disk or a full pipe to `kubectl logs` never stalls a request. When the writer falls so far
// behind that a worker's buffer reaches its cap, lines are dropped and counted, not waited for.
// Must not touch: what a request did (the caller fills access_entry), routing, sockets.
#pragma once

#include "stagegate/config/config.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace stagegate::proxy {

// One request as logged. Views stay valid for the append() call only.
struct access_entry {
    std::string_view request_id;
    std::string_view client;  // the client's address, as X-Forwarded-For gets it
    std::string_view method;
    std::string_view path;
    unsigned client_version = 11;  // 10, 11 or 20 (HTTP/2)
    std::string_view model;        // empty: not routed
    std::string_view version;
    std::string_view stage;
    std::string_view route;     // how the version was chosen: forced, sticky, random, tripped
    unsigned status = 0;        // what the client was sent
    std::string_view code;      // the gateway's own error code, if it answered itself
    std::uint64_t bytes_received = 0;  // request body
    std::uint64_t bytes_sent = 0;      // response body
    std::string_view upstream;         // host:port of the backend, empty: none
    std::int64_t upstream_head_us = -1;  // from the request's start to the backend's head
    std::int64_t duration_us = 0;        // from the request's start to its last byte
    std::int64_t ttft_us = -1;           // a watched stream's first data event
    bool cut_short = false;
};

// A compiled format: "json", or a template whose %field%s (config::access_log_fields) are
// replaced and whose %% is a percent sign. Absent values are "-" in templates, null in JSON.
class access_format {
public:
    // The format must have passed config::access_log_format_problem.
    explicit access_format(std::string_view spec);
    // Appends one line, ending in '\n', for `e` ended at `now`.
    void append(std::string& out, const access_entry& e,
                std::chrono::system_clock::time_point now) const;

private:
    struct piece {
        int field = -1;  // index into config::access_log_fields; -1: literal text
        std::string text;
    };
    bool json_ = false;
    std::vector<piece> pieces_;
    // The formatted second of the last line: most lines share it.
    mutable std::int64_t cached_second_ = -1;
    mutable char second_text_[20] = {};
};

// One worker's lines on their way to the writer. Each worker has its own (with its own copy
// of the format, whose cached second is per thread).
class access_log_buffer {
public:
    access_log_buffer(std::string_view format, double sample);
    ~access_log_buffer();
    access_log_buffer(const access_log_buffer&) = delete;
    access_log_buffer& operator=(const access_log_buffer&) = delete;

    // --- The worker's thread ---
    // Logs `e` unless it is sampled out (`draw`: uniform in [0, 1)) or the writer is so far
    // behind that the buffer is at its cap (then it is counted as dropped). Answers of 500 and
    // more, cut-short answers and the gateway's own errors are never sampled out.
    void add(const access_entry& e, double draw);
    // The worker's tick: hands over whatever is there.
    void tick();

    // --- The writer's thread ---
    // Takes the lines handed over (null: none); the emptied string goes back with give_back().
    std::string* take() { return handed_.exchange(nullptr, std::memory_order_acquire); }
    void give_back(std::string* s);
    // Once the worker's thread has ended: its last lines.
    std::string& remaining() { return *filling_; }
    std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

    static constexpr std::size_t hand_over_bytes = 64 * 1024;
    static constexpr std::size_t cap_bytes = 8 * 1024 * 1024;

private:
    void hand_over();

    access_format format_;
    double sample_;
    std::string* filling_;
    std::atomic<std::string*> handed_{nullptr};
    std::atomic<std::string*> spare_{nullptr};
    std::atomic<std::uint64_t> dropped_{0};  // written by the worker only
};

// The writer thread and the file. One per data plane; every worker gets buffer(i).
class access_log_writer {
public:
    // Opens the file (appending; "stdout" and "stderr" are the process's own). Empty
    // `error_out` on success.
    access_log_writer(const config::access_log& cfg, std::uint32_t workers,
                      std::string& error_out);
    ~access_log_writer();  // stops the thread after a last flush; call after the workers end
    access_log_writer(const access_log_writer&) = delete;
    access_log_writer& operator=(const access_log_writer&) = delete;

    access_log_buffer& buffer(std::uint32_t worker) { return *buffers_[worker]; }
    // Lines dropped because the writer was behind, and writes that failed.
    std::uint64_t dropped() const;
    std::uint64_t write_failures() const { return write_failures_.load(); }
    // Writes everything handed over so far (tests; the thread does this every few ms).
    void flush_now();

private:
    void run();
    void write_all(const std::string& bytes);

    int fd_ = -1;
    bool own_fd_ = false;
    std::vector<std::unique_ptr<access_log_buffer>> buffers_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> write_failures_{0};
    std::mutex pass_mutex_;  // the writer thread's passes and flush_now; never a worker
    std::chrono::steady_clock::time_point last_warning_{};
    std::thread thread_;
};

}  // namespace stagegate::proxy
