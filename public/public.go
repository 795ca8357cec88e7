// Package public is pkid's unauthenticated, read-only HTTP edge (DESIGN.md
// §13, §14): the current CRL of every CA with a key and the certificate of
// every configured CA, so that the CRL distribution point and AIA
// caIssuers URLs in certificates can point at pkid itself.
package public

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
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

// Metrics is what the public edge reports.
type Metrics interface {
	ObserveHTTP(route string, code int, d time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) ObserveHTTP(string, int, time.Duration) {}

// Route labels for metrics.
const (
	RouteCRL = "/crl/{ca}.crl"
	RouteCA  = "/ca/{ca}.crt"
)

// Config wires the handler of one configuration generation.
type Config struct {
	CRLs    CRLs
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
	mux.HandleFunc("/", h.timed("unknown", func(w http.ResponseWriter, r *http.Request) int {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return http.StatusMethodNotAllowed
		}
		http.NotFound(w, r)
		return http.StatusNotFound
	}))
	return mux
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
	return serve(w, r, contentTypeCRL, c.DER, etag(c.DER), c.ThisUpdate, maxAge)
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
