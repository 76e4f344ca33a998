// Test support: a fresh directory (under /tmp by default), removed with everything in it at scope
// exit.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace stagegate::test {

struct temp_dir {
    std::string path;
    // `base`: where to make it ("/dev/shm" for data whose fsyncs should not wait on a disk
    // that other tests keep busy).
    explicit temp_dir(const std::string& base = "/tmp") {
        std::string t =
            (std::filesystem::is_directory(base) ? base : "/tmp") + "/stagegate-test-XXXXXX";
        if (!::mkdtemp(t.data())) {
            throw std::runtime_error("mkdtemp failed");
        }
        path = t;
    }
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
};

}  // namespace stagegate::test
