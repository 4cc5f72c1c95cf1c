# Compiler flags, sanitizers, ccache and a fast linker, applied to every
# target of the project through the `spindle_flags` interface library.

add_library(spindle_flags INTERFACE)
target_compile_options(spindle_flags INTERFACE -Wall -Wextra -Wpedantic -Wshadow)
if(SPINDLE_WERROR)
  target_compile_options(spindle_flags INTERFACE -Werror)
endif()

# g++ 12 turns coroutine symmetric transfer into a tail call only with
# sibling-call optimisation, which -O0/-Og turn off: without it, long chains
# of synchronously completing awaits overflow the stack in debug builds.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(spindle_flags INTERFACE $<$<CONFIG:Debug>:-foptimize-sibling-calls>)
endif()

if(SPINDLE_SANITIZE)
  list(JOIN SPINDLE_SANITIZE "," _san)
  set(_san_flags -fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_compile_options(spindle_flags INTERFACE ${_san_flags})
  target_link_options(spindle_flags INTERFACE ${_san_flags})
endif()

find_program(SPINDLE_CCACHE ccache)
if(SPINDLE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${SPINDLE_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${SPINDLE_CCACHE})
endif()

# Prefer mold, then lld: linking the test binaries dominates incremental builds.
find_program(SPINDLE_MOLD mold)
find_program(SPINDLE_LLD NAMES ld.lld)
if(SPINDLE_MOLD)
  add_link_options(-fuse-ld=mold)
elseif(SPINDLE_LLD)
  add_link_options(-fuse-ld=lld)
endif()
