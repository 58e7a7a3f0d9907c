# DWCP v3. `make demo` runs a complete migration on loopback; `make test` runs
# every check CI runs. Both need only Go (promtool checks run when installed).

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 10s
TESTFLAGS ?= -race -timeout 12m

.PHONY: all build test vet fmt-check unit lint bench fuzz demo clean

all: build

build:
	$(GO) build $(PKGS)

test: fmt-check vet lint unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test $(TESTFLAGS) $(PKGS)

# promtool checks the recording and alerting rules and runs their unit tests.
# It comes from Debian's prometheus package (.ci/run installs it); without it
# the target says so and succeeds, because Go alone must be enough for a newcomer.
lint:
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules metrics/prometheus/rules.yml && \
		promtool test rules metrics/prometheus/rules_test.yml; \
	else echo "promtool not installed: skipping rule checks (apt-get install prometheus)"; fi

bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

demo:
	$(GO) run ./examples/migrate demo

clean:
	$(GO) clean -testcache
