# The single test command is `make check`: it installs what is missing, then
# vets, checks formatting and runs every test (unit, conformance and the
# integration suite against real Prosody and ejabberd) under the race detector.

GO ?= go

.PHONY: check deps vet fmt test demo bench

check: deps vet fmt test

deps:
	./scripts/install-deps.sh

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test:
	$(GO) test -race -timeout 45m ./...

demo:
	$(GO) run ./examples/demo

bench:
	$(GO) run ./integration/cmd/xtls-bench
