package integration

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// SIGKILL in the middle of a load, then a restart on the same state: every
// certificate a client received has an issued record, the pending rows the
// crash left are reported and resolved, the audit chain verifies, and the
// daemon issues again.
func TestCrashSafety(t *testing.T) {
	d := newDaemon2(t, nil)
	received := map[string]string{} // certificateId → serial
	var mu sync.Mutex
	progress := make(chan struct{}, 1)
	pendingAtCrash := 0
	for round := 1; round <= 3 && pendingAtCrash == 0; round++ {
		if round > 1 {
			d.start(t)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 24; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					req := map[string]any{"profileId": prodClients, "commonName": fmt.Sprintf("c%d.prod.example.internal", w),
						"ttl": "1h", "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"}
					b, _ := json.Marshal(req)
					resp, err := d.clients["client"].Post("https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", "application/json", strings.NewReader(string(b)))
					if err != nil {
						return // the daemon died under us
					}
					var body map[string]any
					json.NewDecoder(resp.Body).Decode(&body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						received[body["certificateId"].(string)] = body["serialNumber"].(string)
						mu.Unlock()
						select {
						case progress <- struct{}{}:
						default:
						}
					}
				}
			}(w)
		}
		// Kill once this round's load is well under way: 40 more
		// certificates received, with 24 requests in flight.
		goal := len(received) + 40
		for {
			mu.Lock()
			n := len(received)
			mu.Unlock()
			if n >= goal {
				break
			}
			select {
			case <-progress:
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: the load stalled at %d certificates", round, n)
			}
		}
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
		close(stop)
		wg.Wait()

		db, err := sql.Open("sqlite", "file:"+filepath.Join(d.dir, "pkid.db")+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		db.QueryRow(`SELECT count(*) FROM certificates WHERE status = 'pending'`).Scan(&pendingAtCrash)
		db.Close()
		t.Logf("round %d: %d certificates received so far, %d pending rows left by SIGKILL", round, len(received), pendingAtCrash)
	}
	if pendingAtCrash == 0 {
		t.Fatal("three SIGKILLs under load left no pending row; the test cannot show recovery")
	}

	d.start(t)
	log, _ := os.ReadFile(d.logPath)
	if !strings.Contains(string(log), "pending records left by an earlier run") || !strings.Contains(string(log), "resolved pending record") {
		t.Errorf("the restart did not report the pending records")
	}
	if _, text := httpGet(t, "http://"+d.metrics+"/metrics"); !strings.Contains(text, fmt.Sprintf("pkid_recovered_records_total %d", pendingAtCrash)) {
		t.Errorf("pkid_recovered_records_total is not %d", pendingAtCrash)
	}
	cfg := filepath.Join(d.dir, "pkid.yaml")
	out, err := exec.Command(s.bin, "records", "list", "--config", cfg).Output()
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct{ CertificateID, SerialNumber, Status string }
		json.Unmarshal([]byte(line), &r)
		status[r.CertificateID] = r.Status
		if r.Status == "pending" {
			t.Errorf("record %s is still pending after the restart", r.CertificateID)
		}
	}
	for id := range received {
		if status[id] != "issued" {
			t.Errorf("a client received certificate %s, but its record is %q", id, status[id])
		}
	}
	if out, err := exec.Command(s.bin, "audit", "verify", "--config", cfg).CombinedOutput(); err != nil {
		t.Errorf("audit verify after crashes: %v %s", err, out)
	}
	code, _ := d.post(t, "client", map[string]any{"profileId": prodClients, "commonName": "after.prod.example.internal",
		"ttl": "1h", "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	if code != 200 {
		t.Errorf("issuing after the restart: %d", code)
	}
	t.Logf("%d certificates received, all recorded; %d pending rows resolved", len(received), pendingAtCrash)
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
}
