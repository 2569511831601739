// memkit/memkit.hpp - the umbrella header: every public memkit header in one include.
//
// Prefer the specific headers in libraries (they compile faster); this one is for applications
// and experiments.
//
//   #include <memkit/memkit.hpp>
//   memkit::arena a;
//   memkit::resource r{a};
#pragma once

#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/barrier.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/spin_lock.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/storage.hpp"
#include "memkit/core/traits.hpp"

#include "memkit/alloc/aligned.hpp"
#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/buddy.hpp"
#include "memkit/alloc/concurrent_arena.hpp"
#include "memkit/alloc/concurrent_pool.hpp"
#include "memkit/alloc/growing_pool.hpp"
#include "memkit/alloc/object_pool.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/slab.hpp"
#include "memkit/alloc/stack.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/alloc/thread_cache.hpp"
#include "memkit/alloc/tlsf.hpp"

#include "memkit/compose/affix.hpp"
#include "memkit/compose/budgeted.hpp"
#include "memkit/compose/fallback.hpp"
#include "memkit/compose/segregator.hpp"
#include "memkit/compose/stats_collector.hpp"
#include "memkit/compose/synchronized.hpp"

#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"

#include "memkit/container/bump_vector.hpp"
#include "memkit/container/circular_buffer.hpp"
#include "memkit/container/flat_map.hpp"
#include "memkit/container/flat_set.hpp"
#include "memkit/container/intrusive_list.hpp"
#include "memkit/container/small_vector.hpp"
#include "memkit/container/spsc_ring.hpp"
#include "memkit/container/stable_vector.hpp"

#include "memkit/heap/buffer_pool.hpp"
#include "memkit/heap/managed_heap.hpp"
#include "memkit/heap/memory_budget.hpp"
#include "memkit/heap/memory_system.hpp"
#include "memkit/heap/pressure_level.hpp"
#include "memkit/heap/system_pressure_monitor.hpp"

#include "memkit/cache/lru_cache.hpp"
#include "memkit/cache/sharded_lru_cache.hpp"

#include "memkit/debug/debug_allocator.hpp"
#include "memkit/debug/memory_tracker.hpp"
#include "memkit/debug/stack_trace.hpp"

#include "memkit/vm/ksm.hpp"
#include "memkit/vm/mapped_file.hpp"
#include "memkit/vm/offset_ptr.hpp"
#include "memkit/vm/shared_memory.hpp"
#include "memkit/vm/shm_heap.hpp"
#include "memkit/vm/virtual_arena.hpp"
#include "memkit/vm/virtual_memory.hpp"
