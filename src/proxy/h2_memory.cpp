#include "h2_memory.hpp"

#include <cstddef>
#include <cstring>

#include "block_cache.hpp"

namespace stagegate::proxy {
namespace {

// Each block starts with its size, since nghttp2 frees without one; 16 bytes keep what
// follows aligned for any type nghttp2 stores.
constexpr std::size_t header = 16;

// Null when the heap is exhausted, as malloc: nghttp2 then fails the call with
// NGHTTP2_ERR_NOMEM (an exception must not cross its C frames).
void* allocate(std::size_t size, void*) {
    if (size > static_cast<std::size_t>(-1) - header) {
        return nullptr;
    }
    auto* block = static_cast<unsigned char*>(block_cache::local().try_allocate(size + header));
    if (!block) {
        return nullptr;
    }
    std::memcpy(block, &size, sizeof size);
    return block + header;
}

std::size_t size_of(void* ptr) {
    std::size_t size = 0;
    std::memcpy(&size, static_cast<unsigned char*>(ptr) - header, sizeof size);
    return size;
}

void release(void* ptr, void*) {
    if (ptr) {
        block_cache::local().deallocate(static_cast<unsigned char*>(ptr) - header,
                                        size_of(ptr) + header);
    }
}

void* allocate_zeroed(std::size_t count, std::size_t size, void* user) {
    if (size != 0 && count > (static_cast<std::size_t>(-1) - header) / size) {
        return nullptr;
    }
    void* ptr = allocate(count * size, user);
    if (ptr) {
        std::memset(ptr, 0, count * size);
    }
    return ptr;
}

void* reallocate(void* ptr, std::size_t size, void* user) {
    if (!ptr) {
        return allocate(size, user);
    }
    const auto old_size = size_of(ptr);
    if (size == old_size) {
        return ptr;
    }
    void* moved = allocate(size, user);
    if (!moved) {
        return nullptr;  // as realloc: the old block stays the caller's
    }
    std::memcpy(moved, ptr, old_size < size ? old_size : size);
    release(ptr, user);
    return moved;
}

nghttp2_mem memory{nullptr, allocate, release, allocate_zeroed, reallocate};

}  // namespace

nghttp2_mem* h2_memory() {
    return &memory;
}

}  // namespace stagegate::proxy
