package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
)

// Infisical's v1 routes (DESIGN.md §15), which its CLI agent, Terraform
// provider and cert-manager issuer call; clients.md has their bodies.
const (
	LoginPath           = "/api/v1/auth/universal-auth/login"
	TokenRenewPath      = "/api/v1/auth/token/renew"
	TokenRevokePath     = "/api/v1/auth/token/revoke"
	StatusPath          = "/api/status"
	ProjectPath         = "/api/v1/projects/slug/{slug}"
	ProfileBySlugPath   = "/api/v1/cert-manager/certificate-profiles/slug/{slug}"
	ApplicationPath     = "/api/v1/cert-manager/applications/by-name/{name}"
	AppProfilesPath     = "/api/v1/cert-manager/applications/{applicationId}/profiles"
	V1CreatePath        = "/api/v1/cert-manager/certificates"
	V1RequestPath       = "/api/v1/cert-manager/certificates/certificate-requests/{requestId}"
	V1CertificatePath   = "/api/v1/cert-manager/certificates/{certificateId}"
	V1BodyPath          = "/api/v1/cert-manager/certificates/{certificateId}/certificate"
	V1BundlePath        = "/api/v1/cert-manager/certificates/{certificateId}/bundle"
	V1RenewPath         = "/api/v1/cert-manager/certificates/{certificateId}/renew"
	V1RevokePath        = "/api/v1/cert-manager/certificates/{certificateId}/revoke"
	LegacySignPath      = "/api/v1/pki/certificates/sign-certificate"
	maxCredentialLength = 512
)

// MachineAuth is what the API needs from machine identities (§15). The
// daemon adapts the auth package to it.
type MachineAuth interface {
	Login(ctx context.Context, clientID, clientSecret, source string) (AccessToken, error)
	Renew(ctx context.Context, accessToken string) (AccessToken, error)
	Revoke(ctx context.Context, accessToken string) error
	// Authenticate returns the machine name a Bearer credential stands for.
	Authenticate(ctx context.Context, bearer string) (string, error)
}

// AccessToken is a login's answer.
type AccessToken struct {
	Token             string
	ExpiresIn, MaxTTL int // seconds
}

// Errors a MachineAuth returns, which the API answers without detail.
var (
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrInvalidToken       = errors.New("invalid access token")
	ErrRenewBeyondMax     = errors.New("access token renewed past its maximum TTL")
)

// RateLimitedError says how long a refused login must wait.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string { return "too many logins" }

// Catalog is what the v1 look-ups answer from: pkid's one project and the
// applications of the config.
type Catalog struct {
	Project      Project
	Applications []Application
}

// Project is the one project pkid presents (`project:` in the config).
type Project struct{ ID, Slug, Name string }

// Application groups profiles for Infisical's v2 agent configs.
type Application struct {
	ID, Name   string
	ProfileIDs []string
}

// authenticateBearer turns an Authorization header into a machine identity.
func (h *handler) authenticateBearer(r *http.Request, header string) (policy.Identity, *httpError, string) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return policy.Identity{}, unauthenticated("The Authorization header must carry a Bearer token"), RejectInvalidToken
	}
	if h.cfg.Machines == nil {
		return policy.Identity{}, unauthenticated("Machine identities are not configured"), RejectInvalidToken
	}
	name, err := h.cfg.Machines.Authenticate(r.Context(), strings.TrimSpace(token))
	if err != nil {
		if !errors.Is(err, ErrInvalidToken) {
			// Whether the token is revoked could not be learnt: that is
			// pkid's failure, not the client's, and not a rejection.
			return policy.Identity{}, authUnavailable(err), ""
		}
		e := unauthenticated("Invalid or expired access token")
		e.cause = err // the reason (expired, revoked, other key…) is for the log
		return policy.Identity{}, e, RejectInvalidToken
	}
	id, err := policy.MachineIdentity(name)
	if err != nil {
		return policy.Identity{}, unauthenticated("Invalid or expired access token"), RejectInvalidToken
	}
	return id, nil, ""
}

// tokenResponse is Infisical's login answer.
type tokenResponse struct {
	AccessToken       string `json:"accessToken"`
	ExpiresIn         int    `json:"expiresIn"`
	AccessTokenMaxTTL int    `json:"accessTokenMaxTTL"`
	TokenType         string `json:"tokenType"`
}

// loginFields reads a login body, JSON or form-encoded (cert-manager's
// Infisical issuer v0.1 sends the form).
func (h *handler) loginFields(w http.ResponseWriter, r *http.Request, fields []string) (map[string]string, *httpError) {
	mt := r.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	out := map[string]string{}
	if strings.TrimSpace(strings.ToLower(mt)) == "application/x-www-form-urlencoded" {
		raw, e := h.readRaw(w, r)
		if e != nil {
			return nil, e
		}
		vals, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, malformed("The form body could not be parsed")
		}
		var issues []issue
		for k, vs := range vals {
			if !policy.IsOneOf(fields, k) {
				issues = append(issues, issue{Code: "unrecognized_keys", Keys: []string{truncate(k, 64)}, Path: []any{},
					Message: "Unrecognized key(s) in object: '" + truncate(k, 64) + "'"})
				continue
			}
			if len(vs) != 1 {
				return nil, malformed("Each form field must be given once")
			}
			out[k] = vs[0]
		}
		if len(issues) > 0 {
			return nil, validation(issues)
		}
		return out, nil
	}
	body, e := h.readBody(w, r, false)
	if e != nil {
		return nil, e
	}
	v, keys, e := parseObject(body)
	if e != nil {
		return nil, e
	}
	for _, f := range fields {
		if s, ok := v.str(v.obj, v.at(f), f, false); ok {
			out[f] = s
		}
	}
	v.unrecognized(nil, keys, fields)
	if len(v.issues) > 0 {
		return nil, validation(v.issues)
	}
	return out, nil
}

// required checks that fields are present, non-empty and bounded.
func required(vals map[string]string, fields ...string) *httpError {
	var issues []issue
	for _, f := range fields {
		s, ok := vals[f]
		switch {
		case !ok:
			issues = append(issues, typeIssue([]any{f}, "string", nil, false))
		case s == "":
			issues = append(issues, tooSmall([]any{f}, 1, ""))
		case len(s) > maxCredentialLength:
			issues = append(issues, tooBig([]any{f}, maxCredentialLength, "string"))
		}
	}
	if len(issues) > 0 {
		return validation(issues)
	}
	return nil
}

// authError maps a MachineAuth error to its envelope: the same 401 for an
// unknown client id and a wrong secret, never a detail.
func authError(err error) *httpError {
	var rl *RateLimitedError
	switch {
	case errors.As(err, &rl):
		e := newError(http.StatusTooManyRequests, "RateLimitExceeded", issuer.OutcomeRateLimited,
			fmt.Sprintf("Rate limit exceeded. Please try again in %d seconds", int64((rl.RetryAfter+time.Second-1)/time.Second)))
		e.retryAfter = rl.RetryAfter
		return e
	case errors.Is(err, ErrInvalidCredentials):
		return unauthenticated("Invalid credentials")
	case errors.Is(err, ErrRenewBeyondMax):
		return newError(http.StatusBadRequest, "BadRequest", issuer.OutcomeInvalid, "The access token cannot be renewed past its maximum TTL; log in again")
	case errors.Is(err, ErrInvalidToken):
		e := unauthenticated("Invalid or expired access token")
		e.cause = err
		return e
	}
	return authUnavailable(err)
}

// authUnavailable is the answer when a token's revocation could not be
// checked or recorded (the store did not answer): 503, try again.
func authUnavailable(cause error) *httpError {
	e := newError(http.StatusServiceUnavailable, "ServiceUnavailable", issuer.OutcomeUnavailable,
		"The token store is unavailable; try again")
	e.retryAfter, e.cause = 5*time.Second, cause
	return e
}

// The login routes take no identity: they make one (DESIGN.md §15).
func (h *handler) login(w http.ResponseWriter, r *http.Request, l *logLine) {
	outcome := "error"
	defer func() { h.cfg.Metrics.ObserveLogin(outcome) }()
	fail := func(e *httpError) {
		l.outcome, l.cause = e.outcome, e.cause
		l.status = e.write(w, l.reqID)
	}
	if h.cfg.Machines == nil {
		outcome = "invalid"
		fail(unauthenticated("Machine identities are not configured"))
		return
	}
	vals, e := h.loginFields(w, r, []string{"clientId", "clientSecret", "organizationSlug"})
	if e == nil {
		e = required(vals, "clientId", "clientSecret")
	}
	if e != nil {
		outcome = "invalid"
		fail(e)
		return
	}
	// Only a UUID-shaped clientId is logged: a client that swapped its
	// fields sends its secret here.
	l.identity = "client:(not a UUID)"
	if id := vals["clientId"]; uuidPattern.MatchString(id) {
		l.identity = "client:" + strings.ToLower(id)
	}
	tok, err := h.cfg.Machines.Login(r.Context(), vals["clientId"], vals["clientSecret"], sourceOf(r))
	if err != nil {
		e := authError(err)
		outcome = map[int]string{http.StatusUnauthorized: "invalid", http.StatusTooManyRequests: "rate_limited"}[e.status]
		if outcome == "" {
			outcome = "error"
		}
		fail(e)
		return
	}
	outcome, l.outcome, l.status = "success", "logged_in", http.StatusOK
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: tok.Token, ExpiresIn: tok.ExpiresIn, AccessTokenMaxTTL: tok.MaxTTL, TokenType: "Bearer"})
}

func (h *handler) tokenRenew(w http.ResponseWriter, r *http.Request, l *logLine) {
	h.tokenOp(w, r, l, func(ctx context.Context, token string) (any, error) {
		tok, err := h.cfg.Machines.Renew(ctx, token)
		if err != nil {
			return nil, err
		}
		return tokenResponse{AccessToken: tok.Token, ExpiresIn: tok.ExpiresIn, AccessTokenMaxTTL: tok.MaxTTL, TokenType: "Bearer"}, nil
	})
}

func (h *handler) tokenRevoke(w http.ResponseWriter, r *http.Request, l *logLine) {
	h.tokenOp(w, r, l, func(ctx context.Context, token string) (any, error) {
		if err := h.cfg.Machines.Revoke(ctx, token); err != nil {
			return nil, err
		}
		return map[string]string{"message": "Successfully revoked access token"}, nil
	})
}

func (h *handler) tokenOp(w http.ResponseWriter, r *http.Request, l *logLine, op func(context.Context, string) (any, error)) {
	fail := func(e *httpError) {
		l.outcome, l.cause = e.outcome, e.cause
		l.status = e.write(w, l.reqID)
	}
	if h.cfg.Machines == nil {
		fail(unauthenticated("Machine identities are not configured"))
		return
	}
	vals, e := h.loginFields(w, r, []string{"accessToken"})
	if e == nil {
		e = required(vals, "accessToken")
	}
	if e != nil {
		fail(e)
		return
	}
	res, err := op(r.Context(), vals["accessToken"])
	if err != nil {
		fail(authError(err))
		return
	}
	l.outcome, l.status = "served", http.StatusOK
	writeJSON(w, http.StatusOK, res)
}

// sourceOf is the client's address, for the per-source login limit.
func sourceOf(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// status answers GET /api/status (cert-manager's issuer uses it as a
// health check).
func (h *handler) status(w http.ResponseWriter, r *http.Request, l *logLine) {
	l.status = http.StatusOK
	writeJSON(w, http.StatusOK, map[string]any{"date": h.cfg.Now().UTC().Format(time.RFC3339), "message": "Ok"})
}

func (h *handler) project(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	p := h.cfg.Catalog.Project
	if p.Slug == "" || mux.Vars(r)["slug"] != p.Slug {
		return newError(http.StatusNotFound, "NotFound", issuer.OutcomeNotFound, "Project not found")
	}
	l.outcome, l.status = outcomeServed, http.StatusOK
	writeJSON(w, http.StatusOK, map[string]string{"id": p.ID, "slug": p.Slug, "name": p.Name})
	return nil
}

// profileView is a certificate profile as the v1 look-ups answer it.
type profileView struct {
	ID        string `json:"id"`
	Slug      string `json:"slug"`
	ProjectID string `json:"projectId"`
	CAID      string `json:"caId"`
}

func (h *handler) profileBySlug(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	if pid := r.URL.Query().Get("projectId"); pid != "" && pid != h.cfg.Catalog.Project.ID {
		return newError(http.StatusNotFound, "NotFound", issuer.OutcomeNotFound, "Certificate profile not found")
	}
	info, err := h.cfg.Issuer.ProfileFor(r.Context(), c.meta, mux.Vars(r)["slug"])
	if err != nil {
		return fromIssuer(err)
	}
	l.profile, l.outcome, l.status = info.Name, outcomeServed, http.StatusOK
	writeJSON(w, http.StatusOK, map[string]profileView{"certificateProfile": {ID: info.ID, Slug: info.Slug,
		ProjectID: h.cfg.Catalog.Project.ID, CAID: info.CAName}})
	return nil
}

func (h *handler) applicationByName(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	name := mux.Vars(r)["name"]
	for _, a := range h.cfg.Catalog.Applications {
		if a.Name == name {
			l.outcome, l.status = outcomeServed, http.StatusOK
			writeJSON(w, http.StatusOK, map[string]any{"application": map[string]string{"id": a.ID, "name": a.Name,
				"projectId": h.cfg.Catalog.Project.ID}})
			return nil
		}
	}
	return newError(http.StatusNotFound, "NotFound", issuer.OutcomeNotFound, "Application not found")
}

// applicationProfile is one profile of an application.
type applicationProfile struct {
	ApplicationID string `json:"applicationId"`
	ProfileID     string `json:"profileId"`
	ProfileSlug   string `json:"profileSlug"`
}

func (h *handler) applicationProfiles(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	id := strings.ToLower(mux.Vars(r)["applicationId"])
	for _, a := range h.cfg.Catalog.Applications {
		if a.ID != id {
			continue
		}
		out := []applicationProfile{}
		for _, pid := range a.ProfileIDs {
			// Only the profiles this identity may use or manage are listed.
			if info, err := h.cfg.Issuer.ProfileFor(r.Context(), c.meta, pid); err == nil {
				out = append(out, applicationProfile{ApplicationID: a.ID, ProfileID: info.ID, ProfileSlug: info.Slug})
			}
		}
		l.outcome, l.status = outcomeServed, http.StatusOK
		writeJSON(w, http.StatusOK, map[string]any{"profiles": out})
		return nil
	}
	return newError(http.StatusNotFound, "NotFound", issuer.OutcomeNotFound, "Application not found")
}
