// Game entities in a memkit::stable_vector, referring to each other by plain pointer.
//
// Entities attack a target they hold as an `entity*`. Entities die and are erased in the middle of
// the simulation while others keep pointing at their neighbours, and newcomers spawn into the
// slots the dead left behind: no pointer to a live entity ever moves, the container never grows
// past its first size, and the survivors keep their addresses from the first tick to the last.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <random>
#include <set>
#include <vector>

#include <memkit/container/stable_vector.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "stable_vector: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct entity {
    int id;
    float x, y, vx, vy;
    int hp;
    entity* target; // another entity of the same world, or nullptr
};

} // namespace

int main() {
    memkit::stable_vector<entity> world;
    std::mt19937 rng{42};
    int next_id = 0;
    auto spawn = [&](int hp) {
        const auto v = [&] { return static_cast<float>(rng() % 21) - 10.0f; };
        return &*world.emplace(entity{next_id++, v(), v(), v() / 10, v() / 10, hp, nullptr});
    };
    auto pick_target = [&](entity& e) {
        auto it = world.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(rng() % world.size()));
        e.target = &*it == &e ? nullptr : &*it;
    };

    entity* hero = spawn(1000000); // never dies: its address must hold for the whole run
    for (int i = 1; i < 1000; ++i) spawn(50 + static_cast<int>(rng() % 100));
    for (entity& e : world) pick_target(e);
    const std::size_t capacity = world.capacity();

    std::size_t despawned = 0, reused_slots = 0;
    for (int tick = 0; tick < 200; ++tick) {
        for (entity& e : world) {
            e.x += e.vx;
            e.y += e.vy;
            if (e.target != nullptr) e.target->hp -= 1 + static_cast<int>(rng() % 3);
        }
        // The dead leave: O(1) per erase, nobody else moves.
        std::set<const entity*> freed;
        for (auto it = world.begin(); it != world.end();) {
            if (it->hp <= 0) {
                freed.insert(&*it);
                it = world.erase(it);
            } else {
                ++it;
            }
        }
        despawned += freed.size();
        for (entity& e : world)
            if (freed.count(e.target) != 0) e.target = nullptr; // drop pointers to the dead
        // Newcomers take the freed slots.
        for (std::size_t k = 0; k < freed.size(); ++k) {
            entity* e = spawn(50 + static_cast<int>(rng() % 100));
            reused_slots += freed.count(e);
        }
        for (entity& e : world)
            if (e.target == nullptr) pick_target(e);
    }

    require(world.size() == 1000, "as many spawned as despawned");
    require(world.capacity() == capacity, "the holes were reused, the container did not grow");
    require(reused_slots == despawned, "every newcomer took a dead entity's slot");
    require(hero->id == 0 && world.is_active(hero), "the hero never moved");
    for (const entity& e : world)
        require(e.target == nullptr || world.is_active(e.target), "every target is alive");

    std::printf("1000 entities, 200 ticks: %zu despawned and respawned in place\n", despawned);
    std::printf("capacity %zu slots (unchanged), hero #%d still at %p\n", world.capacity(),
                hero->id, static_cast<const void*>(hero));
    return EXIT_SUCCESS;
}
