// Prometheus text exposition (https://prometheus.io/docs/instrumenting/exposition_formats/).

#include "spindle/prometheus.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace spindle {

namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void append_escaped(std::string& out, std::string_view v, bool quote_too) {
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '"':
        if (quote_too) {
          out += "\\\"";
          break;
        }
        [[fallthrough]];
      default: out += c;
    }
  }
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {  // integers exactly
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int precision = 6; precision <= 17; ++precision) {  // the shortest text that reads back the same
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string sample_line(std::string_view name, const prometheus_exposition::labels& l, double value) {
  std::string s(name);
  if (!l.empty()) {
    s += '{';
    for (std::size_t i = 0; i < l.size(); ++i) {
      if (!valid_label_name(l[i].first))
        throw usage_error("prometheus: invalid label name '" + l[i].first + "'");
      if (i != 0) s += ',';
      s += l[i].first;
      s += "=\"";
      append_escaped(s, l[i].second, true);
      s += '"';
    }
    s += '}';
  }
  s += ' ';
  s += format_value(value);
  return s;
}

double seconds(duration d) { return std::chrono::duration<double>(d).count(); }
double num(std::uint64_t v) { return static_cast<double>(v); }

}  // namespace

prometheus_exposition::family& prometheus_exposition::family_for(std::string_view name, metric_type type,
                                                                 std::string_view help) {
  if (!valid_metric_name(name))
    throw usage_error("prometheus: invalid metric name '" + std::string(name) + "'");
  if (type == metric_type::counter && !name.ends_with("_total"))
    throw usage_error("prometheus: counter '" + std::string(name) + "' must end in _total");
  auto it = families_.find(name);
  if (it == families_.end()) {
    order_.emplace_back(name);
    it = families_.emplace(std::string(name), family{type, std::string(help), {}}).first;
  } else if (it->second.type != type || it->second.help != help) {
    throw usage_error("prometheus: family '" + std::string(name) + "' added with two types or help texts");
  }
  return it->second;
}

void prometheus_exposition::add_sample(std::string_view name, metric_type type, std::string_view help,
                                       labels l, double value) {
  if (type == metric_type::summary) throw usage_error("prometheus: use add_summary for summaries");
  family& f = family_for(name, type, help);
  f.lines.push_back(sample_line(name, l, value));
}

void prometheus_exposition::add_summary(std::string_view name, std::string_view help, const labels& l,
                                        const std::vector<std::pair<double, double>>& quantiles, double sum,
                                        std::uint64_t count) {
  family& f = family_for(name, metric_type::summary, help);
  for (const auto& [q, v] : quantiles) {
    labels with_q = l;
    with_q.emplace_back("quantile", format_value(q));
    f.lines.push_back(sample_line(name, with_q, v));
  }
  f.lines.push_back(sample_line(std::string(name) + "_sum", l, sum));
  f.lines.push_back(sample_line(std::string(name) + "_count", l, num(count)));
}

void prometheus_exposition::add(const loop_statistics& s) {
  const labels l{{"loop", s.name}};
  using enum metric_type;
  add_sample("spindle_loop_tasks_alive", gauge, "Tasks alive on the loop.", l, num(s.tasks_alive));
  add_sample("spindle_loop_tasks_spawned_total", counter, "Tasks spawned on the loop.", l,
             num(s.tasks_spawned));
  add_sample("spindle_loop_tasks_completed_total", counter, "Tasks that finished with a value.", l,
             num(s.tasks_completed));
  add_sample("spindle_loop_tasks_failed_total", counter, "Tasks that finished with an exception.", l,
             num(s.tasks_failed));
  add_sample("spindle_loop_tasks_cancelled_total", counter, "Tasks that finished cancelled.", l,
             num(s.tasks_cancelled));
  add_sample("spindle_loop_tasks_abandoned_total", counter, "Tasks abandoned at shutdown.", l,
             num(s.tasks_abandoned));
  add_sample("spindle_loop_ready_depth", gauge, "Entries in the ready queue.", l, num(s.ready_depth));
  add_sample("spindle_loop_timers", gauge, "Timers queued.", l, num(s.timers));
  add_sample("spindle_loop_io_registrations", gauge, "File descriptors registered with the reactor.", l,
             num(s.io_registrations));
  add_sample("spindle_loop_steps_total", counter, "Task resumptions and callbacks run.", l, num(s.steps));
  add_sample("spindle_loop_iterations_total", counter, "Turns of the loop.", l, num(s.iterations));
  add_sample("spindle_loop_polls_total", counter, "epoll_wait calls.", l, num(s.polls));
  add_sample("spindle_loop_threadsafe_calls_total", counter, "Callbacks received from other threads.", l,
             num(s.threadsafe_calls));
  add_sample("spindle_loop_threadsafe_depth", gauge, "Callbacks from other threads not yet taken.", l,
             num(s.threadsafe_depth));
  add_sample("spindle_loop_stalls_total", counter, "Steps that held the loop past the watchdog threshold.", l,
             num(s.stalls));
  add_sample("spindle_loop_longest_stall_seconds", gauge, "The longest stall seen.", l,
             seconds(s.longest_stall));
}

void prometheus_exposition::add(const pool_statistics& s) {
  const labels l{{"pool", s.name}};
  using enum metric_type;
  add_sample("spindle_pool_threads", gauge, "Worker threads (zombies excluded).", l, num(s.threads));
  add_sample("spindle_pool_busy", gauge, "Worker threads running a call.", l, num(s.busy));
  add_sample("spindle_pool_queued", gauge, "Calls waiting for a thread.", l, num(s.queued));
  add_sample("spindle_pool_zombies", gauge, "Threads stuck in abandoned calls.", l, num(s.zombies));
  add_sample("spindle_pool_submitted_total", counter, "Calls accepted.", l, num(s.submitted));
  add_sample("spindle_pool_completed_total", counter, "Calls that returned.", l, num(s.completed));
  add_sample("spindle_pool_failed_total", counter, "Calls that threw.", l, num(s.failed));
  add_sample("spindle_pool_rejected_total", counter, "Calls refused (queue full or shut down).", l,
             num(s.rejected));
  add_sample("spindle_pool_cancelled_total", counter, "Queued calls cancelled before running.", l,
             num(s.cancelled));
  add_sample("spindle_pool_abandoned_total", counter, "Running calls abandoned after cancellation.", l,
             num(s.abandoned));
  add_summary("spindle_pool_queue_wait_seconds", "Time calls waited for a thread (quantiles: last 1024).", l,
              {{0.5, seconds(s.queue_wait.p50)}, {0.99, seconds(s.queue_wait.p99)}},
              seconds(s.queue_wait.sum), s.queue_wait.samples);
  add_summary("spindle_pool_run_seconds", "Time calls ran (quantiles: last 1024).", l,
              {{0.5, seconds(s.run_time.p50)}, {0.99, seconds(s.run_time.p99)}}, seconds(s.run_time.sum),
              s.run_time.samples);
}

void prometheus_exposition::add(const portal_statistics& s, std::string_view loop_name) {
  const labels l{{"loop", std::string(loop_name)}};
  using enum metric_type;
  add_sample("spindle_portal_calls_total", counter, "Portal calls made.", l, num(s.submitted));
  auto outcome = [&](const char* o, std::uint64_t v) {
    labels lo = l;
    lo.emplace_back("outcome", o);
    add_sample("spindle_portal_answers_total", counter, "Portal calls answered, by outcome.", lo, num(v));
  };
  outcome("completed", s.completed);
  outcome("failed", s.failed);
  outcome("cancelled", s.cancelled);
  outcome("timeout", s.timed_out);
  outcome("shutdown", s.shut_down);
}

std::string prometheus_exposition::str() const {
  std::string out;
  for (const std::string& name : order_) {
    const family& f = families_.find(name)->second;
    out += "# HELP " + name + " ";
    append_escaped(out, f.help, false);
    out += "\n# TYPE " + name + " ";
    out += f.type == metric_type::counter ? "counter" : f.type == metric_type::gauge ? "gauge" : "summary";
    out += '\n';
    for (const std::string& line : f.lines) {
      out += line;
      out += '\n';
    }
  }
  return out;
}

std::string render_prometheus(const std::vector<loop_statistics>& loops,
                              const std::vector<pool_statistics>& pools) {
  prometheus_exposition e;
  for (const auto& l : loops) e.add(l);
  for (const auto& p : pools) e.add(p);
  return e.str();
}

}  // namespace spindle
