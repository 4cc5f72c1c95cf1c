#pragma once
/// \file
/// task_node for a task<T>: owns the coroutine and hands out its result.

#include <string>
#include <utility>

#include "spindle/detail/task_node.hpp"
#include "spindle/task.hpp"

namespace spindle::detail {

template <class T>
class typed_task_node final : public task_node {
 public:
  typed_task_node(event_loop& loop, task<T>&& t, std::string&& name, std::source_location where)
      : task_node(loop, t.handle(), t.handle().promise(), std::move(name), where),
        promise_(&t.handle().promise()) {
    promise_->set_root(this);
    (void)t.release();  // the node now owns the frame
  }

  /// The value, or rethrows the exception. Once only.
  decltype(auto) take() {
    mark_taken();
    return promise_->take();
  }

 private:
  task_promise<T>* promise_;
};

}  // namespace spindle::detail
