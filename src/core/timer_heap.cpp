#include "spindle/detail/timer_heap.hpp"

namespace spindle::detail {

namespace {
constexpr std::size_t arity = 4;
}

void timer_heap::push(timer_entry* e) {
  e->seq = next_seq_++;
  heap_.push_back({e->deadline, e->seq, e});
  e->heap_index = heap_.size() - 1;
  sift_up(heap_.size() - 1);
}

timer_entry* timer_heap::pop() noexcept {
  if (heap_.empty()) return nullptr;
  timer_entry* t = heap_.front().entry;
  erase(t);
  return t;
}

void timer_heap::erase(timer_entry* e) noexcept {
  if (!e->queued()) return;
  std::size_t i = e->heap_index;
  e->heap_index = timer_entry::not_queued;
  slot last = heap_.back();
  heap_.pop_back();
  if (last.entry == e) return;
  place(i, last);
  // The moved entry may belong above or below its new place.
  if (i > 0 && before(last, heap_[(i - 1) / arity])) {
    sift_up(i);
  } else {
    sift_down(i);
  }
}

std::vector<timer_entry*> timer_heap::take_all() noexcept {
  std::vector<timer_entry*> all;
  all.reserve(heap_.size());
  for (const slot& s : heap_) {
    s.entry->heap_index = timer_entry::not_queued;
    all.push_back(s.entry);
  }
  heap_.clear();
  return all;
}

void timer_heap::sift_up(std::size_t i) noexcept {
  slot e = heap_[i];
  while (i > 0) {
    std::size_t parent = (i - 1) / arity;
    if (!before(e, heap_[parent])) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, e);
}

void timer_heap::sift_down(std::size_t i) noexcept {
  slot e = heap_[i];
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t first = i * arity + 1;
    if (first >= n) break;
    std::size_t best = first;
    std::size_t end = first + arity < n ? first + arity : n;
    for (std::size_t c = first + 1; c < end; ++c) {
      if (before(heap_[c], heap_[best])) best = c;
    }
    if (!before(heap_[best], e)) break;
    place(i, heap_[best]);
    i = best;
  }
  place(i, e);
}

}  // namespace spindle::detail
