// block_cache: which free list a size takes its block from, and how many blocks each list
// keeps (the rest go back to the heap, so a burst does not pin its peak for good).
#include "proxy/block_cache.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace stagegate::proxy {
namespace {

// Each test runs on a thread of its own: a fresh thread-local cache, empty at the start.
template <class F>
void on_fresh_thread(F f) {
    std::thread(f).join();
}

TEST(BlockCache, ASizeTakesTheSmallestClassThatHoldsIt) {
    on_fresh_thread([] {
        auto& cache = block_cache::local();
        // Sizes at and around each class's bound: a freed block serves any size of its class
        // and none of the next.
        for (std::size_t c = 0; c < block_cache::classes; ++c) {
            const std::size_t bound = block_cache::smallest << c;
            const std::size_t lowest = c == 0 ? 1 : (bound >> 1) + 1;
            void* p = cache.allocate(bound);
            cache.deallocate(p, lowest);
            EXPECT_EQ(cache.cached_for(bound), 1u) << bound;
            EXPECT_EQ(cache.cached_for(lowest), 1u) << bound;
            if (c + 1 < block_cache::classes) {
                EXPECT_EQ(cache.cached_for(bound + 1), 0u) << bound;
            }
            EXPECT_EQ(cache.allocate(lowest), p) << bound;  // the same block back
            cache.deallocate(p, bound);
            EXPECT_EQ(cache.allocate(bound), p) << bound;
            cache.deallocate(p, bound);
        }
        // Past the largest class: the heap's, never cached.
        void* big = cache.allocate(block_cache::largest + 1);
        cache.deallocate(big, block_cache::largest + 1);
        EXPECT_EQ(cache.cached_for(block_cache::largest + 1), 0u);
    });
}

TEST(BlockCache, EachClassKeepsUpToItsCapAndGivesTheRestBack) {
    on_fresh_thread([] {
        auto& cache = block_cache::local();
        for (const std::size_t bytes : {std::size_t{64}, std::size_t{1024}, block_cache::largest}) {
            const std::size_t cap = block_cache::max_cached_bytes_per_class / bytes < 256
                                        ? 256
                                        : block_cache::max_cached_bytes_per_class / bytes;
            std::vector<void*> blocks(cap + 10);
            for (auto& b : blocks) {
                b = cache.allocate(bytes);
            }
            for (void* b : blocks) {
                cache.deallocate(b, bytes);
            }
            EXPECT_EQ(cache.cached_for(bytes), cap) << bytes;
            // Taken back without growing: the kept blocks are the ones handed out next.
            for (std::size_t i = 0; i < cap; ++i) {
                blocks[i] = cache.allocate(bytes);
            }
            EXPECT_EQ(cache.cached_for(bytes), 0u) << bytes;
            for (std::size_t i = 0; i < cap; ++i) {
                cache.deallocate(blocks[i], bytes);
            }
        }
    });
}

}  // namespace
}  // namespace stagegate::proxy
