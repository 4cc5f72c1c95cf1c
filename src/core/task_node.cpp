#include "spindle/detail/task_node.hpp"

#include "detail/loop_access.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/outcome.hpp"

namespace spindle::detail {

task_node::task_node(event_loop& loop, std::coroutine_handle<> root, promise_base& promise,
                     std::string&& name, std::source_location where) noexcept
    : loop_(&loop), root_(root), promise_(&promise), resume_(root), where_(where) {
  run_ready = &task_node::run;
  // Most tasks are unnamed (named by their spawn site): moving an empty
  // string still copies its buffer, so only a name is moved.
  if (!name.empty()) name_ = std::move(name);
  root_scope_.attach_root(loop);
  root_scope_.add_task(this);
}

task_node::~task_node() {
  if (root_) root_.destroy();
  if (!done_) {
    scope_->remove_task(this);
    root_scope_.detach();
  }
}

const std::exception_ptr& task_node::exception() const noexcept { return promise_->exception(); }

namespace {
// Cancelled before it ever ran: it never starts (its frame holds only its
// arguments), and it ends as cancelled like any other. Out of line, so the
// step's path saves no registers for it.
[[gnu::noinline, gnu::cold]] void end_unstarted(promise_base& p, task_node& n) noexcept {
  p.set_exception(std::make_exception_ptr(cancelled_error("task cancelled before it started")));
  n.on_root_done();
}
}  // namespace

void task_node::run(ready_node* self) noexcept {
  auto* n = &static_cast<task_node&>(*self);  // a reference: no null check
  if (!n->started_) {
    n->started_ = true;
    if (n->cancel_requested()) [[unlikely]] {
      end_unstarted(*n->promise_, *n);
      return;
    }
  }
  thread_context& ctx = tls_context;
  task_node* outer = ctx.task;
  ctx.task = n;
  n->resume_.resume();  // n may be freed when this returns
  ctx.task = outer;
}

void task_node::wake() noexcept {
  hook_ = nullptr;
  loop_access::schedule(*loop_, this);
}

void task_node::request_cancel() noexcept {
  if (done_) return;
  root_scope_.cancel();
}

void task_node::interrupt() noexcept {
  if (hook_ != nullptr) {
    cancel_hook* h = hook_;
    hook_ = nullptr;
    h->on_cancel(h);
  }
}

void task_node::on_root_done() noexcept {
  done_ = true;
  hook_ = nullptr;
  // Every inner scope has been left (they live in the finished frames).
  root_scope_.remove_task(this);
  scope_ = &root_scope_;
  root_scope_.detach();
  if (on_done_hook != nullptr) on_done_hook(this, on_done_arg);
  loop_access::on_task_done(*loop_, this);
  if (joiner_ != nullptr) {
    task_node* j = joiner_;
    joiner_ = nullptr;
    j->wake();
  }
  if (handles_ == 0) report_unobserved();
  release();  // the loop's reference; may free this node and its frame
}

void task_node::release() noexcept {
  if (--refs_ == 0) delete this;
}

void task_node::release_handle() noexcept {
  --handles_;
  if (handles_ == 0 && done_) report_unobserved();
  release();
}

void task_node::report_unobserved() noexcept {
  if (observed_) return;
  const std::exception_ptr& e = exception();
  if (!e || is_cancellation(e)) return;
  observed_ = true;
  loop_->report({diagnostic::kind::unobserved_failure, loop_->name(), name_, where_,
                 "task failed and nobody awaited it: " + error_message(e), e});
}

void promise_base::notify_root_done(task_node* node) noexcept { node->on_root_done(); }

void throw_invalid_task() { throw usage_error("awaited an empty task (moved-from or default-constructed)"); }

void check_loop_owner(const task_node& n, const char* method) { loop_access::check_owner(n.loop(), method); }

}  // namespace spindle::detail
