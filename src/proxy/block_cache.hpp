// Private to proxy: per-thread free lists for the short-lived blocks of each request (Beast's
// header fields, request bodies, the exchange's relay_state, nghttp2's sessions through
// h2_memory). A worker allocates and frees them on its own thread, so a block goes back to
// the list it came from: no lock, no atomic, and no trip to malloc once the lists are warm.
#pragma once

// Under AddressSanitizer a cached block is poisoned while it waits on its free list, all but
// its first word (the list's next pointer), so a use after it was given back is reported as it
// would be for malloc's blocks instead of hidden by the cache. The next pointer stays readable
// because LeakSanitizer skips pointers held in poisoned memory: a process ending with its
// workers' lists alive (exit from another thread) would otherwise report every block past a
// list's head as leaked.
#if defined(__SANITIZE_ADDRESS__)
#define STAGEGATE_BLOCK_CACHE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STAGEGATE_BLOCK_CACHE_ASAN 1
#endif
#endif
#ifdef STAGEGATE_BLOCK_CACHE_ASAN
#include <sanitizer/asan_interface.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

namespace stagegate::proxy {

class block_cache {
public:
    static constexpr std::size_t smallest = 64;
    static constexpr std::size_t classes = 8;  // 64 B .. 8 KiB
    static constexpr std::size_t largest = smallest << (classes - 1);
    // Each class keeps up to 256 KiB of free blocks (and at least 256 blocks): many small
    // blocks, since HTTP/2 holds a few per stream in flight and a worker can carry thousands.
    static constexpr std::size_t max_cached_bytes_per_class = 256 * 1024;
    static constexpr std::size_t max_cached_per_class(std::size_t c) {
        return std::max<std::size_t>(256, max_cached_bytes_per_class / (smallest << c));
    }

    static block_cache& local() {
        thread_local block_cache cache;
        return cache;
    }

    void* allocate(std::size_t bytes) {
        if (void* p = try_allocate(bytes)) {
            return p;
        }
        throw std::bad_alloc();  // as operator new
    }

    // Null when the heap is exhausted (for C callers such as nghttp2, and allocate).
    void* try_allocate(std::size_t bytes) noexcept {
        if (bytes > largest) {
            return ::operator new(bytes, std::nothrow);
        }
        auto c = class_of(bytes);
        auto& list = free_[c];
        if (void* p = list.head) {
            unpoison(p, smallest << c);
            list.head = *static_cast<void**>(p);
            --list.count;
            return p;
        }
        return ::operator new(smallest << c, std::nothrow);
    }

    void deallocate(void* p, std::size_t bytes) {
        if (bytes > largest) {
            ::operator delete(p);
            return;
        }
        const auto c = class_of(bytes);
        auto& list = free_[c];
        static constexpr auto caps = [] {
            std::array<std::size_t, classes> by_class{};
            for (std::size_t k = 0; k < classes; ++k) {
                by_class[k] = max_cached_per_class(k);
            }
            return by_class;
        }();
        if (list.count < caps[c]) {
            *static_cast<void**>(p) = list.head;
            list.head = p;
            ++list.count;
            poison(p, smallest << c);
        } else {
            ::operator delete(p);
        }
    }

    // Free blocks kept for requests of `bytes` (what the next allocations take without malloc).
    std::size_t cached_for(std::size_t bytes) const {
        return bytes > largest ? 0 : free_[class_of(bytes)].count;
    }

    ~block_cache() {
        for (std::size_t c = 0; c < classes; ++c) {
            while (void* p = free_[c].head) {
                unpoison(p, smallest << c);
                free_[c].head = *static_cast<void**>(p);
                ::operator delete(p);
            }
        }
    }

private:
    static void poison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t bytes) {
#ifdef STAGEGATE_BLOCK_CACHE_ASAN
        ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + sizeof(void*), bytes - sizeof(void*));
#endif
    }
    static void unpoison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t bytes) {
#ifdef STAGEGATE_BLOCK_CACHE_ASAN
        ASAN_UNPOISON_MEMORY_REGION(p, bytes);
#endif
    }

    // The smallest class whose blocks hold `bytes` (at most `largest`), without a loop: this
    // runs for every block nghttp2 and the request path take and give back, dozens per call.
    static std::size_t class_of(std::size_t bytes) {
        return bytes <= smallest ? 0 : std::bit_width(bytes - 1) - std::bit_width(smallest - 1);
    }

    // Each free block holds the next one's address in its first bytes (every block has room
    // for it): taking and giving back are a few instructions, with no array to grow.
    struct free_list {
        void* head = nullptr;
        std::size_t count = 0;
    };
    std::array<free_list, classes> free_;
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

// A request's own strings and lists (an HTTP/2 stream's answer fields, a backend call's).
using cached_string = std::basic_string<char, std::char_traits<char>, cached_allocator<char>>;
template <class T>
using cached_vector = std::vector<T, cached_allocator<T>>;
template <class K, class V>
using cached_map = std::unordered_map<K, V, std::hash<K>, std::equal_to<K>,
                                      cached_allocator<std::pair<const K, V>>>;

}  // namespace stagegate::proxy
