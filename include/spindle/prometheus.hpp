#pragma once
/// \file
/// render_prometheus: statistics as Prometheus text exposition (format
/// 0.0.4), for a /metrics endpoint. Checked against promtool in the tests.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/portal.hpp"
#include "spindle/thread_pool.hpp"

namespace spindle {

enum class metric_type : std::uint8_t { counter, gauge, summary };

/// One exposition built from snapshots. Families are written once each
/// (HELP, TYPE, then all their samples, whatever order they were added in),
/// label values are escaped, and names are checked.
///
/// **Thread safety:** one object per thread; the snapshots it takes are
/// plain values (take them on the right thread: loop statistics on the
/// loop, or through background_loop::statistics()).
class prometheus_exposition {
 public:
  using labels = std::vector<std::pair<std::string, std::string>>;

  /// spindle_loop_* families, labelled loop="<name>".
  void add(const loop_statistics& s);
  /// spindle_pool_* families, labelled pool="<name>".
  void add(const pool_statistics& s);
  /// spindle_portal_* families, labelled loop="<loop_name>".
  void add(const portal_statistics& s, std::string_view loop_name);

  /// Any other sample (other components use this). `name` must be a valid
  /// metric name; a counter's name must end in `_total`. Throws usage_error
  /// otherwise, or when one family is given two types or two help texts.
  void add_sample(std::string_view name, metric_type type, std::string_view help, labels l, double value);
  /// A summary: `name{quantile=...}` per quantile, `name_sum`, `name_count`.
  void add_summary(std::string_view name, std::string_view help, const labels& l,
                   const std::vector<std::pair<double, double>>& quantiles, double sum, std::uint64_t count);

  /// The text, ending in a newline.
  [[nodiscard]] std::string str() const;

 private:
  struct family {
    metric_type type;
    std::string help;
    std::vector<std::string> lines;  // rendered samples
  };
  family& family_for(std::string_view name, metric_type type, std::string_view help);
  std::vector<std::string> order_;  // families in first-added order
  std::map<std::string, family, std::less<>> families_;
};

/// Convenience: one exposition of these loops and pools.
[[nodiscard]] std::string render_prometheus(const std::vector<loop_statistics>& loops,
                                            const std::vector<pool_statistics>& pools = {});

}  // namespace spindle
