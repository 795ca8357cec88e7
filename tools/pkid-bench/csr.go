package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// csrTargetCPU is issue 9's target for daemon CPU per CSR-signed
// certificate at concurrency 16 (step-ca measured 1.15–1.7 ms on the same
// machine class, without lint or durable commits).
const (
	csrTargetCPU         = 900 * time.Microsecond
	csrTargetConcurrency = 16
	csrProfileSeconds    = 5
	profileTopEntries    = 15
)

// csrResult is the CSR part: one result per concurrency level, and the
// top of a daemon CPU profile at concurrency 16.
type csrResult struct {
	pool    int
	cases   []result
	profile *profileSummary
}

// profileSummary is the top of a CPU profile by flat and by cumulative
// time, and the cumulative time of each step of the pipeline.
type profileSummary struct {
	header    string
	flat, cum []topEntry
	steps     []profileStep
	err       string
}

type profileStep struct {
	what string
	e    topEntry
}

// csrPipelineSteps names the functions that stand for the steps of signing a
// CSR (DESIGN.md §5, §11); their cumulative times overlap where one
// calls another (every ECDSA verification is in "all P-256 verifications").
// namedStep is a step of a pipeline and the function that stands for it
// in a profile.
type namedStep struct{ what, fn string }

func csrPipelineSteps() []namedStep {
	return []namedStep{
		{"whole request in the handler (api.(*handler).sign)", "github.com/pkid/pkid/api.(*handler).sign"},
		{"CSR parse and its self-signature check (csr.Parse)", "github.com/pkid/pkid/csr.Parse"},
		{"good-key checks (goodkey)", "github.com/pkid/pkid/goodkey.(*Policy).Check"},
		{"lint copy: x509.CreateCertificate with the throw-away key (Go verifies its own signature too)", "crypto/x509.CreateCertificate"},
		{"zlint over the exact TBS, zcrypto parse included (linter.Lint)", "github.com/pkid/pkid/linter.(*Linter).Lint"},
		{"token signature, PKCS#11 into SoftHSM2 (hsm.(*tokenKey).Sign)", "github.com/pkid/pkid/hsm.(*tokenKey).Sign"},
		{"… of which C_SignInit (SoftHSM unwraps the key object every time)", "github.com/miekg/pkcs11.(*Ctx).SignInit"},
		{"verifying the token's signature against the CA (issuer.verifySigned)", "github.com/pkid/pkid/issuer.verifySigned"},
		{"all P-256 signature verifications (x509.checkSignature)", "crypto/x509.checkSignature"},
		{"SQLite writer: reserve, finalize + audit, group commit (sqlite.(*DB).writeLoop)", "github.com/pkid/pkid/store/sqlite.(*DB).writeLoop"},
		{"request JSON decoding (api.decodeSignRequest)", "github.com/pkid/pkid/api.decodeSignRequest"},
		{"response JSON (api.writeJSON)", "github.com/pkid/pkid/api.writeJSON"},
		{"TLS writes (crypto/tls.(*Conn).Write)", "crypto/tls.(*Conn).Write"},
		{"garbage collector workers (runtime.gcBgMarkWorker)", "runtime.gcBgMarkWorker"},
	}
}

// csrBodies builds n distinct sign-certificate requests for web-server, as
// step-ca's /1.0/sign clients make them: a fresh EC P-256 key per CSR, the
// name as CN and as the one DNS SAN (the BR lints want the CN among the
// SANs). They are built before any case starts, so that client key
// generation does not compete with the daemon for the two cores.
func csrBodies(n int) ([][]byte, error) {
	bodies := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("csr-%d.example.internal", i)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name},
			DNSNames: []string{name}}, key)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(map[string]string{"profileId": webServerID, "ttl": "1h",
			"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
		if err != nil {
			return nil, err
		}
		bodies = append(bodies, b)
	}
	return bodies, nil
}

func benchCSR(o *options, fx *fixture, d *daemon, client *http.Client, floorEC time.Duration) (*csrResult, error) {
	bodies, err := csrBodies(max(o.csrPool, 1))
	if err != nil {
		return nil, err
	}
	out := &csrResult{pool: len(bodies)}
	url := "https://" + fx.api + signPath
	newLoad := func(n int) load {
		return load{concurrency: n, max: o.maxRequests, send: func(i int) string {
			return post(client, url, "application/json", bodies[i%len(bodies)])
		}}
	}
	for _, n := range o.csrConcurrency {
		r, err := measure(d, fx, newLoad(n), o.warmup, o.duration, nil)
		if err != nil {
			return nil, fmt.Errorf("CSR c=%d: %w", n, err)
		}
		r.name, r.keyAlg, r.floor = "EC P-256 CSR, EC P-256 CA (web-server)", "EC_prime256v1", floorEC
		fmt.Printf("%-48s c=%-3d %8.0f certs/s  p50 %-8v p99 %-8v cpu %v/cert (%.2f× floor)  errors %d  rss %d MiB  group %.1f\n",
			r.name, n, r.rate(), r.p50, r.p99, r.cpuPerOp, ratio(r.cpuPerOp, r.floor), r.errors, r.peakRSS>>20, r.commitGroup)
		out.cases = append(out.cases, r)
	}
	if o.csrProfile {
		out.profile = profileCSR(o, fx, newLoad(csrTargetConcurrency))
	}
	return out, nil
}

// profileCSR takes a 5 s daemon CPU profile while CSRs are signed at
// concurrency 16, in a run of its own so that the profiler's overhead is
// not in the measured cases, and summarizes it with go tool pprof.
func profileCSR(o *options, fx *fixture, l load) *profileSummary {
	path := o.csrPprof
	if path == "" {
		path = filepath.Join(fx.tmp, "csr-c16.pprof")
	}
	fmt.Printf("profiling the daemon for %ds while it signs CSRs at c=%d…\n", csrProfileSeconds, csrTargetConcurrency)
	l.runFor(o.warmup)
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		// Bounded even if the profile request hangs.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(csrProfileSeconds+20)*time.Second)
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		l.run(ctx)
	}()
	err := fetchProfile(fx.metrics, path, csrProfileSeconds)
	close(stop)
	<-loadDone
	if err != nil {
		return &profileSummary{err: err.Error()}
	}
	return summarizeProfile(o.bin, path, csrPipelineSteps())
}

// summarizeProfile reads a CPU profile of bin with go tool pprof: its top
// entries by flat and by cumulative time, and the cumulative time of each
// named step.
func summarizeProfile(bin, path string, steps []namedStep) *profileSummary {
	s := &profileSummary{}
	var err error
	if s.header, s.flat, err = pprofTop(bin, path, false, profileTopEntries); err != nil {
		s.err = err.Error()
		return s
	}
	_, all, err := pprofTop(bin, path, true, 0)
	if err != nil {
		s.err = err.Error()
		return s
	}
	byName := map[string]topEntry{}
	for _, e := range all {
		byName[e.name] = e
	}
	for _, st := range steps {
		if e, ok := byName[st.fn]; ok {
			s.steps = append(s.steps, profileStep{st.what, e})
		}
	}
	s.cum = collapseChains(all, profileTopEntries)
	return s
}

// collapseChains keeps the first n entries of a cum-sorted list, skipping
// those whose cumulative share is within half a percent of the entry kept
// before them: the frames of one call chain (net/http → mux → pkid's
// handler wrappers → …) would otherwise fill the list.
func collapseChains(cum []topEntry, n int) []topEntry {
	var out []topEntry
	last := -1.0
	for _, e := range cum {
		p, err := strconv.ParseFloat(strings.TrimSuffix(e.cumPct, "%"), 64)
		if err != nil {
			continue
		}
		if last >= 0 && last-p < 0.5 {
			continue
		}
		out, last = append(out, e), p
		if len(out) == n {
			break
		}
	}
	return out
}
