// Package public is pkid's unauthenticated, read-only HTTP edge (DESIGN.md
// §13, §14): the current CRL of every CA with a key, the certificate of
// every configured CA, so that the CRL distribution point and AIA
// caIssuers URLs in certificates can point at pkid itself, and the OCSP
// responder (POST /ocsp and RFC 5019's GET /ocsp/{base64}).
package public

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pkid/pkid/issuer"
)

// Content types of what is served (RFC 5280 §4.2.1.13, §4.2.2.1).
const (
	contentTypeCRL  = "application/pkix-crl"
	contentTypeCert = "application/pkix-cert"
)

// Caching bounds: a CRL's max-age never runs past its nextUpdate and is
// at most crlMaxAge, so relying parties see a new CRL soon after a
// revocation; CA certificates change only with the configuration.
const (
	crlMaxAge  = 5 * time.Minute
	certMaxAge = 24 * time.Hour
)

// CRLs is where the current CRLs come from.
type CRLs interface {
	Current(ca string) (*issuer.PublishedCRL, bool)
}

// OCSP answers DER OCSP requests.
type OCSP interface {
	Respond(ctx context.Context, raw []byte) issuer.OCSPAnswer
}

// maxOCSPRequest bounds an OCSP request; a real one is about 100 bytes.
const maxOCSPRequest = 10 << 10

// Metrics is what the public edge reports.
type Metrics interface {
	ObserveHTTP(route string, code int, d time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) ObserveHTTP(string, int, time.Duration) {}

// Route labels for metrics.
const (
	RouteCRL  = "/crl/{ca}.crl"
	RouteCA   = "/ca/{ca}.crt"
	RouteOCSP = "/ocsp"
)

// Config wires the handler of one configuration generation.
type Config struct {
	CRLs    CRLs
	OCSP    OCSP         // nil: no OCSP responder
	CAs     []*issuer.CA // every configured CA
	Logger  *slog.Logger
	Metrics Metrics
	Now     func() time.Time
}

type caFile struct {
	der      []byte
	etag     string
	modified time.Time
}

type handler struct {
	cfg Config
	cas map[string]caFile
}

// NewHandler returns the public listener's handler.
func NewHandler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = nopMetrics{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &handler{cfg: cfg, cas: map[string]caFile{}}
	for _, ca := range cfg.CAs {
		c := ca.Certificate()
		h.cas[ca.Name()] = caFile{der: c.Raw, etag: etag(c.Raw), modified: c.NotBefore}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /crl/{file}", h.timed(RouteCRL, h.crl))
	mux.HandleFunc("GET /ca/{file}", h.timed(RouteCA, h.caCert))
	if cfg.OCSP != nil {
		mux.HandleFunc("POST /ocsp", h.timed(RouteOCSP, h.ocspPost))
	}
	mux.HandleFunc("/", h.timed("unknown", func(w http.ResponseWriter, r *http.Request) int {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return http.StatusMethodNotAllowed
		}
		http.NotFound(w, r)
		return http.StatusNotFound
	}))
	if cfg.OCSP == nil {
		return mux
	}
	// GET requests carry base64, whose '/' (and "//") the ServeMux would
	// "clean" into a redirect: they are taken before it.
	get := h.timed(RouteOCSP, h.ocspGet)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.EscapedPath(), "/ocsp/") {
			get(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (h *handler) timed(route string, fn func(http.ResponseWriter, *http.Request) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status := fn(w, r)
		h.cfg.Metrics.ObserveHTTP(route, status, time.Since(start))
	}
}

func etag(der []byte) string {
	sum := sha256.Sum256(der)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// name returns the CA name of a file "{ca}.{ext}".
func name(r *http.Request, ext string) (string, bool) {
	return strings.CutSuffix(r.PathValue("file"), "."+ext)
}

func (h *handler) crl(w http.ResponseWriter, r *http.Request) int {
	ca, ok := name(r, "crl")
	if !ok {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	c, ok := h.cfg.CRLs.Current(ca)
	if !ok {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	maxAge := min(c.NextUpdate.Sub(h.cfg.Now()), crlMaxAge)
	// A CRL number is never used twice for a CA (on any node), so it names
	// the bytes as well as a digest would, without hashing megabytes per GET.
	tag := `"` + ca + "-" + strconv.FormatInt(c.Number, 10) + `"`
	return serve(w, r, contentTypeCRL, c.DER, tag, c.ThisUpdate, maxAge)
}

func (h *handler) caCert(w http.ResponseWriter, r *http.Request) int {
	ca, ok := name(r, "crt")
	if !ok {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	f, ok := h.cas[ca]
	if !ok {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	return serve(w, r, contentTypeCert, f.der, f.etag, f.modified, certMaxAge)
}

// serve answers with DER and its validators; http.ServeContent handles
// If-None-Match, If-Modified-Since, HEAD and ranges.
func serve(w http.ResponseWriter, r *http.Request, ctype string, der []byte, tag string, modified time.Time, maxAge time.Duration) int {
	secs := int64(maxAge / time.Second)
	if secs < 0 {
		secs = 0
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "public, max-age="+strconv.FormatInt(secs, 10))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	http.ServeContent(sw, r, "", modified, bytes.NewReader(der))
	return sw.status
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

const contentTypeOCSP = "application/ocsp-response"

// ocspPost answers an OCSP request in the body (RFC 6960 Appendix A.1).
func (h *handler) ocspPost(w http.ResponseWriter, r *http.Request) int {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "OCSP request too large", http.StatusRequestEntityTooLarge)
			return http.StatusRequestEntityTooLarge
		}
		raw = nil // answered as malformed
	}
	a := h.cfg.OCSP.Respond(r.Context(), raw)
	w.Header().Set("Cache-Control", "no-store") // a POST answer is not cached (RFC 5019 §5)
	return h.ocspWrite(w, a)
}

// ocspGet answers the base64 request in the path (RFC 5019 §5): cacheable
// until the answer's nextUpdate.
func (h *handler) ocspGet(w http.ResponseWriter, r *http.Request) int {
	enc := strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/")
	var raw []byte
	if len(enc) <= 2*maxOCSPRequest {
		if s, err := url.PathUnescape(enc); err == nil {
			for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				if b, err := e.DecodeString(s); err == nil {
					raw = b
					break
				}
			}
		}
	}
	a := h.cfg.OCSP.Respond(r.Context(), raw)
	if a.NextUpdate.IsZero() {
		w.Header().Set("Cache-Control", "no-store")
	} else {
		maxAge := max(int64(a.NextUpdate.Sub(h.cfg.Now())/time.Second), 0)
		w.Header().Set("Cache-Control", "public, max-age="+strconv.FormatInt(maxAge, 10)+", no-transform, must-revalidate")
		w.Header().Set("Last-Modified", a.ThisUpdate.UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", a.NextUpdate.UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", etag(a.DER))
	}
	return h.ocspWrite(w, a)
}

func (h *handler) ocspWrite(w http.ResponseWriter, a issuer.OCSPAnswer) int {
	w.Header().Set("Content-Type", contentTypeOCSP)
	w.Header().Set("Content-Length", strconv.Itoa(len(a.DER)))
	w.WriteHeader(http.StatusOK) // error statuses travel inside the OCSP response
	w.Write(a.DER)
	return http.StatusOK
}
