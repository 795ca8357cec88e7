package integration

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/store/postgres/pgtest"
)

// make demo-ha's script, run as someone trying several nodes runs it: its
// PostgreSQL under DIR/pg and both nodes come up on one token, each node
// issues, Ctrl-C stops the nodes and the server, and a second run serves
// the first run's records.
func TestRunDemoHA(t *testing.T) {
	requireTool(t, "psql")
	if _, err := os.Stat("/usr/lib/postgresql"); err != nil && !pgtest.Required() {
		t.Skip("PostgreSQL is not installed")
	}
	// As root the script runs the server as postgres, which must reach DIR.
	dir, err := os.MkdirTemp("", "pkid-demo-ha-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	nodes, env := haNodes(dir, "", append(os.Environ(), "PKID_BIN="+s.bin))
	logPath := filepath.Join(t.TempDir(), "demo-ha.log")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run-demo-ha.sh output:\n%s", tail(readFile(t, logPath), 20000))
		}
	})

	// run starts the script, waits for both nodes to be ready, has each
	// issue a certificate, calls during with their ids, and stops the
	// script with SIGINT.
	run := func(round int, during func(ids []string)) []string {
		logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer logFile.Close()
		cmd := exec.Command("../softhsm/run-demo-ha.sh", dir)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGTERM)
				<-exited
			}
		})
		deadline := time.Now().Add(3 * time.Minute) // a failure bound: the first run builds the fixture
		probe := &http.Client{Timeout: 5 * time.Second}
		for _, n := range nodes {
			for {
				if resp, err := probe.Get("http://" + n.metrics + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				select {
				case err := <-exited:
					t.Fatalf("round %d: run-demo-ha.sh exited before %s was ready: %v", round, n.name, err)
				case <-time.After(200 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: %s not ready", round, n.name)
				}
			}
		}
		if nodes[0].clients == nil { // the first run has just made the fixture
			clients, _, err := fixtureClients(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				n.clients = clients
			}
		}
		var ids []string
		for _, n := range nodes {
			got, err := n.issue("demo-ha.prod.example.internal")
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			ids = append(ids, got.id)
		}
		during(ids)
		cmd.Process.Signal(syscall.SIGINT)
		var exit *exec.ExitError
		if err := <-exited; !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Errorf("round %d: run-demo-ha.sh after Ctrl-C: %v, want exit 130", round, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "pg", "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("round %d: PostgreSQL still runs after Ctrl-C (postmaster.pid: %v)", round, err)
		}
		return ids
	}

	first := run(1, func([]string) {})
	run(2, func(second []string) {
		status := recordsOf(t, nodes[1])
		for _, id := range append(first, second...) {
			if status[id] != "issued" {
				t.Errorf("certificate %s of the demo's runs: record %q", id, status[id])
			}
		}
		auditVerifyOn(t, nodes[0])
	})
}
