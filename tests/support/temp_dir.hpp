// Test support: a fresh directory under /tmp, removed with everything in it at scope exit.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace stagegate::test {

struct temp_dir {
    std::string path;
    temp_dir() {
        char t[] = "/tmp/stagegate-test-XXXXXX";
        if (!::mkdtemp(t)) {
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
