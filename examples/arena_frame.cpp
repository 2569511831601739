// Per-frame scratch memory with an arena.
//
// A game or a request handler builds short-lived data every iteration: visible objects, sort
// keys, temporary strings. Giving each frame an arena::scope makes all of it disappear at the end
// of the frame in O(1), and after the first frame the arena has grown to its working size, so a
// steady-state frame never calls malloc.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory_resource>
#include <vector>

#include <memkit/alloc/arena.hpp>
#include <memkit/pmr/resource.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "arena_frame: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct entity {
    float x, y, radius;
};

// The frame's work: collect the entities inside the view, then sum their areas.
double render_frame(memkit::arena& scratch, const std::vector<entity>& world, float view) {
    memkit::resource frame_memory{scratch}; // refers to `scratch`, adds no state of its own
    std::pmr::vector<const entity*> visible{&frame_memory};
    visible.reserve(world.size());
    for (const entity& e : world)
        if (e.x * e.x + e.y * e.y <= view * view) visible.push_back(&e);

    double area = 0.0;
    for (const entity* e : visible) area += 3.14159 * e->radius * e->radius;
    return area;
}

} // namespace

int main() {
    std::vector<entity> world;
    for (int i = 0; i < 2000; ++i) {
        const auto f = static_cast<float>(i);
        world.push_back(
            {f * 0.05f - 50.0f, (f * 0.031f) - 31.0f, 0.5f + static_cast<float>(i % 7)});
    }

    // 64 KiB holds a whole frame, so the arena settles on one block.
    memkit::arena scratch{memkit::arena_options{.block_size = 64 * 1024}};
    std::size_t capacity_after_first = 0;

    for (int frame = 0; frame < 60; ++frame) {
        {
            const memkit::arena::scope frame_scope{scratch}; // everything below is freed at '}'
            const float view = 20.0f + static_cast<float>(frame % 10);
            const double area = render_frame(scratch, world, view);
            require(area > 0.0, "some entities are visible every frame");
            require(scratch.stats().bytes_in_use > 0, "the frame's data lives in the arena");
            if (frame % 15 == 0)
                std::printf("frame %2d: area %8.1f, %zu bytes in %zu arena block(s)\n", frame, area,
                            scratch.stats().bytes_in_use, scratch.block_count());
        }
        require(scratch.stats().bytes_in_use == 0, "the scope gave the frame's memory back");
        if (frame == 0) capacity_after_first = scratch.capacity();
    }

    const memkit::allocator_stats s = scratch.stats();
    std::printf("after 60 frames: %zu bytes in use, capacity %zu bytes, peak %zu bytes\n",
                s.bytes_in_use, s.capacity, s.peak_bytes);
    require(s.bytes_in_use == 0, "every frame's scope gave its memory back");
    require(scratch.capacity() == capacity_after_first,
            "steady-state frames reuse the arena's blocks instead of growing it");
    std::puts("arena_frame: ok");
    return 0;
}
