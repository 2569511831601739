// A particle system on an object pool.
//
// Particles are created and destroyed by the thousand every second, all with the same size.
// memkit::object_pool keeps their storage in chunks with an intrusive free list, so spawning is a
// pop and dying is a push (no malloc, no fragmentation), and make_unique hands out owners that
// return the object to the pool when they are dropped.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include <memkit/alloc/object_pool.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "pool_objects: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct particle {
    particle(float px, float py, float pvx, float pvy, int life) noexcept
        : x(px), y(py), vx(pvx), vy(pvy), ttl(life) {}

    void step(float dt) noexcept {
        x += vx * dt;
        y += vy * dt;
        vy -= 9.81f * dt;
        --ttl;
    }

    float x, y, vx, vy;
    int ttl; // frames left to live
};

using particle_pool = memkit::object_pool<particle>;
using particle_ptr = std::unique_ptr<particle, particle_pool::deleter>;

// A trail owns a buffer of points. With a reset() member, the pool keeps released trails
// constructed and hands them out again, so the buffer's capacity survives and a recycled trail
// records its points without allocating. validate() keeps oversized buffers from being retained.
struct trail {
    std::vector<float> points;

    void reset() noexcept { points.clear(); }
    bool validate() const noexcept { return points.capacity() <= 1024; }
};

void recycle_trails() {
    memkit::object_pool<trail> trails;
    trail* t = trails.acquire();
    t->points.resize(256);
    const float* buffer = t->points.data();
    trails.release(t); // reset() and retained, not destroyed
    require(trails.retained_count() == 1, "a released trail is kept for reuse");

    trail* again = trails.acquire(); // no arguments: a retained object comes back first
    require(again->points.empty() && again->points.capacity() >= 256,
            "the recycled trail is reset but keeps its buffer");
    again->points.push_back(1.0f);
    require(again->points.data() == buffer, "no new buffer was allocated");

    again->points.resize(4096); // too big to keep around
    trails.release(again);
    require(trails.retained_count() == 0 && trails.rejected_count() == 1,
            "an object that fails validate() is destroyed instead of retained");
    std::printf("trails: %zu retained, %zu rejected\n", trails.retained_count(),
                trails.rejected_count());
}

} // namespace

int main() {
    particle_pool pool;
    pool.reserve(512); // the expected peak, so the simulation never grows the pool
    const std::size_t reserved = pool.stats().capacity;

    std::vector<particle_ptr> live;
    std::size_t spawned = 0;
    std::size_t peak = 0;

    for (int frame = 0; frame < 300; ++frame) {
        // An emitter spawns a burst every frame; particles live 10 to 29 frames.
        for (int i = 0; i < 16; ++i) {
            const float spread = static_cast<float>(i) - 7.5f;
            live.push_back(pool.make_unique(0.0f, 0.0f, spread, 20.0f, 10 + (frame + i) % 20));
            ++spawned;
        }
        for (particle_ptr& p : live) p->step(1.0f / 60.0f);
        // Dropping a particle_ptr gives its particle back to the pool.
        std::erase_if(live, [](const particle_ptr& p) { return p->ttl <= 0; });

        peak = std::max(peak, live.size());
        require(pool.size() == live.size(), "the pool counts exactly the live particles");
    }

    std::printf("%zu particles spawned, at most %zu alive, %zu alive now\n", spawned, peak,
                live.size());
    std::printf("pool: %zu bytes in use, capacity %zu bytes\n", pool.stats().bytes_in_use,
                pool.stats().capacity);
    require(pool.stats().capacity == reserved, "reserve() covered the peak: the pool never grew");

    // acquire/release are the raw counterparts of make_unique.
    particle* spark = pool.acquire(1.0f, 2.0f, 0.0f, 0.0f, 1);
    require(pool.size() == live.size() + 1, "acquire adds a live object");
    pool.release(spark);

    live.clear();
    require(pool.size() == 0, "every particle went back to the pool");

    recycle_trails();
    std::puts("pool_objects: ok");
    return 0;
}
