# The two commands of the quick start:
#   make demo   install what is missing, build, run the demo
#   make test   install what is missing, build, run the whole test suite
# Others: make asan | tsan | debug-test | format | format-check | bench | bench-runtime | clean

JOBS ?= $(shell nproc)
WERROR := $(if $(CI),ON,OFF)
CONFIGURE = cmake --preset $(1) -DSPINDLE_WERROR=$(WERROR) >/dev/null

.PHONY: all deps build demo examples test asan asan-build tsan fuzz debug-test format format-check bench bench-runtime clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	@$(call CONFIGURE,release)
	@cmake --build build/release -j $(JOBS)

# The main job: each asyncio trap shown and solved (apps/spindle/demo.cpp).
# `make examples` runs the small one-concept programs of examples/.
# Only the library and the CLI are built for it (not the tests, examples or
# benchmarks): the same build directory as `make test`, one target.
demo: deps
	@$(call CONFIGURE,release)
	@cmake --build build/release -j $(JOBS) --target spindle_cli
	@build/release/apps/spindle/spindle demo

EXAMPLES = fanout_sleep fanout timeouts blocking threads
examples: build
	@for d in $(EXAMPLES); do echo "== $$d"; build/release/examples/$$d || exit 1; echo; done

test: build
	@ctest --preset release

debug-test: deps
	@$(call CONFIGURE,debug)
	@cmake --build build/debug -j $(JOBS)
	@ctest --preset debug

asan-build: deps
	@scripts/install-deps.sh sanitize
	@$(call CONFIGURE,asan)
	@cmake --build build/asan -j $(JOBS)

asan: asan-build
	@ctest --preset asan

# The libFuzzer targets (built by `make asan`), FUZZ_SECONDS each from the
# seed corpus; new inputs go to a scratch directory, not the repository.
FUZZ_SECONDS ?= 60
fuzz: asan-build
	@for f in response request; do \
	  work=$$(mktemp -d); echo "== http_$${f}_fuzzer ($(FUZZ_SECONDS) s)"; \
	  build/asan/tests/fuzz/http_$${f}_fuzzer -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 $$work tests/fuzz/corpus/$$f > $$work.log 2>&1 \
	    || { tail -40 $$work.log; exit 1; }; \
	  grep -E "^stat::number_of_executed_units|^stat::new_units_added" $$work.log; rm -rf $$work $$work.log; \
	done

tsan: deps
	@scripts/install-deps.sh sanitize
	@$(call CONFIGURE,tsan)
	@cmake --build build/tsan -j $(JOBS)
	@ctest --preset tsan

FORMAT_FILES = $(shell git ls-files '*.cpp' '*.hpp')
format:
	@scripts/install-deps.sh format
	@clang-format-14 -i $(FORMAT_FILES)

format-check:
	@scripts/install-deps.sh format
	@clang-format-14 --dry-run --Werror $(FORMAT_FILES)

# bench-runtime: the runtime table of issue #17 (spindle against Tokio,
# asyncio and uvloop, one run: bench/run_runtime.sh, build/bench/runtime.md).
# bench: that table first, then every comparison of bench/run_core.sh.
bench-runtime: build
	@scripts/install-deps.sh bench
	@bench/run_runtime.sh

bench: bench-runtime
	@bench/run_core.sh

clean:
	rm -rf build
