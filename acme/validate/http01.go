package validate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// errRedirect is a redirect http-01 refuses to follow.
type errRedirect struct{ to string }

func (e *errRedirect) Error() string { return "redirect to " + e.to }

// http01 fetches http://<identifier>/.well-known/acme-challenge/<token>
// (RFC 8555 §8.3) and compares the body with the key authorization.
func (v *Validator) http01(ctx context.Context, c Challenge) error {
	host := c.Value
	port := v.cfg.HTTPPort
	authority := host
	if strings.Contains(host, ":") {
		authority = "[" + host + "]"
	}
	if port != 80 {
		authority = net.JoinHostPort(host, strconv.Itoa(port))
	}
	target := url.URL{Scheme: "http", Host: authority, Path: "/.well-known/acme-challenge/" + c.Token}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy: nil, // never through a proxy: the connection is to the identifier
			// Whatever URL a redirect names, a connection goes only to the
			// identifier's own addresses on the http-01 port.
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return v.dial(ctx, c, port) },
			DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("http-01 does not connect with TLS")
			},
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 8 << 10,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return &errRedirect{to: req.URL.Redacted() + fmt.Sprintf(" (more than %d redirects)", maxRedirects)}
			}
			to := req.URL
			toPort := to.Port()
			if toPort == "" {
				toPort = "80"
			}
			if to.Scheme != "http" || !strings.EqualFold(to.Hostname(), host) || toPort != strconv.Itoa(port) || to.User != nil {
				return &errRedirect{to: to.Redacted()}
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return fail("malformed", "cannot build the http-01 request for %s", c.Value)
	}
	req.Header.Set("User-Agent", "pkid-acme-validator")
	resp, err := client.Do(req)
	if err != nil {
		var f *Failure
		var r *errRedirect
		switch {
		case errors.As(err, &r):
			return fail("incorrectResponse", "http-01 for %s: %s refused: validation stays on the identifier's host, scheme and port", c.Value, r.to)
		case errors.As(err, &f):
			return f
		}
		return fail("connection", "http-01 for %s: no valid HTTP answer from %s", c.Value, target.Redacted())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail("unauthorized", "http-01 for %s: %s answered %d", c.Value, target.Redacted(), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return fail("connection", "http-01 for %s: the answer was cut off", c.Value)
	case len(body) > maxBody:
		return fail("incorrectResponse", "http-01 for %s: the answer is longer than %d bytes", c.Value, maxBody)
	}
	// RFC 8555 §8.3: trailing whitespace is ignored.
	if strings.TrimRight(string(body), " \t\r\n") != c.KeyAuthorization {
		return fail("unauthorized", "http-01 for %s: the answer is not the key authorization", c.Value)
	}
	return nil
}
