# pkid — see README.md. `make demo` and `make test` install what they need.
GO       ?= go
BIN      := bin/pkid
DEMO_DIR ?= demo
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.Version=$(VERSION) -X main.Commit=$(COMMIT)

.PHONY: all build deps demo demo-setup test unit integration lint bench clean

all: build

deps:
	@./softhsm/install-deps.sh

build:
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pkid

demo-setup: deps build
	./softhsm/setup-demo.sh $(DEMO_DIR)

# Runs pkid on the embedded defaults: SoftHSM2 token + SQLite under $(DEMO_DIR)/.
demo: demo-setup
	$(BIN) serve --config $(DEMO_DIR)/pkid.yaml

# Every test: static checks, unit tests, conformance vectors and the
# integration suite against a real SoftHSM2 token and the real daemon.
test: deps build lint
	PKID_REQUIRE_SOFTHSM=1 PKID_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 20m ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	@./scripts/check-deps.sh

clean:
	rm -rf bin
