package integration

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostileBodies is the malformed-request corpus: every entry must get a 4xx
// envelope, never a 5xx, and leave the daemon serving.
func hostileBodies() map[string][]byte {
	valid := `{"profileId":"13646ca2-2a8e-4d37-aa4e-641fc7771122","commonName":"h.prod.example.internal","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`
	out := map[string][]byte{
		"empty": {}, "spaces": []byte("   "), "null": []byte("null"), "array": []byte("[]"), "number": []byte("42"),
		"string": []byte(`"x"`), "true": []byte("true"), "nul byte raw": []byte("{\"ttl\":\"1h\x00\"}"),
		"nul byte escaped":    []byte(`{"profileId":"13646ca2-2a8e-4d37-aa4e-641fc7771122","commonName":"a\u0000b","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`),
		"direction override":  []byte(`{"profileId":"13646ca2-2a8e-4d37-aa4e-641fc7771122","commonName":"evil\u202eliam.prod.example.internal","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`),
		"invalid utf-8":       []byte("{\"commonName\":\"\xc3\x28\"}"),
		"duplicate keys":      []byte(`{"ttl":"1h","ttl":"999y"}`),
		"huge number":         []byte(`{"ttl":1e999999}`),
		"deep arrays":         []byte(strings.Repeat("[", 5000) + strings.Repeat("]", 5000)),
		"deep objects":        []byte(strings.Repeat(`{"a":`, 3000) + "1" + strings.Repeat("}", 3000)),
		"huge string":         []byte(`{"commonName":"` + strings.Repeat("a", 60000) + `"}`),
		"over the body limit": []byte(`{"commonName":"` + strings.Repeat("a", 70000) + `"}`),
		"huge array":          []byte(`{"altNames":[` + strings.TrimSuffix(strings.Repeat(`{"type":"dns_name","value":"a.b.c"},`, 1500), ",") + `]}`),
		"many unknown keys":   []byte("{" + strings.TrimSuffix(strings.Repeat(`"k":1,`, 1), ",") + manyKeys(2000) + "}"),
		"wrong types":         []byte(`{"profileId":[],"ttl":{},"keyUsages":[1,2,3],"altNames":[null,1,"x",[]]}`),
		"ttl overflow":        []byte(strings.Replace(valid, `"1h"`, `"99999999999999999999y"`, 1)),
		"ttl negative":        []byte(strings.Replace(valid, `"1h"`, `"-1h"`, 1)),
		"sql in cn":           []byte(strings.Replace(valid, `h.prod.example.internal`, `x'; DROP TABLE certificates; --`, 1)),
		"path traversal id":   []byte(strings.Replace(valid, `13646ca2-2a8e-4d37-aa4e-641fc7771122`, `../../etc/passwd`, 1)),
		"crlf in value":       []byte(strings.Replace(valid, `h.prod.example.internal`, `a\r\nX-Injected: 1`, 1)),
		"far future window":   []byte(strings.Replace(valid, `"ttl":"1h"`, `"ttl":"1h","notBefore":"9999-12-31T23:00:00Z","notAfter":"9999-12-31T23:59:59Z"`, 1)),
		"year zero window":    []byte(strings.Replace(valid, `"ttl":"1h"`, `"ttl":"1h","notBefore":"0000-01-01T00:00:00Z","notAfter":"0000-01-01T00:30:00Z"`, 1)),
		"uri SAN smuggling":   []byte(strings.Replace(valid, `"ttl":"1h"`, `"ttl":"1h","altNames":[{"type":"uri","value":"javascript:alert(1)//\u0000"}]`, 1)),
	}
	for k := 7; k < len(valid); k += 7 {
		out[fmt.Sprintf("truncated at %d", k)] = []byte(valid[:k])
	}
	r := rand.New(rand.NewSource(1))
	for k := 0; k < 150; k++ {
		b := make([]byte, r.Intn(2048))
		r.Read(b)
		out[fmt.Sprintf("random %d", k)] = b
	}
	for k := 0; k < 50; k++ { // valid JSON, random mutations of one byte
		b := []byte(valid)
		b[r.Intn(len(b))] = byte(r.Intn(256))
		out[fmt.Sprintf("mutated %d", k)] = b
	}
	return out
}

func manyKeys(n int) string {
	var b strings.Builder
	for k := 0; k < n; k++ {
		fmt.Fprintf(&b, `,"key%d":%d`, k, k)
	}
	return b.String()
}

func TestHostileInput(t *testing.T) {
	d := newDaemon2(t, func(c string) string {
		c = strings.Replace(c, "    name: prod-clients\n", "    name: prod-clients\n    rateLimit: {perMinute: 60, burst: 5}\n", 1)
		return c + "limits:\n  readHeaderTimeout: 1s\n  readTimeout: 3s\n  maxHeaderBytes: 8192\n"
	})
	post := func(body []byte, ctype string) (int, []byte) {
		req, _ := http.NewRequest("POST", "https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, err := d.clients["client"].Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, raw
	}

	t.Run("per-identity rate limit", func(t *testing.T) {
		body := []byte(`{"profileId":"13646ca2-2a8e-4d37-aa4e-641fc7771122","commonName":"r.prod.example.internal","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`)
		var limited *http.Response
		var limitedBody []byte
		okCount := 0
		for k := 0; k < 8 && limited == nil; k++ {
			req, _ := http.NewRequest("POST", "https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := d.clients["client"].Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				okCount++
			case 429:
				limited, limitedBody = resp, raw
			default:
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		if limited == nil || okCount < 5 {
			t.Fatalf("no 429 after %d issued (burst 5)", okCount)
		}
		if ra := limited.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("Retry-After = %q", ra)
		}
		if !strings.Contains(string(limitedBody), `"error":"RateLimitExceeded"`) {
			t.Errorf("body %s", limitedBody)
		}
		// The limit is per profile: another profile still serves this identity.
		if code, _ := post([]byte(`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","commonName":"ok.example.internal","ttl":"1h","altNames":[{"type":"dns_name","value":"ok.example.internal"}],"signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`), "application/json"); code != 200 {
			t.Errorf("web-server after prod-clients' limit: %d", code)
		}
	})

	t.Run("malformed corpus gets 4xx envelopes", func(t *testing.T) {
		corpus := hostileBodies()
		statuses := map[int]int{}
		for name, body := range corpus {
			for _, ctype := range []string{"application/json", "application/json; charset=utf-16"} {
				code, raw := post(body, ctype)
				statuses[code]++
				var env map[string]any
				// A random one-byte mutation may leave the request valid; nothing may ever get a 5xx.
				validOK := strings.HasPrefix(name, "mutated") && code == 200
				if !validOK && (code < 400 || code >= 500 || json.Unmarshal(raw, &env) != nil || env["statusCode"] != float64(code)) {
					t.Errorf("%s (%s): %d %.200s", name, ctype, code, raw)
				}
			}
		}
		t.Logf("%d hostile bodies × 2 content types: statuses %v", len(corpus), statuses)
		if _, text := httpGet(t, "http://"+d.metrics+"/metrics"); strings.Contains(text, `outcome="error",profile="unknown"} 1`) {
			t.Error("a hostile body was counted as an internal error")
		}
		if code, raw := post([]byte(`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","commonName":"ok.example.internal","ttl":"1h","altNames":[{"type":"dns_name","value":"ok.example.internal"}],"signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`), "application/json"); code != 200 {
			t.Fatalf("the daemon stopped serving after the corpus: %d %s", code, raw)
		}
	})

	t.Run("oversized headers", func(t *testing.T) {
		req, _ := http.NewRequest("POST", "https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Padding", strings.Repeat("a", 20000))
		// HTTP/1.1 so the server's MaxHeaderBytes answers with 431.
		tr := d.clients["client"].Transport.(*http.Transport).Clone()
		tr.ForceAttemptHTTP2, tr.TLSNextProto = false, map[string]func(string, *tls.Conn) http.RoundTripper{}
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})

	t.Run("a slow client is cut off while others are served", func(t *testing.T) {
		cfg := d.clients["client"].Transport.(*http.Transport).TLSClientConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		conn, err := tls.Dial("tcp", d.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "POST /api/v3/pki/certificates/issue-certificate HTTP/1.1\r\nHost: x\r\n")
		closed := make(chan error, 1)
		go func() {
			buf := make([]byte, 1)
			_, err := conn.Read(buf)
			closed <- err
		}()
		// Others are served while the slow client dribbles.
		if code, _ := post([]byte(`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","commonName":"ok.example.internal","ttl":"1h","altNames":[{"type":"dns_name","value":"ok.example.internal"}],"signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`), "application/json"); code != 200 {
			t.Errorf("a normal client got %d while a slow one was connected", code)
		}
		select {
		case err := <-closed:
			if err == nil {
				t.Error("the server sent data to a client that never finished its headers")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a client that never finished its headers was not cut off (readHeaderTimeout 1s)")
		}
	})

	t.Run("TLS: CBC suites and expired client certificates are refused", func(t *testing.T) {
		cfg := d.clients["client"].Transport.(*http.Transport).TLSClientConfig.Clone()
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
		if conn, err := tls.Dial("tcp", d.addr, cfg); err == nil {
			conn.Close()
			t.Error("a CBC-only TLS 1.2 client completed a handshake")
		}
		expired := exec.Command(s.bin, "ca", "issue-tls", "--module", moduleFromConfig(t, d.dir), "--token-label", "pkid-demo",
			"--pin-file", filepath.Join(d.dir, "hsm-pin"), "--ca-label", "pkid-tls-ca", "--ca-cert", filepath.Join(d.dir, "tls", "ca.pem"),
			"--client", "--cn", "expired", "--uri", "spiffe://example.internal/demo-client", "--validity", "1ms",
			"--out", filepath.Join(d.dir, "tls", "expired.pem"), "--key-out", filepath.Join(d.dir, "tls", "expired-key.pem"))
		expired.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(d.dir, "softhsm2.conf"))
		if out, err := expired.CombinedOutput(); err != nil {
			t.Fatalf("issue-tls: %v %s", err, out)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(d.dir, "tls", "expired.pem"), filepath.Join(d.dir, "tls", "expired-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		// A 1 ms validity ends within the second it was issued in (notAfter
		// is truncated to the second): wait for that instant, not a guess.
		time.Sleep(time.Until(pair.Leaf.NotAfter.Add(time.Second)))
		ecfg := d.clients["none"].Transport.(*http.Transport).TLSClientConfig.Clone()
		ecfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ecfg}}
		resp, err := c.Post("https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Errorf("an expired client certificate got an HTTP answer: %d", resp.StatusCode)
		}
	})
	assertNoSecrets(t, d.dir, d.logPath, nil)
}

// assertNoSecrets scans a daemon's log and database files for the token
// PIN, PEM private keys and the given private-key fragments.
func assertNoSecrets(t *testing.T, dir, logPath string, keys [][]byte) {
	t.Helper()
	pin, err := os.ReadFile(filepath.Join(dir, "hsm-pin"))
	if err != nil {
		t.Fatal(err)
	}
	needles := append([][]byte{bytes.TrimSpace(pin), []byte("PRIVATE KEY")}, keys...)
	for _, f := range []string{logPath, filepath.Join(dir, "pkid.db"), filepath.Join(dir, "pkid.db-wal")} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for k, n := range needles {
			if len(n) > 0 && bytes.Contains(data, n) {
				t.Errorf("%s contains secret #%d (0: the PIN, 1: a PEM private key, others: issued keys)", filepath.Base(f), k)
			}
		}
	}
}
