# pkid — see README.md. `make demo` and `make test` install what they need.
GO       ?= go
BIN      := bin/pkid
DEMO_DIR ?= demo
DEMO_HA_DIR ?= demo-ha
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.Version=$(VERSION) -X main.Commit=$(COMMIT)

.PHONY: all build deps demo demo-setup demo-ha test lint install fuzz soak bench package clean

all: build

deps:
	@PKID_EXTRA_PACKAGES="$(PKID_EXTRA_PACKAGES)" ./softhsm/install-deps.sh

build:
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pkid

demo-setup: deps build
	./softhsm/setup-demo.sh $(DEMO_DIR)

# Runs pkid on the embedded defaults: SoftHSM2 token + SQLite under $(DEMO_DIR)/.
demo: demo-setup
	$(BIN) serve --config $(DEMO_DIR)/pkid.yaml

# Two nodes on PostgreSQL (DESIGN.md §16): a throw-away server under
# $(DEMO_HA_DIR)/pg, node-a and node-b on one token; Ctrl-C stops all.
demo-ha: PKID_EXTRA_PACKAGES = postgresql
demo-ha: deps build
	./softhsm/run-demo-ha.sh $(DEMO_HA_DIR)

# Every test: static checks, unit tests, conformance vectors and the
# integration suite against a real SoftHSM2 token and the real daemon.
# PostgreSQL's tests start their own throw-away servers; packaging/ is a
# module of its own (nfpm stays out of pkid's go.mod) and installs, removes
# and purges the .deb when run as root.
test: PKID_EXTRA_PACKAGES = prometheus systemd postgresql certbot
test: deps build lint fuzz
	PKID_REQUIRE_SOFTHSM=1 PKID_REQUIRE_POSTGRES=1 PKID_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 25m ./...
	cd packaging && PKID_REQUIRE_PACKAGE=1 PKID_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m ./...
	cd pkidtest/example && PKID_REQUIRE_SOFTHSM=1 PKID_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 ./...

# Every fuzz target briefly (make test) or for longer: make fuzz FUZZTIME=10m.
# Seed corpora live in <package>/testdata/fuzz and are replayed by plain go test.
FUZZTIME ?= 3s
FUZZ_TARGETS := policy:FuzzParseDuration policy:FuzzMatchAgreesWithRegexp policy:FuzzParseSAN policy:FuzzSANPattern \
	policy:FuzzParseCommonName issuer:FuzzCanonicalValueRoundTrip csr:FuzzParse api:FuzzDecodeRequest daemon:FuzzParseConfig \
	auth:FuzzAuthenticate acme:FuzzParseJWS api:FuzzV1Bodies
fuzz:
	@GO=$(GO) ./scripts/fuzz.sh $(FUZZTIME) $(FUZZ_TARGETS)

# A longer soak: make soak SOAK_REQUESTS=20000
SOAK_REQUESTS ?= 20000
soak: deps build
	PKID_REQUIRE_SOFTHSM=1 PKID_BIN=$(CURDIR)/$(BIN) PKID_SOAK_REQUESTS=$(SOAK_REQUESTS) $(GO) test -count=1 -timeout 60m -run 'TestSoak|TestRecordsMatch' -v ./integration

# Throughput benchmark against the real daemon; writes BENCHMARKS.md.
bench: deps build
	$(GO) run ./tools/pkid-bench -bin $(BIN) -out BENCHMARKS.md $(BENCH_FLAGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd packaging && $(GO) vet ./...
	cd pkidtest/example && $(GO) vet ./...
	@./scripts/check-deps.sh

PREFIX  ?= /usr/local
DESTDIR ?=

# Installs the binary, the systemd unit and an example config (never
# overwriting an existing /etc/pkid/pkid.yaml), and creates the pkid user.
install: build
	if [ -z "$(DESTDIR)" ] && ! id pkid >/dev/null 2>&1; then \
	  useradd --system --home-dir /var/lib/pkid --shell /usr/sbin/nologin pkid; fi
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pkid
	install -D -m 0644 configs/pkid.service $(DESTDIR)/etc/systemd/system/pkid.service
	install -d -m 0750 $(DESTDIR)/etc/pkid
	[ -e $(DESTDIR)/etc/pkid/pkid.yaml ] || install -m 0640 configs/pkid.example.yaml $(DESTDIR)/etc/pkid/pkid.yaml
	@: the service reads its config as group pkid, the unit runs as User=pkid
	if [ -z "$(DESTDIR)" ]; then chgrp pkid /etc/pkid /etc/pkid/pkid.yaml; fi
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/pkid/README.md
	install -D -m 0644 configs/prometheus.yml $(DESTDIR)$(PREFIX)/share/doc/pkid/prometheus.yml
	install -D -m 0644 configs/alerts.yml $(DESTDIR)$(PREFIX)/share/doc/pkid/alerts.yml
	@echo "installed; put the token PIN in /etc/pkid/hsm-pin (0600), then: systemctl daemon-reload && systemctl enable --now pkid"

# dist/pkid_<version>_amd64.deb, built by nfpm in the separate packaging/ module.
package: build
	cd packaging && $(GO) run . -root .. -bin ../$(BIN) -version '$(VERSION)' -out ../dist

clean:
	rm -rf bin dist
