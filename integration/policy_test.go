package integration

import (
	"bufio"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

const denyTest = "5d1a7b3c-0f4e-4c2a-9b8d-6e7f8a9b0c1d"

// denyProfile is a profile with deny lists, appended to a fixture's config
// (profiles are the config's last section).
const denyProfile = `
  - id: ` + denyTest + `
    name: deny-test
    ca: ec-issuing
    allowedIdentities: ["uri:spiffe://example.internal/demo-client"]
    defaults:
      keyUsages: [digital_signature]
      extendedKeyUsages: [server_auth]
    policy:
      commonName:
        allowed: ["*.example.internal"]
        denied: [admin.example.internal]
      altNames:
        dns_name:
          allowed: ["*.example.internal"]
          denied: [admin.example.internal]
        ip_address:
          allowed: [10.0.0.0/8, 127.0.0.0/8, "::1"]
          denied: [127.0.0.1, "::1"]
        uri:
          allowed: ["spiffe://example.internal/ns/team-a/*", "https://*.example.internal/*"]
          denied: ["https://admin.example.internal/*"]
      keyUsages:
        allowed: [digital_signature]
      extendedKeyUsages:
        allowed: ["*"]
      signatureAlgorithms: ["ECDSA-*"]
      keyAlgorithms: [EC_prime256v1]
      maxValidity: 30d
    lintExclusions: [e_ext_san_uniform_resource_identifier_present]
`

func denyRequest(change func(map[string]any)) map[string]any {
	req := map[string]any{"profileId": denyTest, "ttl": "1h", "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1",
		"commonName": "ok.example.internal", "altNames": []map[string]string{{"type": "dns_name", "value": "ok.example.internal"}}}
	change(req)
	return req
}

func sans(kv ...string) []map[string]string {
	var out []map[string]string
	for k := 0; k+1 < len(kv); k += 2 {
		out = append(out, map[string]string{"type": kv[k], "value": kv[k+1]})
	}
	return out
}

// Every bypass class of issue #8, against the real daemon: refused with a
// 400 naming the rule and the canonical value, or a 422 at the field.
func TestPolicyBypassesAreRefused(t *testing.T) {
	d := newDaemon2(t, func(cfg string) string { return cfg + denyProfile })
	cases := []struct {
		name   string
		change func(map[string]any)
		status int
		want   string // in the message (400) or the issue path (422)
	}{
		{"upper-case denied DNS name", func(r map[string]any) { r["altNames"] = sans("dns_name", "ADMIN.example.internal") },
			400, "dns_name SAN matching denied pattern 'admin.example.internal'"},
		{"upper-case denied CN", func(r map[string]any) { r["commonName"] = "ADMIN.Example.Internal" },
			400, "common_name value 'admin.example.internal' is denied"},
		{"trailing-dot denied name", func(r map[string]any) { r["altNames"] = sans("dns_name", "admin.example.internal.") },
			422, "Invalid DNS name: a trailing dot"},
		{"IPv4-mapped denied address", func(r map[string]any) { r["altNames"] = sans("ip_address", "::ffff:127.0.0.1") },
			400, "'127.0.0.1'"},
		{"long-form IPv6 loopback", func(r map[string]any) { r["altNames"] = sans("ip_address", "0:0:0:0:0:0:0:1") },
			400, "'::1'"},
		{"dot segments leave the allowed path", func(r map[string]any) {
			r["altNames"] = sans("uri", "spiffe://example.internal/ns/team-a/../team-b/svc")
		}, 422, "segments is not allowed"},
		{"percent-encoded dot segments", func(r map[string]any) {
			r["altNames"] = sans("uri", "spiffe://example.internal/ns/team-a/%2e%2e/team-b/svc")
		}, 422, "segments is not allowed"},
		{"a host that only starts like the allowed one", func(r map[string]any) {
			r["altNames"] = sans("uri", "spiffe://example.internal.evil/ns/team-a/svc")
		}, 400, "uri SAN value 'spiffe://example.internal.evil/ns/team-a/svc'"},
		{"the default port of a denied URI", func(r map[string]any) {
			r["altNames"] = sans("uri", "https://admin.example.internal:443/x")
		}, 400, "uri SAN matching denied pattern 'https://admin.example.internal/x'"},
		{"the empty path of a denied URI", func(r map[string]any) {
			r["altNames"] = sans("uri", "https://admin.example.internal")
		}, 400, "uri SAN matching denied pattern 'https://admin.example.internal/'"},
		{"another port of a denied URI", func(r map[string]any) {
			r["altNames"] = sans("uri", "https://admin.example.internal:8443/x")
		}, 400, "uri SAN matching denied pattern 'https://admin.example.internal:8443/x'"},
		{"a port no allowed URI pattern names", func(r map[string]any) {
			r["altNames"] = sans("uri", "https://api.example.internal:8443/x")
		}, 400, "uri SAN value 'https://api.example.internal:8443/x' does not match allowed patterns"},
		{"an https URI without authority", func(r map[string]any) {
			r["altNames"] = sans("uri", "https:admin.example.internal/x")
		}, 422, "needs an authority"},
		{"wildcard covering a denied name", func(r map[string]any) {
			r["commonName"] = "*.example.internal"
			r["altNames"] = sans("dns_name", "*.example.internal")
		}, 400, "'*.example.internal' covers"},
		{"EKU star does not cover OCSP signing", func(r map[string]any) { r["extendedKeyUsages"] = []string{"ocsp_signing"} },
			400, "Invalid extended key usages: ocsp_signing"},
		{"EKU star does not cover code signing", func(r map[string]any) { r["extendedKeyUsages"] = []string{"code_signing"} },
			400, "Invalid extended key usages: code_signing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := d.post(t, "client", denyRequest(c.change))
			if code != c.status {
				t.Fatalf("status %d, want %d: %v", code, c.status, body)
			}
			raw, _ := json.Marshal(body)
			if !strings.Contains(string(raw), c.want) {
				t.Errorf("answer does not name %q: %s", c.want, raw)
			}
		})
	}

	// What passes is issued with the canonical value, which the record keeps too.
	code, body := d.post(t, "client", denyRequest(func(r map[string]any) {
		r["commonName"] = "API.Example.Internal"
		r["altNames"] = sans("dns_name", "API.Example.Internal", "ip_address", "::ffff:10.1.2.3", "uri", "spiffe://Example.Internal/ns/team-a/%73vc",
			"uri", "HTTPS://API.Example.Internal:443")
	}))
	if code != 200 {
		t.Fatalf("canonical request: %d %v", code, body)
	}
	leaf, err := parseCert(body["certificate"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "api.example.internal" || fmt.Sprint(leaf.DNSNames) != "[api.example.internal]" ||
		fmt.Sprint(leaf.IPAddresses) != "[10.1.2.3]" || fmt.Sprint(leaf.URIs) != "[spiffe://example.internal/ns/team-a/svc https://api.example.internal/]" {
		t.Errorf("certificate carries %q %v %v %v, want the canonical values", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, leaf.URIs)
	}
	out, errOut, rc := s.pkid(t, "records", "show", "--config", filepath.Join(d.dir, "pkid.yaml"), body["serialNumber"].(string))
	if rc != 0 {
		t.Fatalf("records show: %d %s", rc, errOut)
	}
	for _, want := range []string{`"commonName": "api.example.internal"`, `"value": "api.example.internal"`, `"value": "10.1.2.3"`,
		`"value": "spiffe://example.internal/ns/team-a/svc"`, `"value": "https://api.example.internal/"`,
		`"identity": "uri:spiffe://example.internal/demo-client"`} {
		if !strings.Contains(out, want) {
			t.Errorf("record lacks %s:\n%s", want, out)
		}
	}
}

// issueClientCert has the fixture's mTLS CA issue a client certificate.
func issueClientCert(t *testing.T, dir, name string, args ...string) *http.Client {
	t.Helper()
	cmd := exec.Command(s.bin, append([]string{"ca", "issue-tls", "--module", moduleFromConfig(t, dir), "--token-label", "pkid-demo",
		"--pin-file", filepath.Join(dir, "hsm-pin"), "--ca-label", "pkid-tls-ca", "--ca-cert", filepath.Join(dir, "tls", "ca.pem"),
		"--client", "--out", filepath.Join(dir, "tls", name+".pem"), "--key-out", filepath.Join(dir, "tls", name+"-key.pem")}, args...)...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(dir, "softhsm2.conf"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("issue-tls: %v %s", err, out)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", name+".pem"), filepath.Join(dir, "tls", name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	clients, _, err := fixtureClients(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clients["none"].Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.Certificates = []tls.Certificate{pair}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// Typed identities: a certificate whose only name is a CN that spells the
// allowed SPIFFE ID is cn:…, allowed nowhere (403); one with two URI SANs
// is ambiguous (401).
func TestTypedIdentities(t *testing.T) {
	d := startDaemon2(t)
	body, _ := json.Marshal(intruderWeb)
	for _, c := range []struct {
		name   string
		args   []string
		status int
		want   string
	}{
		{"CN-only spelling the allowed URI", []string{"--cn", "spiffe://example.internal/demo-client"}, 403, "cn:spiffe://example.internal/demo-client"},
		{"a host-like CN is canonical", []string{"--cn", "DEMO-Client"}, 403, `"identity":"cn:demo-client"`},
		{"two URI SANs", []string{"--cn", "two", "--uri", "spiffe://example.internal/demo-client", "--uri", "spiffe://example.internal/other"},
			401, "ambiguous"},
	} {
		t.Run(c.name, func(t *testing.T) {
			client := issueClientCert(t, d.dir, strings.ReplaceAll(c.name, " ", "-"), c.args...)
			resp, err := client.Post("https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", "application/json", strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got map[string]any
			json.NewDecoder(resp.Body).Decode(&got)
			raw, _ := json.Marshal(got)
			if resp.StatusCode != c.status || !strings.Contains(string(raw), c.want) {
				t.Errorf("%d %s, want %d naming %q", resp.StatusCode, raw, c.status, c.want)
			}
		})
	}
}

// An identity allowed on no profile cannot tie up the daemon: its slow
// bodies are never read and take no slot, so an allowed client is served
// throughout; and 300 refusals leave a bounded number of audit rows while
// the metrics count every one.
func TestUnauthorizedFloodLeavesAllowedClientServed(t *testing.T) {
	d := newDaemon2(t, func(cfg string) string {
		return strings.Replace(cfg, "profiles:\n", "limits:\n  maxConcurrentRequests: 4\n  bodyReadTimeout: 2s\nprofiles:\n", 1)
	})
	intruderTLS := d.clients["intruder"].Transport.(*http.Transport).TLSClientConfig
	const flood = 40
	var wg sync.WaitGroup
	answers := make(chan string, flood)
	for k := 0; k < flood; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := tls.Dial("tcp", d.addr, intruderTLS)
			if err != nil {
				answers <- "dial: " + err.Error()
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			// Headers promising a large body, then only its first bytes.
			fmt.Fprintf(conn, "POST /api/v3/pki/certificates/issue-certificate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{\"profileId\":")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				answers <- "read: " + err.Error()
				return
			}
			resp.Body.Close()
			answers <- resp.Status
		}()
	}
	// While the flood holds its connections, the allowed client is served.
	for k := 0; k < 3; k++ {
		if code, body := d.post(t, "client", intruderWeb); code != 200 {
			t.Fatalf("allowed client during the flood: %d %v", code, body)
		}
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if a != "403 Forbidden" {
			t.Errorf("a slow body of an identity allowed nowhere got %q, want an immediate 403", a)
		}
	}

	// 300 refusals more: a bounded audit, every one counted.
	for k := 0; k < 260; k++ {
		if code, _ := d.post(t, "intruder", intruderWeb); code != 403 {
			t.Fatalf("intruder request %d: %d", k, code)
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.dir, "pkid.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM audit WHERE event LIKE '%"identity":"uri:spiffe://example.internal/intruder"%'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows == 0 || rows > 2*11 { // at most 10 a minute and one summary; the test may straddle a minute
		t.Errorf("300 refusals left %d audit rows, want a bounded number (1..22)", rows)
	}
	_, metrics := httpGet(t, "http://"+d.metrics+"/metrics")
	if !strings.Contains(metrics, `pkid_client_identities_rejected_total{reason="not_allowed"} 300`) {
		t.Errorf("the metrics do not count all 300 refusals:\n%s", grepLines(metrics, "client_identities_rejected"))
	}
}

func grepLines(text, needle string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, needle) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
