package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/softhsm"
)

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// requireTool finds a command, failing under `make test` and skipping elsewhere.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if softhsm.Required() {
			t.Fatalf("%s is not installed (make test installs it)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func TestHealthEndpoints(t *testing.T) {
	if code, body := httpGet(t, "http://"+s.metrics+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := httpGet(t, "http://"+s.metrics+"/readyz"); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Errorf("/readyz = %d %q", code, body)
	}
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? `)
var labelName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)

// metricShape is "name type labels" for every pkid_ family (the process
// collector's excepted), the contract the golden file pins.
func metricShape(text string) []string {
	types := map[string]string{}
	labels := map[string]map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suffix); base != name && types[base] == "histogram" {
				name = base
			}
		}
		if labels[name] == nil {
			labels[name] = map[string]bool{}
		}
		for _, l := range labelName.FindAllStringSubmatch(m[3], -1) {
			if l[1] != "le" {
				labels[name][l[1]] = true
			}
		}
	}
	var out []string
	for name, typ := range types {
		if !strings.HasPrefix(name, "pkid_") || strings.HasPrefix(name, "pkid_process_") {
			continue
		}
		var ls []string
		for l := range labels[name] {
			ls = append(ls, l)
		}
		sort.Strings(ls)
		out = append(out, fmt.Sprintf("%s %s %s", name, typ, strings.Join(ls, ",")))
	}
	sort.Strings(out)
	return out
}

// The scrape passes promtool, and its pkid_ families match the golden file
// testdata/metrics.golden, which is edited by hand when a family changes.
func TestMetricsGoldenAndPromtool(t *testing.T) {
	promtool := requireTool(t, "promtool")
	s.issue(t, map[string]any{"profileId": prodClients, "commonName": "m.prod.example.internal", "ttl": "1h",
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	s.issue(t, map[string]any{"profileId": webServer, "commonName": "a.example.internal", "ttl": "1h",
		"altNames":           []map[string]string{{"type": "dns_name", "value": "b.example.internal"}},
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"}) // a lint failure
	code, text := httpGet(t, "http://"+s.metrics+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(text)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	got := strings.Join(metricShape(text), "\n") + "\n"
	golden := "../testdata/metrics.golden"
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("metric families differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
	}
	for _, series := range []string{
		`pkid_issuance_requests_total{outcome="issued",profile="prod-clients"}`,
		`pkid_issuance_requests_total{outcome="error",profile="unknown"} 0`,
		`pkid_hsm_up 1`,
		`pkid_ca_not_after_timestamp_seconds{ca="root"}`,
		`pkid_ca_not_after_timestamp_seconds{ca="tls-server"}`,
		`pkid_lint_failures_total{lint="e_subject_common_name_not_exactly_from_san"}`,
		`pkid_crl_number{ca="ec-issuing"}`,
		`pkid_crl_next_update_timestamp_seconds{ca="root"}`,
		`pkid_revocations_total{ca="rsa-issuing",reason="A_A_COMPROMISE"}`,
		`pkid_crl_errors_total{ca="ec-issuing"} 0`,
	} {
		if !strings.Contains(text, series) {
			t.Errorf("scrape lacks %s", series)
		}
	}
}

func TestPrometheusConfigAndRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", "../configs/prometheus.yml"},
		{"check", "rules", "../configs/alerts.yml"},
		{"test", "rules", "../configs/alerts_test.yml"},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// A real Prometheus server on 127.0.0.1 scrapes the daemon; its HTTP API
// shows the target up, the token up and the issuances counted.
func TestPrometheusScrapesPkid(t *testing.T) {
	prometheus := requireTool(t, "prometheus")
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: pkid\n    static_configs: [{targets: [%q]}]\n", s.metrics)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	web := freeAddr()
	cmd := exec.Command(prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+web)
	logFile, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	s.issue(t, map[string]any{"profileId": prodClients, "commonName": "p.prod.example.internal", "ttl": "1h",
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		var v float64
		fmt.Sscan(r.Data.Result[0].Value[1].(string), &v)
		return v, true
	}
	wants := map[string]func(float64) bool{
		`up{job="pkid"}`: func(v float64) bool { return v == 1 },
		`pkid_hsm_up`:    func(v float64) bool { return v == 1 },
		`sum(pkid_issuance_requests_total{job="pkid",outcome="issued"})`: func(v float64) bool { return v >= 1 },
	}
	deadline := time.Now().Add(60 * time.Second)
	for q, ok := range wants {
		for {
			if v, found := query(q); found && ok(v) {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
				t.Fatalf("Prometheus never saw %s as expected\n%s", q, log)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// The shipped unit verifies and its sandbox scores at most 2.0.
func TestSystemdUnit(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	unit, err := os.ReadFile("../configs/pkid.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	local := filepath.Join(dir, "pkid.service")
	os.WriteFile(local, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/pkid", s.bin)), 0o644)
	out, err := exec.Command(analyze, "security", "--offline=true", local).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for pkid.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	var exposure float64
	fmt.Sscan(string(m[1]), &exposure)
	if exposure > 2.0 {
		t.Errorf("exposure %.1f, want at most 2.0", exposure)
	}
	t.Logf("systemd-analyze security exposure: %.1f", exposure)
	verify, err := exec.Command(analyze, "verify", local).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(verify))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, verify)
	}
}
