// Private to proxy: per-thread free lists for the short-lived blocks of each request (Beast's
// header fields, request bodies, the exchange's relay_state). A worker allocates and frees them on its own thread, so a
// block goes back to the list it came from: no lock, no atomic, and no trip to malloc once the
// lists are warm.
#pragma once

#include <array>
#include <cstddef>
#include <new>
#include <vector>

namespace stagegate::proxy {

class block_cache {
public:
    static constexpr std::size_t smallest = 64;
    static constexpr std::size_t classes = 8;  // 64 B .. 8 KiB
    static constexpr std::size_t largest = smallest << (classes - 1);
    static constexpr std::size_t max_cached_per_class = 256;

    static block_cache& local() {
        thread_local block_cache cache;
        return cache;
    }

    void* allocate(std::size_t bytes) {
        if (bytes > largest) {
            return ::operator new(bytes);
        }
        auto c = class_of(bytes);
        auto& list = free_[c];
        if (!list.empty()) {
            void* p = list.back();
            list.pop_back();
            return p;
        }
        return ::operator new(smallest << c);
    }

    void deallocate(void* p, std::size_t bytes) {
        if (bytes > largest) {
            ::operator delete(p);
            return;
        }
        auto& list = free_[class_of(bytes)];
        if (list.size() < max_cached_per_class) {
            list.push_back(p);
        } else {
            ::operator delete(p);
        }
    }

    ~block_cache() {
        for (auto& list : free_) {
            for (void* p : list) {
                ::operator delete(p);
            }
        }
    }

private:
    static std::size_t class_of(std::size_t bytes) {
        std::size_t c = 0;
        while ((smallest << c) < bytes) {
            ++c;
        }
        return c;
    }

    std::array<std::vector<void*>, classes> free_;
};

// A stateless allocator over the calling thread's block_cache.
template <class T>
struct cached_allocator {
    using value_type = T;
    cached_allocator() noexcept = default;
    template <class U>
    cached_allocator(const cached_allocator<U>&) noexcept {}

    T* allocate(std::size_t n) {
        return static_cast<T*>(block_cache::local().allocate(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept {
        block_cache::local().deallocate(p, n * sizeof(T));
    }
    template <class U>
    bool operator==(const cached_allocator<U>&) const noexcept {
        return true;
    }
};

}  // namespace stagegate::proxy
