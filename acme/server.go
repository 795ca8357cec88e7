package acme

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pkid/pkid/acme/validate"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// PathPrefix is where the ACME servers live on the API listener:
// PathPrefix + <profile slug> + "/directory".
const PathPrefix = "/acme/"

// Defaults for Config.
const (
	DefaultMaxBodyBytes    = 64 << 10
	DefaultBodyReadTimeout = 10 * time.Second
)

// Issuer is what the ACME server needs from the issuance core.
type Issuer interface {
	ACMEProfile(slug string) (issuer.ACMEProfile, bool)
	CheckACMEIdentifiers(ctx context.Context, meta issuer.Meta, profileID string, identifiers []policy.SAN) error
	SignACME(ctx context.Context, meta issuer.Meta, req issuer.ACMERequest) (*issuer.Result, error)
	RevokeACME(ctx context.Context, meta issuer.Meta, req issuer.ACMERevokeRequest) (*record.Certificate, error)
	Lookup(ctx context.Context, meta issuer.Meta, key string, byID bool) (*issuer.Certificate, error)
}

// Store is what the ACME server keeps in the store (store.ACME).
type Store interface {
	ACMEEABKey(ctx context.Context, keyID string) (*record.ACMEEABKey, error)
	CreateACMEAccount(ctx context.Context, a *record.ACMEAccount) error
	ACMEAccount(ctx context.Context, id string) (*record.ACMEAccount, error)
	ACMEAccountByKey(ctx context.Context, profileID, keyID string) (*record.ACMEAccount, error)
	UpdateACMEAccount(ctx context.Context, id string, contacts []string, status string, at time.Time) error
	ChangeACMEAccountKey(ctx context.Context, id, oldKeyID, newKeyID string, key []byte, at time.Time) error
	CreateACMEOrder(ctx context.Context, o *record.ACMEOrder, authzs []*record.ACMEAuthorization) error
	ACMEOrder(ctx context.Context, id string) (*record.ACMEOrder, error)
	ACMEOrders(ctx context.Context, accountID string, limit int, fn func(*record.ACMEOrder) error) error
	UpdateACMEOrder(ctx context.Context, id, from, to, certificateID string, problem []byte, at time.Time) error
	ACMEAuthorization(ctx context.Context, id string) (*record.ACMEAuthorization, error)
	UpdateACMEAuthorization(ctx context.Context, id, from, to string, at time.Time) error
	UpdateACMEChallenge(ctx context.Context, authzID, typ, from string, c record.ACMEChallenge, authzStatus string) error
	UseACMENonce(ctx context.Context, consume, issue string, expires, now time.Time) (bool, error)
}

// Validator checks a challenge (acme/validate).
type Validator interface {
	Validate(ctx context.Context, c validate.Challenge) error
}

// Metrics is what the ACME server reports; the metrics package satisfies it.
type Metrics interface {
	ObserveACMEOrder(profile, outcome string)
	ObserveACMEValidation(challenge, outcome string)
	ObserveHTTP(route string, code int, d time.Duration)
}

// Outcomes of orders and validations, as counted.
const (
	OrderCreated  = "created"
	OrderRejected = "rejected" // refused at new-order (policy, identifiers)
	OrderValid    = "valid"    // a certificate was issued
	OrderInvalid  = "invalid"  // an authorization or the finalize failed

	ValidationValid   = "valid"
	ValidationInvalid = "invalid"
)

// OrderOutcomes and ValidationOutcomes list the outcomes, so counters can
// start at zero.
var (
	OrderOutcomes      = []string{OrderCreated, OrderRejected, OrderValid, OrderInvalid}
	ValidationOutcomes = []string{ValidationValid, ValidationInvalid}
)

type nopMetrics struct{}

func (nopMetrics) ObserveACMEOrder(string, string)        {}
func (nopMetrics) ObserveACMEValidation(string, string)   {}
func (nopMetrics) ObserveHTTP(string, int, time.Duration) {}

// Config wires the ACME server of one configuration generation.
type Config struct {
	Issuer    Issuer    // required
	Store     Store     // required
	Validator Validator // required
	Runtime   *Runtime  // required; outlives the generation
	// EABSecret derives the EAB MAC keys; nil: no binding verifies.
	EABSecret       []byte
	Logger          *slog.Logger
	Metrics         Metrics
	MaxBodyBytes    int64            // default DefaultMaxBodyBytes
	BodyReadTimeout time.Duration    // default DefaultBodyReadTimeout
	Now             func() time.Time // default time.Now
}

// Server serves the ACME directories of every profile that enables ACME.
type Server struct {
	cfg Config
}

// New checks the wiring and applies defaults.
func New(cfg Config) (*Server, error) {
	if cfg.Issuer == nil || cfg.Store == nil || cfg.Validator == nil || cfg.Runtime == nil {
		return nil, errors.New("acme: an issuer, a store, a validator and a runtime are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = nopMetrics{}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}, nil
}

func (s *Server) now() time.Time { return s.cfg.Now().UTC() }

// Route templates, as metrics label them.
const (
	RouteDirectory  = PathPrefix + "{profile}/directory"
	RouteNewNonce   = PathPrefix + "{profile}/new-nonce"
	RouteNewAccount = PathPrefix + "{profile}/new-account"
	RouteAccount    = PathPrefix + "{profile}/acct/{id}"
	RouteOrders     = PathPrefix + "{profile}/acct/{id}/orders"
	RouteKeyChange  = PathPrefix + "{profile}/key-change"
	RouteNewOrder   = PathPrefix + "{profile}/new-order"
	RouteOrder      = PathPrefix + "{profile}/order/{id}"
	RouteFinalize   = PathPrefix + "{profile}/order/{id}/finalize"
	RouteAuthz      = PathPrefix + "{profile}/authz/{id}"
	RouteChallenge  = PathPrefix + "{profile}/chall/{id}/{type}"
	RouteCert       = PathPrefix + "{profile}/cert/{id}"
	RouteRevoke     = PathPrefix + "{profile}/revoke-cert"
	routeUnknown    = PathPrefix + "unknown"
)

// Routes lists every route template the ACME server serves.
func Routes() []string {
	return []string{RouteDirectory, RouteNewNonce, RouteNewAccount, RouteAccount, RouteOrders, RouteKeyChange,
		RouteNewOrder, RouteOrder, RouteFinalize, RouteAuthz, RouteChallenge, RouteCert, RouteRevoke, routeUnknown}
}

// postRoute is a POST handler: it gets the verified request and the path
// arguments after the route's fixed part.
type postRoute struct {
	template string
	use      keyUse
	creates  bool // counted against the account's (or source's) creation limit
	fn       func(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem)
}

// route matches a path below a profile's directory: the route and its
// arguments, or nil.
func (s *Server) route(parts []string) (*postRoute, []string) {
	n := len(parts)
	switch {
	case n == 1 && parts[0] == "new-account":
		return &postRoute{RouteNewAccount, byJWK, true, s.newAccount}, nil
	case n == 1 && parts[0] == "new-order":
		return &postRoute{RouteNewOrder, byAccount, true, s.newOrder}, nil
	case n == 1 && parts[0] == "key-change":
		return &postRoute{RouteKeyChange, byAccount, true, s.keyChange}, nil
	case n == 1 && parts[0] == "revoke-cert":
		return &postRoute{RouteRevoke, byEither, false, s.revoke}, nil
	case n == 2 && parts[0] == "acct":
		return &postRoute{RouteAccount, byAccount, false, s.accountUpdate}, parts[1:]
	case n == 3 && parts[0] == "acct" && parts[2] == "orders":
		return &postRoute{RouteOrders, byAccount, false, s.orders}, parts[1:2]
	case n == 2 && parts[0] == "order":
		return &postRoute{RouteOrder, byAccount, false, s.order}, parts[1:]
	case n == 3 && parts[0] == "order" && parts[2] == "finalize":
		return &postRoute{RouteFinalize, byAccount, true, s.finalize}, parts[1:2]
	case n == 2 && parts[0] == "authz":
		return &postRoute{RouteAuthz, byAccount, false, s.authorization}, parts[1:]
	case n == 3 && parts[0] == "chall":
		return &postRoute{RouteChallenge, byAccount, true, s.challenge}, parts[1:]
	case n == 2 && parts[0] == "cert":
		return &postRoute{RouteCert, byAccount, false, s.certificate}, parts[1:]
	}
	return nil, nil
}

// exchange is one request and what its answer and log line need.
type exchange struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	profile issuer.ACMEProfile
	base    string // https://host/acme/<slug>
	url     string // this request's URL, as its JWS must name it
	reqID   string
	nonce   string // the fresh nonce the answer carries
	// nonceStored: the fresh nonce is in the store (stored while the
	// request's own nonce was consumed, or on its own).
	nonceStored bool
	identity    string
	outcome     string
	serial      string
	cause       error
}

// meta is the issuer's view of the caller.
func (x *exchange) meta() (issuer.Meta, *problem) {
	id, err := policy.ParseIdentity(x.identity)
	if err != nil {
		return issuer.Meta{}, internalProblem(err)
	}
	return issuer.Meta{RequestID: x.reqID, Identity: id}, nil
}

// reply is a successful answer.
type reply struct {
	status      int
	body        any    // JSON, unless raw is set
	raw         []byte // sent as contentType
	contentType string
	location    string
	links       []string // extra Link values, e.g. `<…>;rel="up"`
	retryAfter  bool     // work is in progress: poll again in a second (RFC 8555 §8.2)
}

// ServeHTTP serves everything under PathPrefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{s: s, w: w, r: r, reqID: newRequestID(), outcome: "ok"}
	w.Header().Set("X-Request-Id", x.reqID)
	route, status := routeUnknown, 0
	defer func() {
		if p := recover(); p != nil {
			status = x.fail(internalProblem(fmt.Errorf("panic: %v", p)))
		}
		attrs := []any{"reqId", x.reqID, "method", r.Method, "path", r.URL.Path, "status", status, "identity", x.identity,
			"profile", x.profile.Name, "outcome", x.outcome, "serial", x.serial,
			"duration", time.Since(start).Round(time.Microsecond).String()}
		level := slog.LevelInfo
		if x.cause != nil {
			attrs = append(attrs, "error", x.cause.Error())
			if status >= 500 {
				level = slog.LevelError
			}
		}
		s.cfg.Logger.Log(r.Context(), level, "acme request", attrs...)
		s.cfg.Metrics.ObserveHTTP(route, status, time.Since(start))
	}()
	route, status = s.serve(x)
}

// serve routes the request and answers it; it returns the route label
// and the status sent.
func (s *Server) serve(x *exchange) (string, int) {
	r := x.r
	if wait, ok := s.cfg.Runtime.sources.allow(sourceOf(r), s.cfg.Now()); !ok {
		return routeUnknown, x.fail(rateLimited("Too many requests from this address", wait))
	}
	release, ok := s.cfg.Runtime.admit()
	if !ok {
		return routeUnknown, x.fail(rateLimited("Too many ACME requests in progress", time.Second))
	}
	defer release()
	slug, tail, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, PathPrefix), "/")
	prof, ok := s.cfg.Issuer.ACMEProfile(slug)
	if !ok {
		return routeUnknown, x.fail(notFound("No ACME directory here"))
	}
	x.profile = prof
	scheme := "https"
	if r.TLS == nil {
		scheme = "http" // tests only: the API listener is always TLS
	}
	x.base = scheme + "://" + r.Host + PathPrefix + slug
	x.url = scheme + "://" + r.Host + r.URL.EscapedPath()
	var err error
	if x.nonce, err = newNonce(); err != nil {
		return routeUnknown, x.fail(internalProblem(err))
	}
	switch tail {
	case "directory":
		if r.Method != http.MethodGet {
			return RouteDirectory, x.fail(methodNotAllowed(http.MethodGet))
		}
		x.nonce = "" // the directory carries no nonce
		return RouteDirectory, x.send(&reply{status: http.StatusOK, body: s.directory(x)})
	case "new-nonce":
		if r.Method != http.MethodHead && r.Method != http.MethodGet {
			return RouteNewNonce, x.fail(methodNotAllowed("GET, HEAD"))
		}
		if !x.storeFreshNonce(r.Context()) {
			return RouteNewNonce, x.fail(storeProblem(x.cause, "Nonce"))
		}
		status := http.StatusNoContent // RFC 8555 §7.2: 204 for GET, 200 for HEAD
		if r.Method == http.MethodHead {
			status = http.StatusOK
		}
		x.w.Header().Set("Cache-Control", "no-store")
		return RouteNewNonce, x.send(&reply{status: status})
	}
	rt, args := s.route(strings.Split(tail, "/"))
	if rt == nil {
		return routeUnknown, x.fail(notFound("No such ACME resource"))
	}
	if r.Method != http.MethodPost {
		return rt.template, x.fail(methodNotAllowed(http.MethodPost))
	}
	return rt.template, x.post(rt, args)
}

func (x *exchange) post(rt *postRoute, args []string) int {
	ctx := x.r.Context()
	if mt, _, err := mime.ParseMediaType(x.r.Header.Get("Content-Type")); err != nil || mt != "application/jose+json" {
		p := malformed("Content-Type must be application/jose+json")
		p.Status = http.StatusUnsupportedMediaType
		return x.fail(p)
	}
	body, p := x.readBody()
	if p != nil {
		return x.fail(p)
	}
	req, p := x.verify(ctx, body, rt.use)
	if p != nil {
		return x.fail(p)
	}
	if rt.creates {
		key := "key:" + req.keyID
		if req.account != nil {
			key = "acct:" + req.account.ID
		}
		if wait, ok := x.s.cfg.Runtime.creations.allow(key, x.s.cfg.Now()); !ok {
			return x.fail(rateLimited("Too many new objects for this account; slow down", wait))
		}
	}
	rep, p := rt.fn(ctx, x, req, args)
	if p != nil {
		return x.fail(p)
	}
	return x.send(rep)
}

// readBody reads the body within the size limit and the read deadline.
func (x *exchange) readBody() ([]byte, *problem) {
	rc := http.NewResponseController(x.w)
	_ = rc.SetReadDeadline(time.Now().Add(x.s.cfg.BodyReadTimeout)) // unsupported only by test recorders
	body, err := io.ReadAll(http.MaxBytesReader(x.w, x.r.Body, x.s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return body, nil
	case errors.As(err, &tooBig):
		p := malformed(fmt.Sprintf("The request body is larger than %d bytes", x.s.cfg.MaxBodyBytes))
		p.Status = http.StatusRequestEntityTooLarge
		return nil, p
	case errors.Is(err, os.ErrDeadlineExceeded):
		x.w.Header().Set("Connection", "close")
		p := malformed(fmt.Sprintf("The request body did not arrive within %s", x.s.cfg.BodyReadTimeout))
		p.Status = http.StatusRequestTimeout
		return nil, p
	default:
		return nil, malformed("The request body could not be read")
	}
}

// headers sets what every answer carries: the fresh nonce (once it is
// stored) and the directory link (RFC 8555 §7.1).
func (x *exchange) headers() {
	h := x.w.Header()
	if x.nonce != "" && x.base != "" && x.storeFreshNonce(x.r.Context()) {
		h.Set("Replay-Nonce", x.nonce)
	}
	if x.base != "" {
		h.Add("Link", `<`+x.base+`/directory>;rel="index"`)
	}
}

func (x *exchange) fail(p *problem) int {
	x.outcome = p.typeName()
	if p.cause != nil {
		x.cause = p.cause
	}
	x.headers()
	return p.write(x.w)
}

func (x *exchange) send(rep *reply) int {
	x.headers()
	h := x.w.Header()
	for _, l := range rep.links {
		h.Add("Link", l)
	}
	if rep.location != "" {
		h.Set("Location", rep.location)
	}
	if rep.retryAfter {
		h.Set("Retry-After", "1")
	}
	switch {
	case rep.raw != nil:
		h.Set("Content-Type", rep.contentType)
		x.w.WriteHeader(rep.status)
		x.w.Write(rep.raw)
	case rep.body != nil:
		b, err := json.Marshal(rep.body)
		if err != nil {
			return x.fail(internalProblem(err))
		}
		h.Set("Content-Type", "application/json")
		x.w.WriteHeader(rep.status)
		x.w.Write(b)
	default:
		x.w.WriteHeader(rep.status)
	}
	return rep.status
}

func methodNotAllowed(allow string) *problem {
	p := malformed("Method not allowed; use " + allow)
	p.Status = http.StatusMethodNotAllowed
	return p
}

func rateLimited(detail string, wait time.Duration) *problem {
	p := newProblem(http.StatusTooManyRequests, probRateLimited, detail)
	p.retryAfter = wait
	return p
}

// sourceOf is the client's address, the key of the per-source limit.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// directory is the directory object (RFC 8555 §7.1.1).
func (s *Server) directory(x *exchange) map[string]any {
	return map[string]any{
		"newNonce":   x.base + "/new-nonce",
		"newAccount": x.base + "/new-account",
		"newOrder":   x.base + "/new-order",
		"revokeCert": x.base + "/revoke-cert",
		"keyChange":  x.base + "/key-change",
		"meta":       map[string]any{"externalAccountRequired": x.profile.ExternalAccountRequired},
	}
}

// newRequestID is "req-" and 14 alphanumerics, as the API's.
func newRequestID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 14)
	if _, err := rand.Read(b); err != nil {
		return "req-00000000000000"
	}
	for k := range b {
		b[k] = alphabet[int(b[k])%len(alphabet)]
	}
	return "req-" + string(b)
}

// decodePayload decodes a JSON object payload into v (unknown fields are
// ignored: RFC 8555 lets objects grow).
func decodePayload(payload []byte, v any) *problem {
	if err := json.Unmarshal(payload, v); err != nil {
		return malformed("The JWS payload is not the JSON object this resource takes")
	}
	return nil
}
