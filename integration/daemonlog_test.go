package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// logSince returns the daemon's JSON log lines, from offset on, whose msg
// is msg.
func (d *daemon2) logSince(t *testing.T, offset int64, msg string) []map[string]any {
	t.Helper()
	f, err := os.Open(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// logSinceStart returns the current run's log lines whose msg is msg.
func (d *daemon2) logSinceStart(t *testing.T, msg string) []map[string]any {
	t.Helper()
	return d.logSince(t, d.logOffset, msg)
}

// logSize is where the daemon's next log line will start.
func (d *daemon2) logSize(t *testing.T) int64 {
	t.Helper()
	st, err := os.Stat(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// waitOCSPPresigned waits until the current run of the daemon, named name
// in messages, has ended its first pass over the OCSP answers: until then
// the pass may sign, so a test counting the token's signatures takes its
// baseline after it.
func (d *daemon2) waitOCSPPresigned(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if passes := d.logSinceStart(t, "OCSP answers pre-signed"); len(passes) > 0 {
			t.Logf("%s: the start-up OCSP pass signed %v answers in %v", name, passes[0]["signed"], passes[0]["took"])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no OCSP pre-signing pass ended within 60s of the start", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
