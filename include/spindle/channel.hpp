#pragma once
/// \file
/// channel<T>: a bounded FIFO between tasks of one loop.

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "spindle/detail/wait_queue.hpp"
#include "spindle/error.hpp"

namespace spindle {

/// send() on a closed channel.
SPINDLE_DEFINE_ERROR(channel_closed_error, closed);

struct channel_statistics {
  std::string name;
  std::size_t capacity = 0;
  std::size_t size = 0;
  std::size_t waiting_senders = 0;
  std::size_t waiting_receivers = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  bool closed = false;
};

/// A bounded channel: send() waits while it is full (backpressure),
/// receive() waits while it is empty and returns nullopt once it is closed
/// and drained. close() wakes every waiter: receivers drain what is left,
/// senders get channel_closed_error.
///
/// **Thread safety:** one loop's tasks only.
/// **Cancellation:** send() and receive() are cancellation points; a
/// cancelled send() did not send, a cancelled receive() took nothing.
template <class T>
class channel {
 public:
  explicit channel(std::size_t capacity, std::string name = "channel")
      : name_(std::move(name)), capacity_(capacity == 0 ? 1 : capacity) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  class send_awaiter : public detail::waiter {
   public:
    send_awaiter(channel& c, T v) : c_(&c), value_(std::move(v)) {}
    [[nodiscard]] bool await_ready() {
      if (detail::cancel_pending()) return false;  // (park() then throws: nothing is sent)
      if (c_->closed_) return true;
      return c_->try_push(value_);
    }
    bool await_suspend(std::coroutine_handle<> h) {
      pending_ = true;
      return c_->senders_.park(*this, h, "channel::send");
    }
    void await_resume() {
      if (cancelled) throw cancelled_error();
      if (closed || (c_->closed_ && !sent_))
        throw channel_closed_error("send on closed channel '" + c_->name_ + "'");
    }

   private:
    friend class channel;
    channel* c_;
    T value_;
    bool pending_ = false;
    bool sent_ = false;
  };

  class receive_awaiter : public detail::waiter {
   public:
    explicit receive_awaiter(channel& c) : c_(&c) {}
    [[nodiscard]] bool await_ready() {
      // A cancelled task takes nothing: park() throws before the buffer is touched.
      return (!c_->buffer_.empty() || c_->closed_) && !detail::cancel_pending();
    }
    bool await_suspend(std::coroutine_handle<> h) {
      return c_->receivers_.park(*this, h, "channel::receive");
    }
    std::optional<T> await_resume() {
      if (cancelled) throw cancelled_error();
      if (value_) return std::move(value_);
      return c_->try_receive();  // ready path: buffer or closed
    }

   private:
    friend class channel;
    channel* c_;
    std::optional<T> value_;
  };

  /// Sends `v`, waiting for room while the channel is full.
  [[nodiscard]] send_awaiter send(T v) { return send_awaiter(*this, std::move(v)); }
  /// Receives the next value; nullopt once closed and empty.
  [[nodiscard]] receive_awaiter receive() { return receive_awaiter(*this); }

  /// Sends without waiting; false if full (or closed), and then `v` is
  /// left as it was (the caller may still send it with send()).
  bool try_send(T&& v) { return !closed_ && try_push(v); }
  bool try_send(const T& v) {
    if (closed_ || (receivers_.empty() && buffer_.size() >= capacity_)) return false;
    T copy(v);
    return try_push(copy);
  }
  /// Receives without waiting; nullopt if empty.
  std::optional<T> try_receive() {
    if (buffer_.empty()) return std::nullopt;
    std::optional<T> v(std::move(buffer_.front()));
    buffer_.pop_front();
    ++received_;
    refill_from_senders();
    return v;
  }

  /// No more sends; wakes all waiters.
  void close() noexcept {
    if (closed_) return;
    closed_ = true;
    while (detail::waiter* w = receivers_.pop_front()) detail::wait_queue::wake(*w);
    while (detail::waiter* w = senders_.pop_front()) {
      w->closed = true;
      detail::wait_queue::wake(*w);
    }
  }
  [[nodiscard]] bool closed() const noexcept { return closed_; }
  [[nodiscard]] std::size_t size() const noexcept { return buffer_.size(); }

  [[nodiscard]] channel_statistics statistics() const {
    return {name_, capacity_, buffer_.size(), senders_.size(), receivers_.size(), sent_, received_, closed_};
  }

 private:
  // A value goes straight to a waiting receiver, else into the buffer if
  // there is room.
  bool try_push(T& v) {
    if (detail::waiter* w = receivers_.pop_front()) {
      auto* r = static_cast<receive_awaiter*>(w);
      r->value_.emplace(std::move(v));
      ++sent_;
      ++received_;
      detail::wait_queue::wake(*w);
      return true;
    }
    if (buffer_.size() >= capacity_) return false;
    buffer_.push_back(std::move(v));
    ++sent_;
    return true;
  }
  // Room was made: move the oldest waiting sender's value in and wake it.
  void refill_from_senders() {
    if (buffer_.size() >= capacity_) return;
    if (detail::waiter* w = senders_.pop_front()) {
      auto* s = static_cast<send_awaiter*>(w);
      buffer_.push_back(std::move(s->value_));
      s->sent_ = true;
      ++sent_;
      detail::wait_queue::wake(*w);
    }
  }

  std::string name_;
  std::size_t capacity_;
  std::deque<T> buffer_;
  detail::wait_queue senders_;
  detail::wait_queue receivers_;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  bool closed_ = false;
};

}  // namespace spindle
