// The umbrella header includes every public header: they must compile together (no clashing
// names in shared namespaces) and the types they declare must be usable side by side.
#include "memkit/memkit.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace {

TEST(Umbrella, EveryAreaIsUsableTogether) {
    memkit::arena scratch;
    memkit::resource r{scratch};

    memkit::pmr::small_vector<int, 4> small{&r};
    for (int i = 0; i < 8; ++i) small.push_back(i);
    EXPECT_FALSE(small.is_inline());
    EXPECT_TRUE(scratch.owns(small.data()));

    memkit::flat_map<std::string, int, std::less<>> ids;
    ids.emplace("b", 2);
    ids.emplace("a", 1);
    EXPECT_EQ(ids.find(std::string_view{"a"})->second, 1);
    EXPECT_EQ(ids.begin()->first, "a");

    memkit::flat_set<int> s{3, 1, 2, 3};
    EXPECT_EQ(s.size(), 3u);
    EXPECT_LT((memkit::small_vector<int, 4>{0, 1}), (memkit::small_vector<int, 4>{0, 2}));

    memkit::circular_buffer<int> last(2);
    last.push_back(1);
    last.push_back(2);
    last.push_back(3);
    EXPECT_EQ(last.front(), 2);

    memkit::memory_budget budget{1024};
    EXPECT_TRUE(budget.try_reserve(1000));
    EXPECT_FALSE(budget.try_reserve(100));
    budget.release(1000);
    EXPECT_EQ(budget.used(), 0u);

    memkit::virtual_arena grows;
    memkit::resource far_r{grows};
    memkit::pmr::small_vector<int, 4> far{&far_r};
    far.assign(100, 7);
    EXPECT_TRUE(grows.owns(far.data()));
    memkit::offset_ptr<int> op{far.data()};
    EXPECT_EQ(*op, 7);
}

} // namespace
