#pragma once
/// \file
/// Umbrella header: the whole public API of spindle's core.

#include "spindle/async_fd.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/channel.hpp"
#include "spindle/clock.hpp"
#include "spindle/diagnostics.hpp"
#include "spindle/error.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/gather.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/mutex.hpp"
#include "spindle/outcome.hpp"
#include "spindle/rate_limiter.hpp"
#include "spindle/retry.hpp"
#include "spindle/semaphore.hpp"
#include "spindle/sleep.hpp"
#include "spindle/task.hpp"
#include "spindle/task_group.hpp"
#include "spindle/timer_handle.hpp"
