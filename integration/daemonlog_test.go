package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// logLinesSince returns the JSON log lines of the file at path, from
// offset on, whose msg is msg.
func logLinesSince(t *testing.T, path string, offset int64, msg string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
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

// fileSize is where the next line written to path will start.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// waitOCSPPresigned waits until the run of the daemon named name whose log
// starts at offset of path has ended its first pass over the OCSP answers:
// until then the pass may sign, so a test counting the token's signatures
// takes its baseline after it.
func waitOCSPPresigned(t *testing.T, name, path string, offset int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if passes := logLinesSince(t, path, offset, "OCSP answers pre-signed"); len(passes) > 0 {
			t.Logf("%s: the start-up OCSP pass signed %v answers in %v", name, passes[0]["signed"], passes[0]["took"])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no OCSP pre-signing pass ended within 60s of the start", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
