package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The token disappears under a running daemon (SoftHSM2 re-reads its token
// files): requests get 503 with Retry-After and nothing is issued,
// /readyz and pkid_hsm_up say so while the watchdog keeps being fed (pkid
// heals the token itself; a restart would only refuse connections), and
// when the token comes back pkid re-opens it by itself and issues again.
func TestTokenLossAndRecovery(t *testing.T) {
	d := newDaemon2(t, nil)
	if code, body := d.post(t, "client", prodReq); code != 200 {
		t.Fatalf("healthy: %d %v", code, body)
	}
	tokens := filepath.Join(d.dir, "tokens")
	if err := os.Rename(tokens, tokens+".away"); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(tokens, 0o700)
	for k := 0; k < 3; k++ {
		code, body := d.post(t, "client", prodReq)
		if code != 503 || body["error"] != "ServiceUnavailable" {
			t.Fatalf("request %d with the token gone: %d %v", k, code, body)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for readyzCode(t, d) != 503 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if readyzCode(t, d) != 503 {
		t.Fatal("/readyz stayed ready with the token gone")
	}
	_, text := httpGet(t, "http://"+d.metrics+"/metrics")
	if !strings.Contains(text, "pkid_hsm_up 0") {
		t.Error("pkid_hsm_up is not 0 with the token gone")
	}
	// Only the first request reached the token; the others were refused
	// while it was down and are not token errors.
	if !strings.Contains(text, `pkid_hsm_errors_total{ca="ec-issuing"} 1`+"\n") {
		t.Error(`pkid_hsm_errors_total{ca="ec-issuing"} is not 1`)
	}
	for drained := false; !drained; {
		select {
		case <-d.notes:
		default:
			drained = true
		}
	}
	d.expect(t, "WATCHDOG=1", 5*time.Second) // WATCHDOG_USEC is 400ms

	os.Remove(tokens)
	if err := os.Rename(tokens+".away", tokens); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, d, 200)
	deadline = time.Now().Add(20 * time.Second)
	for readyzCode(t, d) != 200 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if readyzCode(t, d) != 200 {
		t.Error("/readyz did not recover with the token")
	}
	d.expect(t, "WATCHDOG=1", 5*time.Second)
	log, _ := os.ReadFile(d.logPath)
	if !strings.Contains(string(log), "token re-opened") {
		t.Error("no log line for the recovery")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
	assertNoSecrets(t, d.dir, d.logPath, nil)
}
