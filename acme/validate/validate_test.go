package validate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	name    = "www.example.internal"
	token   = "tok3n_-"
	keyAuth = token + ".thumbprint"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func challenge(typ string) Challenge {
	return Challenge{Type: typ, Identifier: "dns", Value: name, Token: token, KeyAuthorization: keyAuth}
}

// listener is a TCP listener on 127.0.0.1 that counts its connections.
type listener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func (l *listener) port() int { return l.Addr().(*net.TCPAddr).Port }

func listen(t *testing.T) *listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &listener{Listener: l}
}

// serveHTTP serves h on a fresh loopback listener until the test ends.
func serveHTTP(t *testing.T, h http.Handler) *listener {
	t.Helper()
	l := listen(t)
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l
}

func validator(t *testing.T, cfg Config) *Validator {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantFailure checks that err is a Failure of type typ whose detail has want.
func wantFailure(t *testing.T, err error, typ, want string) {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) || f.Type != typ || !strings.Contains(f.Detail, want) {
		t.Errorf("Validate = %v, want a %s failure mentioning %q", err, typ, want)
	}
}

func TestConfig(t *testing.T) {
	_, err := New(Config{HTTPPort: 70000, Resolvers: []string{"dns.example:53", "127.0.0.1"},
		HostOverrides: map[string]netip.Addr{"a.example.internal": netip.MustParseAddr("10.0.0.1"), "b.example.internal": loopback}})
	for _, want := range []string{"httpPort: 70000", `"dns.example:53" is not IP:port`, `"127.0.0.1" is not IP:port`, "a.example.internal points at 10.0.0.1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New: %v, want it to name %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "b.example.internal") {
		t.Errorf("a loopback override was refused: %v", err)
	}
	v := validator(t, Config{})
	if v.cfg.HTTPPort != 80 || v.cfg.TLSALPNPort != 443 {
		t.Errorf("default ports %d, %d", v.cfg.HTTPPort, v.cfg.TLSALPNPort)
	}
}

func TestHTTP01(t *testing.T) {
	elsewhere := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(keyAuth)) }))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var srv *listener
	srv = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != name+":"+strconv.Itoa(srv.port()) {
			http.Error(w, "wrong Host "+r.Host, http.StatusBadRequest)
			return
		}
		here := "http://" + r.Host
		switch r.URL.Path {
		case "/.well-known/acme-challenge/" + token:
			w.Write([]byte(keyAuth + "\r\n"))
		case "/.well-known/acme-challenge/wrong":
			w.Write([]byte("wrong.another-thumbprint"))
		case "/moved/same-host":
			w.Write([]byte("same-host.thumbprint"))
		case "/.well-known/acme-challenge/missing":
			http.NotFound(w, r)
		case "/.well-known/acme-challenge/huge":
			big := []byte(strings.Repeat(keyAuth, 1000))
			for range 1000 { // 86 MB unless the reader stops
				if _, err := w.Write(big); err != nil {
					return
				}
			}
		case "/.well-known/acme-challenge/hang":
			<-release
		case "/.well-known/acme-challenge/same-host":
			http.Redirect(w, r, here+"/moved/same-host", http.StatusFound)
		case "/.well-known/acme-challenge/other-host":
			http.Redirect(w, r, "http://elsewhere.example.internal:"+strconv.Itoa(elsewhere.port())+"/", http.StatusFound)
		case "/.well-known/acme-challenge/other-port":
			http.Redirect(w, r, "http://"+name+":"+strconv.Itoa(elsewhere.port())+"/", http.StatusFound)
		case "/.well-known/acme-challenge/https":
			http.Redirect(w, r, "https://"+r.Host+"/.well-known/acme-challenge/"+token, http.StatusFound)
		case "/.well-known/acme-challenge/loop":
			http.Redirect(w, r, here+r.URL.Path, http.StatusFound)
		default:
			http.Error(w, "unexpected "+r.URL.Path, http.StatusTeapot)
		}
	}))
	v := validator(t, Config{HTTPPort: srv.port(), Timeout: 500 * time.Millisecond,
		HostOverrides: map[string]netip.Addr{name: loopback, "elsewhere.example.internal": loopback}})
	ctx := context.Background()
	with := func(tok string) Challenge {
		c := challenge("http-01")
		c.Token, c.KeyAuthorization = tok, tok+".thumbprint"
		return c
	}
	if err := v.Validate(ctx, challenge("http-01")); err != nil {
		t.Errorf("good answer: %v", err)
	}
	if err := v.Validate(ctx, with("same-host")); err != nil {
		t.Errorf("redirect on the identifier's host and port: %v", err)
	}
	for _, c := range []struct{ token, typ, want string }{
		{"wrong", "unauthorized", "not the key authorization"},
		{"missing", "unauthorized", "answered 404"},
		{"huge", "incorrectResponse", "longer than 4096 bytes"},
		{"other-host", "incorrectResponse", "elsewhere.example.internal"},
		{"other-port", "incorrectResponse", strconv.Itoa(elsewhere.port())},
		{"https", "incorrectResponse", "https://"},
		{"loop", "incorrectResponse", "more than 10 redirects"},
	} {
		wantFailure(t, v.Validate(ctx, with(c.token)), c.typ, c.want)
	}
	start := time.Now()
	wantFailure(t, v.Validate(ctx, with("hang")), "connection", "within 500ms")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a hanging answer held the validation %s", d)
	}
	if n := elsewhere.accepted.Load(); n != 0 {
		t.Errorf("validation connected %d times to a host or port other than the identifier's", n)
	}

	// Nothing listens: a connection failure, not a hang.
	closed := listen(t)
	port := closed.port()
	closed.Close()
	v = validator(t, Config{HTTPPort: port, HostOverrides: map[string]netip.Addr{name: loopback}})
	wantFailure(t, v.Validate(ctx, challenge("http-01")), "connection", "could not connect")
	// An IP identifier is its own address.
	ip := challenge("http-01")
	ip.Identifier, ip.Value = "ip", "127.0.0.1"
	wantFailure(t, v.Validate(ctx, ip), "connection", "127.0.0.1")
}

// dnsServer answers A and TXT queries over UDP on 127.0.0.1 from its maps
// and NXDOMAIN otherwise.
type dnsServer struct {
	conn net.PacketConn
	a    map[string]netip.Addr
	txt  map[string][]string
}

func startDNS(t *testing.T, a map[string]netip.Addr, txt map[string][]string) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &dnsServer{conn: conn, a: a, txt: txt}
	go s.serve()
	return conn.LocalAddr().String()
}

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		qname := strings.TrimSuffix(q.Name.String(), ".")
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		b.EnableCompression()
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
		found := false
		switch q.Type {
		case dnsmessage.TypeA:
			if a, ok := s.a[qname]; ok {
				found = true
				b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			}
		case dnsmessage.TypeTXT:
			for _, v := range s.txt[qname] {
				found = true
				b.TXTResource(rh, dnsmessage.TXTResource{TXT: []string{v}})
			}
		}
		_, known := s.a[qname]
		if !found && !known && s.txt[qname] == nil {
			b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError})
			b.StartQuestions()
			b.Question(q)
		}
		msg, err := b.Finish()
		if err == nil {
			s.conn.WriteTo(msg, from)
		}
	}
}

func TestDNS01(t *testing.T) {
	resolver := startDNS(t, map[string]netip.Addr{name: loopback},
		map[string][]string{"_acme-challenge." + name: {"unrelated", digest(keyAuth)}, "_acme-challenge.wrong.example.internal": {"nope"}})
	v := validator(t, Config{Resolvers: []string{resolver}})
	ctx := context.Background()
	if err := v.Validate(ctx, challenge("dns-01")); err != nil {
		t.Errorf("good TXT record: %v", err)
	}
	c := challenge("dns-01")
	c.Value = "wrong.example.internal"
	wantFailure(t, v.Validate(ctx, c), "unauthorized", "holds the key authorization's digest")
	c.Value = "absent.example.internal"
	wantFailure(t, v.Validate(ctx, c), "unauthorized", "no TXT record at _acme-challenge.absent.example.internal")
	c.Identifier, c.Value = "ip", "127.0.0.1"
	wantFailure(t, v.Validate(ctx, c), "malformed", "DNS names only")

	// http-01 resolves names through the same resolvers.
	srv := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(keyAuth)) }))
	v = validator(t, Config{Resolvers: []string{resolver}, HTTPPort: srv.port()})
	if err := v.Validate(ctx, challenge("http-01")); err != nil {
		t.Errorf("http-01 through the configured resolver: %v", err)
	}
	c = challenge("http-01")
	c.Value = "unknown.example.internal"
	wantFailure(t, v.Validate(ctx, c), "dns", "could not resolve unknown.example.internal")
}

// alpnCert is a tls-alpn-01 certificate for names with the digest of ka.
func alpnCert(t *testing.T, names []string, ka string, critical bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sum := sha256.Sum256([]byte(ka))
	value, _ := asn1.Marshal(sum[:])
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acme"}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: OIDACMEIdentifier, Critical: critical, Value: value}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLSALPN01(t *testing.T) {
	certs := map[string]tls.Certificate{}
	var sawSNI atomic.Value
	l := listen(t)
	srv := tls.NewListener(l, &tls.Config{NextProtos: []string{ALPNProto}, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		sawSNI.Store(h.ServerName)
		c := certs[h.ServerName]
		return &c, nil
	}})
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	ctx := context.Background()
	try := func(cert tls.Certificate, c Challenge) error {
		certs[c.Value] = cert
		if c.Identifier == "ip" {
			certs[reverseName(c.Value)] = cert
		}
		v := validator(t, Config{TLSALPNPort: l.port(), HostOverrides: map[string]netip.Addr{name: loopback}})
		return v.Validate(ctx, c)
	}
	if err := try(alpnCert(t, []string{name}, keyAuth, true), challenge("tls-alpn-01")); err != nil {
		t.Errorf("good certificate: %v", err)
	}
	if sawSNI.Load() != name {
		t.Errorf("SNI %v, want the identifier", sawSNI.Load())
	}
	wantFailure(t, try(alpnCert(t, []string{name}, "other.thumbprint", true), challenge("tls-alpn-01")), "unauthorized", "does not hold")
	wantFailure(t, try(alpnCert(t, []string{name}, keyAuth, false), challenge("tls-alpn-01")), "unauthorized", "not critical")
	wantFailure(t, try(alpnCert(t, []string{name, "x.example.internal"}, keyAuth, true), challenge("tls-alpn-01")), "unauthorized", "exactly the identifier")
	ip := challenge("tls-alpn-01")
	ip.Identifier, ip.Value = "ip", "127.0.0.1"
	wantFailure(t, try(alpnCert(t, []string{name}, keyAuth, true), ip), "unauthorized", "exactly the identifier")
	if sawSNI.Load() != "1.0.0.127.in-addr.arpa" {
		t.Errorf("SNI for an IP identifier %v, want its reverse name", sawSNI.Load())
	}

	// A server that does not speak acme-tls/1.
	plain := listen(t)
	go func() {
		for {
			c, err := tls.NewListener(plain, &tls.Config{Certificates: []tls.Certificate{alpnCert(t, []string{name}, keyAuth, true)}}).Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	v := validator(t, Config{TLSALPNPort: plain.port(), HostOverrides: map[string]netip.Addr{name: loopback}})
	if err := v.Validate(ctx, challenge("tls-alpn-01")); err == nil {
		t.Error("a server without acme-tls/1 passed")
	}
}

func TestReverseName(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.5":   "5.2.0.192.in-addr.arpa",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	} {
		if got := reverseName(ip); got != want {
			t.Errorf("reverseName(%s) = %s, want %s", ip, got, want)
		}
	}
}
