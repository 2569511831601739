// memkit::virtual_arena's cold paths: construction, growth (committing) and decommitting.
#include "memkit/vm/virtual_arena.hpp"

#include <algorithm>
#include <limits>

namespace memkit {

virtual_arena::virtual_arena(virtual_arena_options opts)
    : opts_(opts), res_(opts.reserve_size, reservation_options{0, opts.huge_pages}) {
    // Transparent huge pages back only whole, aligned huge pages of one committed mapping, so
    // the arena commits in huge pages; otherwise in the reservation's granularity.
    std::size_t unit = res_.granularity();
    if (res_.huge_pages() == huge_page_status::transparent)
        unit = std::max(unit, vm::huge_page_size());
    std::size_t step = 0;
    if (!checked_align_up(std::max(opts_.commit_step, std::size_t{1}), unit, step)) step = unit;
    step_ = step;
    cur_ = res_.data();
    // Explicit huge pages arrive committed: the whole reservation is usable at once.
    end_ = res_.data() + res_.committed();
}

virtual_arena::virtual_arena(virtual_arena&& o) noexcept
    : cur_(std::exchange(o.cur_, nullptr)), bytes_(std::exchange(o.bytes_, 0)),
      end_(std::exchange(o.end_, nullptr)), allocations_(std::exchange(o.allocations_, 0)),
      deallocations_(std::exchange(o.deallocations_, 0)), peak_(std::exchange(o.peak_, 0)),
      step_(o.step_), opts_(o.opts_), res_(std::move(o.res_)) {}

virtual_arena& virtual_arena::operator=(virtual_arena&& o) noexcept {
    if (this != &o) {
        cur_ = std::exchange(o.cur_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
        end_ = std::exchange(o.end_, nullptr);
        allocations_ = std::exchange(o.allocations_, 0);
        deallocations_ = std::exchange(o.deallocations_, 0);
        peak_ = std::exchange(o.peak_, 0);
        step_ = o.step_;
        opts_ = o.opts_;
        res_ = std::move(o.res_);
    }
    return *this;
}

bool virtual_arena::grow_to(std::size_t need) noexcept {
    const std::size_t have = static_cast<std::size_t>(end_ - res_.data());
    if (need <= have) return true;
    if (need > res_.size()) return false;
    // Whole steps past the committed end, clamped to the reservation.
    std::size_t target = 0;
    if (!checked_align_up(need, step_, target) || target > res_.size()) target = res_.size();
    if (res_.try_commit(have, target - have)) return false;
    // Best effort: without MADV_POPULATE_WRITE the pages simply fault in at first touch.
    if (opts_.populate) (void)vm::populate(res_.data() + have, target - have);
    end_ = res_.data() + target;
    return true;
}

void* virtual_arena::allocate_slow(std::size_t size, std::size_t align) noexcept {
    if (size == 0 || !is_pow2(align) || align > max_alignment || res_.empty()) return nullptr;
    const std::size_t top = used();
    std::size_t start = 0, need = 0;
    if (!checked_align_up(top, align, start) || !checked_add(start, size, need)) return nullptr;
    if (!grow_to(need)) return nullptr;
    cur_ = res_.data() + need;
    bytes_ += size;
    ++allocations_;
    return res_.data() + start;
}

void virtual_arena::fail(std::size_t size, std::size_t align) const {
    // A moved-from arena has no reservation: it is out of memory, not asked for too much.
    if (size == 0 || !is_pow2(align) || align > max_alignment ||
        (size > max_size() && !res_.empty()))
        throw_bad_request(name, size, align, max_size(), max_alignment);
    throw out_of_memory(name, size, res_.size() - used(), bytes_, committed());
}

void virtual_arena::commit_ahead(std::size_t bytes) {
    if (bytes > res_.size() || !grow_to(bytes))
        throw out_of_memory(name, bytes, res_.size() - used(), bytes_, committed());
}

void virtual_arena::reset_to(std::size_t keep) noexcept {
    note_peak();
    cur_ = res_.data();
    deallocations_ += allocations_;
    bytes_ = 0;
    allocations_ = 0;
    trim(keep);
}

void virtual_arena::trim(std::size_t keep_bytes) noexcept {
    if (res_.empty()) return;
    // Explicit huge pages are the pool's, committed for the reservation's lifetime.
    if (res_.huge_pages() == huge_page_status::explicit_pages) return;
    std::size_t keep = std::max(keep_bytes, used());
    if (!checked_align_up(keep, step_, keep) || keep > res_.size()) keep = res_.size();
    const std::size_t have = static_cast<std::size_t>(end_ - res_.data());
    if (keep >= have) return;
    // A failed decommit (which the kernel reports only for resource exhaustion while splitting a
    // mapping) keeps the memory committed and usable: the arena stays consistent either way.
    if (!res_.try_decommit(keep, have - keep)) end_ = res_.data() + keep;
}

} // namespace memkit
