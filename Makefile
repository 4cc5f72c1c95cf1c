# The two commands of the quick start:
#   make demo   install what is missing, build, run the demo
#   make test   install what is missing, build, run the whole test suite
# Others: make asan | tsan | debug-test | format | format-check | bench | clean

JOBS ?= $(shell nproc)
WERROR := $(if $(CI),ON,OFF)
CONFIGURE = cmake --preset $(1) -DSPINDLE_WERROR=$(WERROR) >/dev/null

.PHONY: all deps build demo test asan tsan debug-test format format-check bench clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	@$(call CONFIGURE,release)
	@cmake --build build/release -j $(JOBS)

DEMOS = fanout_sleep fanout timeouts blocking threads
demo: build
	@for d in $(DEMOS); do echo "== $$d"; build/release/examples/$$d || exit 1; echo; done

test: build
	@ctest --preset release

debug-test: deps
	@$(call CONFIGURE,debug)
	@cmake --build build/debug -j $(JOBS)
	@ctest --preset debug

asan: deps
	@scripts/install-deps.sh sanitize
	@$(call CONFIGURE,asan)
	@cmake --build build/asan -j $(JOBS)
	@ctest --preset asan

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

bench: build
	@scripts/install-deps.sh bench
	@bench/run_core.sh

clean:
	rm -rf build
