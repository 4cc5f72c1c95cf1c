#pragma once
// `spindle demo`: each asyncio trap, shown and solved, with measured numbers.

#include <string>
#include <vector>

namespace spindle::cli {

[[nodiscard]] std::string demo_description();
/// "sequential, failures, blocking, pools, portal"
[[nodiscard]] std::string demo_scene_names();
/// One line per scene: name and what it shows.
[[nodiscard]] std::string demo_scene_list();
/// Runs the named scenes (all when empty); 0 when every scene showed what
/// it should, 1 when one did not, 2 for an unknown scene name.
[[nodiscard]] int run_demo(const std::vector<std::string>& scenes);

}  // namespace spindle::cli
