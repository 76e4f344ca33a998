// Test support: clients hammering model m on keep-alive connections until stopped; counts
// requests and anything but a 200, and keeps the slowest answer.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "support/test_client.hpp"

namespace stagegate::test {

class load {
  public:
    // `pause`: each thread's wait after each answer, to pace the load (0: as fast as it goes).
    explicit load(std::uint16_t port, int threads = 4, header_list headers = {},
                  std::chrono::milliseconds pause = std::chrono::milliseconds(0)) {
        for (int t = 0; t < threads; ++t) {
            threads_.emplace_back([this, port, headers, pause] {
                auto c = std::make_unique<connection>(port);
                while (!stop_) {
                    header_list h;
                    {
                        std::lock_guard lock(mutex_);
                        h = headers_.empty() ? headers : headers_;
                    }
                    const auto started = std::chrono::steady_clock::now();
                    auto r = c->request("POST", "/v1/models/m:predict", "{}", h);
                    const auto took = std::chrono::steady_clock::now() - started;
                    ++requests_;
                    {
                        std::lock_guard lock(mutex_);
                        slowest_ = std::max(slowest_, took);
                    }
                    if (r.status != 200) {
                        ++failures_;
                    }
                    if (r.status == 0 || !r.keep_alive) {
                        c = std::make_unique<connection>(port);
                    }
                    if (pause.count() > 0) {
                        std::this_thread::sleep_for(pause);  // pacing, not synchronisation
                    }
                }
            });
        }
    }
    ~load() { stop(); }
    void stop() {
        stop_ = true;
        for (auto& t : threads_) {
            if (t.joinable())
                t.join();
        }
    }
    // From now on every request carries these headers.
    void set_headers(header_list h) {
        std::lock_guard lock(mutex_);
        headers_ = std::move(h);
    }
    int requests() const { return requests_; }
    int failures() const { return failures_; }
    std::chrono::steady_clock::duration slowest() const {
        std::lock_guard lock(mutex_);
        return slowest_;
    }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<int> requests_{0};
    std::atomic<int> failures_{0};
    mutable std::mutex mutex_;
    header_list headers_;
    std::chrono::steady_clock::duration slowest_{};
    std::vector<std::thread> threads_;
};

}  // namespace stagegate::test
