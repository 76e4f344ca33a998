#include "proxy/h2_memory.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace stagegate::proxy {
namespace {

TEST(H2Memory, BlocksKeepTheirBytesAlignmentAndSizeThroughReallocation) {
    auto* mem = h2_memory();
    auto* p = static_cast<unsigned char*>(mem->malloc(40, mem->mem_user_data));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
    for (int i = 0; i < 40; ++i) {
        p[i] = static_cast<unsigned char>(i);
    }
    // Growing past its class and shrinking again: the bytes that fit are kept.
    p = static_cast<unsigned char*>(mem->realloc(p, 5000, mem->mem_user_data));
    ASSERT_NE(p, nullptr);
    for (int i = 0; i < 40; ++i) {
        ASSERT_EQ(p[i], i);
    }
    std::memset(p + 40, 0xab, 5000 - 40);
    p = static_cast<unsigned char*>(mem->realloc(p, 20, mem->mem_user_data));
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(p[i], i);
    }
    mem->free(p, mem->mem_user_data);
    mem->free(nullptr, mem->mem_user_data);  // as free(NULL)
    // Past the cache's largest class (straight to the heap) and back.
    auto* big = static_cast<unsigned char*>(mem->realloc(nullptr, 100000, mem->mem_user_data));
    big[99999] = 7;
    mem->free(big, mem->mem_user_data);
}

TEST(H2Memory, ZeroedBlocksAreZeroEvenWhenReused) {
    auto* mem = h2_memory();
    // Dirty a block of the same class, free it, and take it back zeroed.
    auto* dirty = static_cast<unsigned char*>(mem->malloc(100, mem->mem_user_data));
    std::memset(dirty, 0xff, 100);
    mem->free(dirty, mem->mem_user_data);
    auto* zeroed = static_cast<unsigned char*>(mem->calloc(10, 10, mem->mem_user_data));
    EXPECT_EQ(zeroed, dirty);  // the same block came back from the thread's list
    for (int i = 0; i < 100; ++i) {
        ASSERT_EQ(zeroed[i], 0) << i;
    }
    mem->free(zeroed, mem->mem_user_data);
    // A count times size that overflows is refused, as calloc's, whatever the size.
    EXPECT_EQ(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data), nullptr);
    EXPECT_EQ(mem->calloc(2, SIZE_MAX / 2, mem->mem_user_data), nullptr);
    EXPECT_EQ(mem->calloc(1, SIZE_MAX - 8, mem->mem_user_data), nullptr);
    EXPECT_EQ(mem->malloc(SIZE_MAX - 8, mem->mem_user_data), nullptr);  // past the size header
}

}  // namespace
}  // namespace stagegate::proxy
