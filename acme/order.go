package acme

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pkid/pkid/acme/validate"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// maxIdentifiers bounds an order.
const maxIdentifiers = 100

type orderJSON struct {
	Status         string                  `json:"status"`
	Expires        string                  `json:"expires"`
	Identifiers    []record.ACMEIdentifier `json:"identifiers"`
	NotBefore      string                  `json:"notBefore,omitempty"`
	NotAfter       string                  `json:"notAfter,omitempty"`
	Error          json.RawMessage         `json:"error,omitempty"`
	Authorizations []string                `json:"authorizations"`
	Finalize       string                  `json:"finalize"`
	Certificate    string                  `json:"certificate,omitempty"`
}

type authzJSON struct {
	Identifier record.ACMEIdentifier `json:"identifier"`
	Status     string                `json:"status"`
	Expires    string                `json:"expires"`
	Challenges []challengeJSON       `json:"challenges"`
	Wildcard   bool                  `json:"wildcard,omitempty"`
}

type challengeJSON struct {
	Type      string          `json:"type"`
	URL       string          `json:"url"`
	Status    string          `json:"status"`
	Token     string          `json:"token"`
	Validated string          `json:"validated,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
}

// optionalTime parses an RFC 3339 time that may be absent; bad when it
// is there and does not parse.
func optionalTime(s string) (t time.Time, bad bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t.UTC(), err != nil
}

func timeJSON(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// problemJSON is a problem document as an order or challenge embeds it.
func problemJSON(p *problem) []byte {
	b, _ := json.Marshal(p) // strings and ints: cannot fail
	return b
}

// lostProblem is the error of work that was started and never finished.
var lostProblem = problemJSON(newProblem(http.StatusInternalServerError, probServerInternal,
	"The validation or finalization did not finish (the server doing it stopped); start a new order"))

func (x *exchange) orderURL(id string) string { return x.base + "/order/" + id }
func (x *exchange) authzURL(id string) string { return x.base + "/authz/" + id }

func token() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// parseIdentifiers canonicalizes an order's identifiers (DESIGN §3): the
// SANs the policy judges and the certificate will carry.
func parseIdentifiers(in []record.ACMEIdentifier) ([]policy.SAN, *problem) {
	if len(in) == 0 || len(in) > maxIdentifiers {
		return nil, malformed(fmt.Sprintf("An order names 1 to %d identifiers", maxIdentifiers))
	}
	sans := make([]policy.SAN, 0, len(in))
	for _, id := range in {
		typ := map[string]string{"dns": policy.SANDNS, "ip": policy.SANIP}[id.Type]
		if typ == "" {
			return nil, newProblem(http.StatusBadRequest, probUnsupportedIdentifier, "Identifier type "+quote(id.Type)+" is not supported (dns and ip are)")
		}
		s, err := policy.ParseSAN(typ, id.Value)
		if err != nil {
			return nil, malformed(fmt.Sprintf("Identifier %s %s: %v", id.Type, quote(id.Value), err))
		}
		sans = append(sans, s)
	}
	return policy.UniqueSANs(sans), nil
}

func identifierOf(s policy.SAN) record.ACMEIdentifier {
	if s.Type() == policy.SANIP {
		return record.ACMEIdentifier{Type: "ip", Value: s.Value()}
	}
	return record.ACMEIdentifier{Type: "dns", Value: s.Value()}
}

// challengesFor are the challenges the profile offers for one identifier:
// a wildcard only dns-01 (RFC 8555 §7.1.3), an IP address no dns-01 (RFC
// 8738 §7).
func challengesFor(s policy.SAN, offered []string) []string {
	var out []string
	for _, c := range offered {
		switch {
		case s.IsWildcard() && c != issuer.ChallengeDNS01:
		case s.Type() == policy.SANIP && c == issuer.ChallengeDNS01:
		default:
			out = append(out, c)
		}
	}
	return out
}

// newOrder serves new-order (RFC 8555 §7.4): identifiers canonical and
// allowed by the profile's policy, one authorization each.
func (s *Server) newOrder(ctx context.Context, x *exchange, req *request, _ []string) (*reply, *problem) {
	var in struct {
		Identifiers []record.ACMEIdentifier `json:"identifiers"`
		NotBefore   string                  `json:"notBefore"`
		NotAfter    string                  `json:"notAfter"`
	}
	if p := decodePayload(req.payload, &in); p != nil {
		return nil, p
	}
	reject := func(p *problem) (*reply, *problem) {
		s.cfg.Metrics.ObserveACMEOrder(x.profile.Name, OrderRejected)
		return nil, p
	}
	sans, p := parseIdentifiers(in.Identifiers)
	if p != nil {
		return reject(p)
	}
	now := s.now()
	o := &record.ACMEOrder{ID: uuid.NewString(), AccountID: req.account.ID, ProfileID: x.profile.ID, Status: record.ACMEPending,
		Expires: now.Add(orderLifetime), CreatedAt: now, UpdatedAt: now}
	var bad bool
	if o.NotBefore, bad = optionalTime(in.NotBefore); bad {
		return reject(malformed("notBefore is not an RFC 3339 time"))
	}
	if o.NotAfter, bad = optionalTime(in.NotAfter); bad {
		return reject(malformed("notAfter is not an RFC 3339 time"))
	}
	if !o.NotAfter.IsZero() && (!o.NotAfter.After(now) || !o.NotBefore.IsZero() && !o.NotAfter.After(o.NotBefore)) {
		return reject(malformed("notAfter must be in the future and after notBefore"))
	}
	meta, p := x.meta()
	if p != nil {
		return nil, p
	}
	if err := s.cfg.Issuer.CheckACMEIdentifiers(ctx, meta, x.profile.ID, sans); err != nil {
		return reject(fromIssuer(err))
	}
	var authzs []*record.ACMEAuthorization
	for _, san := range sans {
		offer := challengesFor(san, x.profile.Challenges)
		if len(offer) == 0 {
			return reject(newProblem(http.StatusBadRequest, probRejectedIdentifier,
				"This directory offers no challenge for "+san.Value()+" (a wildcard needs dns-01; an IP address http-01 or tls-alpn-01)"))
		}
		id := identifierOf(san)
		az := &record.ACMEAuthorization{ID: uuid.NewString(), OrderID: o.ID, AccountID: o.AccountID, ProfileID: o.ProfileID,
			Identifier: id, Status: record.ACMEPending, Expires: o.Expires, CreatedAt: now, UpdatedAt: now}
		if san.IsWildcard() {
			az.Identifier.Value, az.Wildcard = strings.TrimPrefix(id.Value, "*."), true
		}
		for _, typ := range offer {
			tok, err := token()
			if err != nil {
				return nil, internalProblem(err)
			}
			az.Challenges = append(az.Challenges, record.ACMEChallenge{Type: typ, Token: tok, Status: record.ACMEPending, UpdatedAt: now})
		}
		o.Identifiers = append(o.Identifiers, id)
		o.AuthorizationIDs = append(o.AuthorizationIDs, az.ID)
		authzs = append(authzs, az)
	}
	if err := s.cfg.Store.CreateACMEOrder(ctx, o, authzs); err != nil {
		return nil, storeProblem(err, "Order")
	}
	s.cfg.Metrics.ObserveACMEOrder(x.profile.Name, OrderCreated)
	statuses := make([]string, len(authzs))
	for k := range authzs {
		statuses[k] = record.ACMEPending
	}
	return &reply{status: http.StatusCreated, location: x.orderURL(o.ID), body: x.orderBody(o, statuses)}, nil
}

func (x *exchange) orderBody(o *record.ACMEOrder, authzStatuses []string) orderJSON {
	status := orderStatus(o, authzStatuses, x.s.now())
	out := orderJSON{Status: status, Expires: timeJSON(o.Expires), Identifiers: o.Identifiers,
		NotBefore: timeJSON(o.NotBefore), NotAfter: timeJSON(o.NotAfter), Error: o.Problem,
		Finalize: x.orderURL(o.ID) + "/finalize", Authorizations: []string{}}
	for _, id := range o.AuthorizationIDs {
		out.Authorizations = append(out.Authorizations, x.authzURL(id))
	}
	if status == record.ACMEInvalid && out.Error == nil {
		out.Error = lostProblem
	}
	if status == record.ACMEValid && o.CertificateID != "" {
		out.Certificate = x.base + "/cert/" + o.CertificateID
	}
	return out
}

// loadOrder finds the signer's order with id and its authorizations'
// statuses as of now.
func (s *Server) loadOrder(ctx context.Context, x *exchange, req *request, id string) (*record.ACMEOrder, []string, *problem) {
	o, err := s.cfg.Store.ACMEOrder(ctx, id)
	if err != nil {
		return nil, nil, storeProblem(err, "Order")
	}
	if o.ProfileID != x.profile.ID {
		return nil, nil, notFound("Order not found")
	}
	if o.AccountID != req.account.ID {
		return nil, nil, unauthorized("The order belongs to another account")
	}
	now := s.now()
	statuses := make([]string, 0, len(o.AuthorizationIDs))
	for _, aid := range o.AuthorizationIDs {
		az, err := s.cfg.Store.ACMEAuthorization(ctx, aid)
		if err != nil {
			return nil, nil, storeProblem(err, "Authorization")
		}
		statuses = append(statuses, authzStatus(az, now))
	}
	return o, statuses, nil
}

// order serves POST-as-GET of an order.
func (s *Server) order(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem) {
	o, statuses, p := s.loadOrder(ctx, x, req, args[0])
	if p != nil {
		return nil, p
	}
	body := x.orderBody(o, statuses)
	return &reply{status: http.StatusOK, body: body, retryAfter: body.Status == record.ACMEProcessing}, nil
}

// loadAuthz finds the signer's authorization with id.
func (s *Server) loadAuthz(ctx context.Context, x *exchange, req *request, id string) (*record.ACMEAuthorization, *problem) {
	az, err := s.cfg.Store.ACMEAuthorization(ctx, id)
	if err != nil {
		return nil, storeProblem(err, "Authorization")
	}
	if az.ProfileID != x.profile.ID {
		return nil, notFound("Authorization not found")
	}
	if az.AccountID != req.account.ID {
		return nil, unauthorized("The authorization belongs to another account")
	}
	return az, nil
}

func (x *exchange) challengeBody(az *record.ACMEAuthorization, c record.ACMEChallenge) challengeJSON {
	status := challengeStatus(c, x.s.now())
	out := challengeJSON{Type: c.Type, URL: x.base + "/chall/" + az.ID + "/" + c.Type, Status: status, Token: c.Token,
		Validated: timeJSON(c.Validated), Error: c.Problem}
	if status == record.ACMEInvalid && out.Error == nil {
		out.Error = lostProblem
	}
	return out
}

// validating reports a challenge of az being checked.
func validating(az *record.ACMEAuthorization, now time.Time) bool {
	for _, c := range az.Challenges {
		if challengeStatus(c, now) == record.ACMEProcessing {
			return true
		}
	}
	return false
}

func (x *exchange) authzBody(az *record.ACMEAuthorization) authzJSON {
	out := authzJSON{Identifier: az.Identifier, Status: authzStatus(az, x.s.now()), Expires: timeJSON(az.Expires), Wildcard: az.Wildcard}
	for _, c := range az.Challenges {
		out.Challenges = append(out.Challenges, x.challengeBody(az, c))
	}
	return out
}

// authorization serves an authorization: read, or deactivate (RFC 8555
// §7.5.2).
func (s *Server) authorization(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem) {
	az, p := s.loadAuthz(ctx, x, req, args[0])
	if p != nil {
		return nil, p
	}
	if !req.postAsGet() {
		var in struct {
			Status string `json:"status"`
		}
		if p := decodePayload(req.payload, &in); p != nil {
			return nil, p
		}
		if in.Status != record.ACMEDeactivated {
			return nil, malformed("An authorization's status can only be set to deactivated")
		}
		if now := authzStatus(az, s.now()); now != record.ACMEPending && now != record.ACMEValid {
			return nil, malformed("An authorization that is " + now + " cannot be deactivated")
		}
		if err := s.cfg.Store.UpdateACMEAuthorization(ctx, az.ID, az.Status, record.ACMEDeactivated, s.now()); err != nil {
			if errors.Is(err, record.ErrACMEStateChanged) {
				return nil, malformed("The authorization changed meanwhile; read it again")
			}
			return nil, storeProblem(err, "Authorization")
		}
		az.Status = record.ACMEDeactivated
	}
	body := x.authzBody(az)
	return &reply{status: http.StatusOK, body: body, retryAfter: body.Status == record.ACMEPending && validating(az, s.now())}, nil
}

// challenge serves a challenge: read it (POST-as-GET), or, with a JSON
// object, ask pkid to validate it (RFC 8555 §7.5.1). Validation runs in
// the background; the client polls the authorization.
func (s *Server) challenge(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem) {
	az, p := s.loadAuthz(ctx, x, req, args[0])
	if p != nil {
		return nil, p
	}
	k := -1
	for i, c := range az.Challenges {
		if c.Type == args[1] {
			k = i
		}
	}
	if k < 0 {
		return nil, notFound("Challenge not found")
	}
	rep := func() (*reply, *problem) {
		body := x.challengeBody(az, az.Challenges[k])
		return &reply{status: http.StatusOK, body: body, retryAfter: body.Status == record.ACMEProcessing,
			links: []string{`<` + x.authzURL(az.ID) + `>;rel="up"`}}, nil
	}
	if req.postAsGet() {
		return rep()
	}
	var in map[string]json.RawMessage
	if p := decodePayload(req.payload, &in); p != nil {
		return nil, p
	}
	now := s.now()
	c := az.Challenges[k]
	if challengeStatus(c, now) != record.ACMEPending || authzStatus(az, now) != record.ACMEPending {
		return rep() // already answered, or nothing left to do: the state says which
	}
	release, ok := s.cfg.Runtime.reserve()
	if !ok {
		return nil, rateLimited("Too many validations in progress; retry shortly", time.Second)
	}
	started := c
	started.Status, started.UpdatedAt = record.ACMEProcessing, now
	if err := s.cfg.Store.UpdateACMEChallenge(ctx, az.ID, c.Type, record.ACMEPending, started, ""); err != nil {
		release()
		if !errors.Is(err, record.ErrACMEStateChanged) {
			return nil, storeProblem(err, "Challenge")
		}
		// Another request started it: answer what the store says now.
		if az, err = s.cfg.Store.ACMEAuthorization(ctx, az.ID); err != nil {
			return nil, storeProblem(err, "Authorization")
		}
		return rep()
	}
	az.Challenges[k] = started
	job := validation{s: s, profile: x.profile.Name, authz: *az, challenge: started,
		check: validate.Challenge{Type: c.Type, Identifier: az.Identifier.Type, Value: az.Identifier.Value, Token: c.Token,
			KeyAuthorization: c.Token + "." + req.account.KeyID}}
	s.cfg.Runtime.run(release, job.run)
	return rep()
}

// validation is one challenge being checked in the background.
type validation struct {
	s         *Server
	profile   string
	authz     record.ACMEAuthorization
	challenge record.ACMEChallenge
	check     validate.Challenge
}

func (v validation) run(ctx context.Context) {
	s := v.s
	err := s.cfg.Validator.Validate(ctx, v.check)
	if ctx.Err() != nil {
		return // shutting down: the challenge stays processing and reads as lost once stale
	}
	c := v.challenge
	c.UpdatedAt = s.now()
	log := s.cfg.Logger.With("authorization", v.authz.ID, "challenge", c.Type, "identifier", v.authz.Identifier.Value, "profile", v.profile)
	if err == nil {
		c.Status, c.Validated = record.ACMEValid, c.UpdatedAt
		if err := s.cfg.Store.UpdateACMEChallenge(ctx, v.authz.ID, c.Type, record.ACMEProcessing, c, record.ACMEValid); err != nil {
			log.Error("recording a passed ACME validation", "error", err)
			return
		}
		s.cfg.Metrics.ObserveACMEValidation(c.Type, ValidationValid)
		log.Info("ACME validation passed")
		return
	}
	var f *validate.Failure
	p := newProblem(http.StatusBadRequest, probServerInternal, "The validation could not be run")
	if errors.As(err, &f) {
		p = newProblem(http.StatusBadRequest, f.Type, f.Detail)
	}
	c.Status, c.Problem = record.ACMEInvalid, problemJSON(p)
	if err := s.cfg.Store.UpdateACMEChallenge(ctx, v.authz.ID, c.Type, record.ACMEProcessing, c, record.ACMEInvalid); err != nil {
		log.Error("recording a failed ACME validation", "error", err)
		return
	}
	s.cfg.Metrics.ObserveACMEValidation(c.Type, ValidationInvalid)
	log.Info("ACME validation failed", "problem", p.Type, "detail", p.Detail)
	// The order cannot become ready any more: record why.
	op := newProblem(http.StatusForbidden, probUnauthorized, fmt.Sprintf("The authorization of %s failed: %s", v.authz.Identifier.Value, p.Detail))
	if err := s.cfg.Store.UpdateACMEOrder(ctx, v.authz.OrderID, record.ACMEPending, record.ACMEInvalid, "", problemJSON(op), c.UpdatedAt); err == nil {
		s.cfg.Metrics.ObserveACMEOrder(v.profile, OrderInvalid)
	} else if !errors.Is(err, record.ErrACMEStateChanged) {
		log.Error("recording a failed ACME order", "order", v.authz.OrderID, "error", err)
	}
}

// finalize serves an order's finalize (RFC 8555 §7.4): the CSR of a
// ready order goes through the issuance pipeline.
func (s *Server) finalize(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem) {
	o, statuses, p := s.loadOrder(ctx, x, req, args[0])
	if p != nil {
		return nil, p
	}
	if st := orderStatus(o, statuses, s.now()); st != record.ACMEReady {
		return nil, newProblem(http.StatusForbidden, probOrderNotReady, "The order is "+st+", not ready")
	}
	var in struct {
		CSR string `json:"csr"`
	}
	if p := decodePayload(req.payload, &in); p != nil {
		return nil, p
	}
	der, err := base64.RawURLEncoding.DecodeString(in.CSR)
	if err != nil || len(der) == 0 {
		return nil, newProblem(http.StatusBadRequest, probBadCSR, "csr is not base64url-encoded DER")
	}
	ids := make([]record.ACMEIdentifier, len(o.Identifiers))
	copy(ids, o.Identifiers)
	sans, p := parseIdentifiers(ids)
	if p != nil {
		return nil, internalProblem(fmt.Errorf("stored identifiers of order %s: %s", o.ID, p.Detail))
	}
	meta, p := x.meta()
	if p != nil {
		return nil, p
	}
	if err := s.cfg.Store.UpdateACMEOrder(ctx, o.ID, record.ACMEPending, record.ACMEProcessing, "", nil, s.now()); err != nil {
		if errors.Is(err, record.ErrACMEStateChanged) {
			return nil, newProblem(http.StatusForbidden, probOrderNotReady, "The order is being finalized already")
		}
		return nil, storeProblem(err, "Order")
	}
	sreq := issuer.ACMERequest{ProfileID: x.profile.ID, CSR: der, Identifiers: sans}
	if !o.NotBefore.IsZero() {
		sreq.NotBefore = &o.NotBefore
	}
	if !o.NotAfter.IsZero() {
		sreq.NotAfter = &o.NotAfter
	}
	res, err := s.cfg.Issuer.SignACME(ctx, meta, sreq)
	// The order's state is written whatever became of the client.
	wctx := context.WithoutCancel(ctx)
	if err != nil {
		p := fromIssuer(err)
		to, problem := record.ACMEInvalid, problemJSON(p)
		if p.Type == errorNS+probBadCSR || p.Status == http.StatusTooManyRequests || p.Status == http.StatusServiceUnavailable {
			to, problem = record.ACMEPending, nil // the client may send another CSR, or retry later
		}
		if uerr := s.cfg.Store.UpdateACMEOrder(wctx, o.ID, record.ACMEProcessing, to, "", problem, s.now()); uerr != nil {
			x.cause = uerr
		} else if to == record.ACMEInvalid {
			s.cfg.Metrics.ObserveACMEOrder(x.profile.Name, OrderInvalid)
		}
		return nil, p
	}
	x.serial = res.SerialNumber
	if err := s.cfg.Store.UpdateACMEOrder(wctx, o.ID, record.ACMEProcessing, record.ACMEValid, res.CertificateID, nil, s.now()); err != nil {
		return nil, storeProblem(err, "Order")
	}
	s.cfg.Metrics.ObserveACMEOrder(x.profile.Name, OrderValid)
	o.Status, o.CertificateID = record.ACMEValid, res.CertificateID
	return &reply{status: http.StatusOK, location: x.orderURL(o.ID), body: x.orderBody(o, statuses)}, nil
}

// certificate serves the certificate of a valid order as a PEM chain
// (RFC 8555 §7.4.2), to the account that ordered it.
func (s *Server) certificate(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem) {
	if !req.postAsGet() {
		return nil, malformed("Fetch a certificate with POST-as-GET (an empty payload)")
	}
	meta, p := x.meta()
	if p != nil {
		return nil, p
	}
	c, err := s.cfg.Issuer.Lookup(ctx, meta, args[0], true)
	if err != nil {
		return nil, fromIssuer(err)
	}
	if c.Record.ProfileID != x.profile.ID {
		return nil, notFound("Certificate not found")
	}
	chain, err := c.ACMEChain()
	if err != nil {
		return nil, internalProblem(err)
	}
	x.serial = c.Record.Serial
	return &reply{status: http.StatusOK, raw: []byte(chain), contentType: "application/pem-certificate-chain"}, nil
}
