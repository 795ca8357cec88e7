package integration

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A bounded soak at concurrency 32 across profiles and key algorithms:
// zero errors, unique serials, every response recorded (checked by the
// records test that runs last) and bounded memory. PKID_SOAK_REQUESTS
// makes it longer (`make soak`).
func TestSoak(t *testing.T) {
	total := 1500
	if v, err := strconv.Atoi(os.Getenv("PKID_SOAK_REQUESTS")); err == nil && v > 0 {
		total = v
	}
	const concurrency = 32
	type job struct {
		profile, cn, sig, key string
		san                   bool
	}
	jobFor := func(k int) job {
		switch {
		case k%16 == 5:
			return job{webServer, fmt.Sprintf("r%d.example.internal", k), "ECDSA-SHA256", "RSA_2048", true}
		case k%16 == 9:
			return job{internalServices, fmt.Sprintf("r%d.svc.example.internal", k), "RSA-SHA256", "RSA_2048", true}
		case k%4 == 0:
			return job{webServer, fmt.Sprintf("s%d.example.internal", k), "ECDSA-SHA384", []string{"EC_prime256v1", "EC_secp384r1", "EC_secp521r1"}[k%3], true}
		case k%4 == 1:
			return job{internalServices, fmt.Sprintf("s%d.svc.example.internal", k), "RSA-SHA256", "EC_prime256v1", true}
		default:
			return job{prodClients, fmt.Sprintf("s%d.prod.example.internal", k), "ECDSA-SHA256", "EC_prime256v1", false}
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	serials := map[string]bool{}
	var failures, dup atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= total {
					return
				}
				j := jobFor(k)
				req := map[string]any{"profileId": j.profile, "commonName": j.cn, "ttl": "1h", "signatureAlgorithm": j.sig, "keyAlgorithm": j.key}
				if j.san {
					req["altNames"] = []map[string]string{{"type": "dns_name", "value": j.cn}}
				}
				r := s.issue(t, req)
				if r.status != 200 {
					failures.Add(1)
					t.Errorf("request %d (%s %s): %d %.200s", k, j.cn, j.key, r.status, r.raw)
					continue
				}
				mu.Lock()
				if serials[r.str("serialNumber")] {
					dup.Add(1)
				}
				serials[r.str("serialNumber")] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	rss := peakRSS(t, s.cmd.Process.Pid)
	t.Logf("soak: %d requests at concurrency %d in %s (%.0f/s), %d failures, %d duplicate serials, daemon peak RSS %d MiB",
		total, concurrency, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), failures.Load(), dup.Load(), rss>>20)
	if failures.Load() > 0 || dup.Load() > 0 || len(serials) != total {
		t.Fatalf("%d failures, %d duplicate serials, %d unique of %d", failures.Load(), dup.Load(), len(serials), total)
	}
	if rss > 1<<30 {
		t.Errorf("peak RSS %d MiB: memory is not bounded", rss>>20)
	}
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
