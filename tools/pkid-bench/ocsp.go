package main

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspTarget is issue 10's target: cached answers per second over
// keep-alive HTTP at concurrency 32, load generator on the same machine.
const ocspTarget = 10000.0

// ocspResult is the OCSP part.
type ocspResult struct {
	post, get    result
	answerBytes  int
	revokeCall   time.Duration // the revoke API call
	untilRevoked time.Duration // from sending the revocation to the first answer that says revoked
	revokeCPU    time.Duration // daemon CPU over that time
	goodAfter    int           // answers still "good" after the revoke call had returned
	revoked      bool          // an answer said revoked within the bound
}

// benchOCSP issues one certificate, then asks the responder about it with
// one pre-built request (SHA-1 CertID, what RFC 5019 clients send and what
// pkid pre-signs) by POST and by GET, and finally revokes it and asks until
// the answer says revoked.
func benchOCSP(o *options, fx *fixture, d *daemon, client *http.Client) (*ocspResult, error) {
	cert, err := issueOne(client, fx, ecBody)
	if err != nil {
		return nil, err
	}
	reqDER, err := ocsp.CreateRequest(cert.leaf, cert.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, err
	}
	pub := newPublicClient()
	postURL := "http://" + fx.public + "/ocsp"
	getURL := postURL + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(reqDER))
	fetch := func(get bool) ([]byte, error) {
		var resp *http.Response
		var err error
		if get {
			resp, err = pub.Get(getURL)
		} else {
			resp, err = pub.Post(postURL, "application/ocsp-request", bytes.NewReader(reqDER))
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/ocsp-response") {
			err = fmt.Errorf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return b, err
	}
	ask := func(get bool) (*ocsp.Response, []byte, error) {
		b, err := fetch(get)
		if err != nil {
			return nil, nil, err
		}
		r, err := ocsp.ParseResponseForCert(b, cert.leaf, cert.issuer)
		return r, b, err
	}
	// The first answer (through net/http, headers checked) is signed on
	// demand if the responder has not pre-signed it yet; it must say good.
	// The cases then measure the cached answer with a minimal client
	// (rawConn): anything else is counted as an error.
	var cached []byte
	for _, get := range []bool{false, true} {
		r, b, err := ask(get)
		if err != nil {
			return nil, fmt.Errorf("OCSP (GET %t): %w", get, err)
		}
		if r.Status != ocsp.Good {
			return nil, fmt.Errorf("OCSP (GET %t): status %d for an issued certificate, want good", get, r.Status)
		}
		cached = b
	}
	out := &ocspResult{answerBytes: len(cached)}
	getPath := getURL[len("http://"+fx.public):]
	for _, c := range []struct {
		name string
		req  []byte
		into *result
	}{{"POST /ocsp", append([]byte(fmt.Sprintf("POST /ocsp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ocsp-request\r\nContent-Length: %d\r\n\r\n",
		fx.public, len(reqDER))), reqDER...), &out.post},
		{"GET /ocsp/{base64}", []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", getPath, fx.public)), &out.get}} {
		l := load{concurrency: o.ocspConcurrency, max: o.maxRequests, worker: func() (func(int) string, func()) {
			rc := newRawConn(fx.public)
			return func(int) string {
				status, b, err := rc.do(c.req)
				switch {
				case err != nil:
					return err.Error()
				case status != 200:
					return fmt.Sprintf("status %d", status)
				case !bytes.Equal(b, cached):
					return fmt.Sprintf("not the cached answer (%d bytes)", len(b))
				}
				return ""
			}, rc.close
		}}
		r, err := measure(d, fx, l, o.warmup, o.ocspDuration, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		r.name = c.name
		*c.into = r
		fmt.Printf("OCSP %-20s c=%-3d %8.0f answers/s  p50 %-8v p99 %-8v daemon %v/answer  bench %v/answer  errors %d\n",
			c.name, r.concurrency, r.rate(), r.p50, r.p99, r.cpuPerOp, r.clientPerOp, r.errors)
	}

	// Revocation: the pre-signed good answer must give way to a revoked one.
	cpu0, t0 := daemonCPU(d.pid), time.Now()
	if out.revokeCall, err = revoke(client, fx, cert.serial, "KEY_COMPROMISE"); err != nil {
		return nil, err
	}
	for k := 0; k < 20000 && time.Since(t0) < 30*time.Second; k++ {
		r, _, err := ask(false)
		if err == nil && r.Status == ocsp.Revoked {
			out.untilRevoked, out.revokeCPU, out.revoked = time.Since(t0), daemonCPU(d.pid)-cpu0, true
			break
		}
		out.goodAfter++
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("OCSP after revocation: revoke call %v, answer revoked after %v (%d answers before it), daemon CPU %v\n",
		out.revokeCall, out.untilRevoked, out.goodAfter, out.revokeCPU)
	return out, nil
}
