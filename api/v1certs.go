package api

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// v1CreateFields are POST /api/v1/cert-manager/certificates' fields.
var v1CreateFields = []string{"profileId", "applicationId", "csr", "attributes", "removeRootsFromChain", "metadata"}

// v1AttributeFields are its attributes'. The subject fields beyond the
// common name are accepted only empty: pkid's subject is CN=… or nothing
// (DESIGN.md §1), and a field silently dropped would be a surprise.
var v1AttributeFields = []string{"commonName", "keyUsages", "extendedKeyUsages", "altNames", "ttl", "notBefore", "notAfter",
	"keyAlgorithm", "signatureAlgorithm", "removeRootsFromChain",
	"organization", "ou", "organizationalUnit", "country", "province", "state", "locality", "domainComponents", "basicConstraints"}

var v1SubjectFields = []string{"organization", "ou", "organizationalUnit", "country", "province", "state", "locality", "domainComponents", "basicConstraints"}

// v1Create is a decoded create request: one of issue or sign.
type v1Create struct {
	issue *issuer.IssueRequest
	sign  *issuer.SignRequest
}

// decodeV1Create reads POST /api/v1/cert-manager/certificates: with a csr
// it signs it (§11), else it issues (§1). Absent algorithms and ttl take
// the profile's defaults.
func (h *handler) decodeV1Create(body []byte, c *call) (v1Create, *httpError) {
	v, keys, e := parseObject(body)
	if e != nil {
		return v1Create{}, e
	}
	profileID := v.uuid("profileId", true)
	applicationID := ""
	if raw, present := v.obj["applicationId"]; present && raw != nil {
		applicationID = v.uuid("applicationId", false)
	}
	csr := ""
	if s, ok := v.str(v.obj, v.at("csr"), "csr", false); ok {
		switch s = strings.TrimSpace(s); {
		case len(s) > maxCSRChars:
			v.add(tooBig(v.at("csr"), maxCSRChars, "string"))
		default:
			csr = s
		}
	}
	removeRoots := v.boolean("removeRootsFromChain")
	var a *validator
	if raw, present := v.obj["attributes"]; present && raw != nil {
		obj, ok := raw.(map[string]any)
		if !ok {
			v.add(typeIssue(v.at("attributes"), "object", raw, true))
		} else {
			a = v.nested(obj, "attributes")
		}
	}
	if a == nil {
		a = v.nested(map[string]any{}, "attributes")
	}
	a.unrecognized(a.at(), sortedKeys(a.obj), v1AttributeFields)
	for _, f := range v1SubjectFields {
		if raw, present := a.obj[f]; present && !emptyValue(raw) {
			a.add(custom(a.at(f), "pkid's certificates carry only a common name in their subject; "+f+" is not supported"))
		}
	}
	// removeRootsFromChain inside attributes too: the CLI agent sends it there.
	if a.boolean("removeRootsFromChain") {
		removeRoots = true
	}
	info, known := h.cfg.Issuer.ProfileInfo(profileID)
	var ttl time.Duration
	ttlValid := false
	if _, present := a.obj["ttl"]; present {
		ttl, ttlValid = a.ttl()
	} else if known {
		ttl, ttlValid = info.MaxValidity, true
	}
	notBefore, notAfter := a.window(h.cfg.Now(), ttl, ttlValid)
	sigAlg := ""
	if _, present := a.obj["signatureAlgorithm"]; present {
		sigAlg, _ = a.enum(a.obj, a.at("signatureAlgorithm"), "signatureAlgorithm", policy.SignatureAlgorithmNames, true)
	} else if known {
		sigAlg = info.SignatureAlgorithm
	}
	var out v1Create
	if csr != "" {
		a.refuseBesideCSR("commonName", "keyUsages", "extendedKeyUsages", "altNames", "keyAlgorithm")
		out.sign = &issuer.SignRequest{ProfileID: profileID, CSR: csr, TTL: ttl, NotBefore: notBefore, NotAfter: notAfter,
			SignatureAlgorithm: sigAlg, RemoveRootsFromChain: removeRoots, ApplicationID: applicationID}
	} else {
		req := issuer.IssueRequest{ProfileID: profileID, TTL: ttl, NotBefore: notBefore, NotAfter: notAfter,
			SignatureAlgorithm: sigAlg, RemoveRootsFromChain: removeRoots, ApplicationID: applicationID}
		if cn, ok := a.str(a.obj, a.at("commonName"), "commonName", false); ok && cn != "" {
			req.CommonName = a.commonName(cn)
		}
		req.KeyUsages = a.enumArray("keyUsages", policy.KeyUsageNames)
		req.ExtKeyUsages = a.enumArray("extendedKeyUsages", policy.ExtKeyUsageNames)
		req.AltNames = a.altNames()
		if _, present := a.obj["keyAlgorithm"]; present {
			req.KeyAlgorithm, _ = a.enum(a.obj, a.at("keyAlgorithm"), "keyAlgorithm", policy.KeyAlgorithmNames, true)
		} else if known {
			req.KeyAlgorithm = info.KeyAlgorithm
		}
		out.issue = &req
	}
	v.issues = append(v.issues, a.issues...)
	v.unrecognized(nil, keys, v1CreateFields)
	if len(v.issues) > 0 {
		return v1Create{}, validation(v.issues)
	}
	return out, nil
}

func sortedKeys(obj map[string]any) []string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// refuseBesideCSR refuses the fields that a CSR supplies when the body
// also gives them a value (an empty one is no value): the names, usages
// and key of a signed certificate come from the CSR alone.
func (v *validator) refuseBesideCSR(fields ...string) {
	for _, f := range fields {
		if raw, present := v.obj[f]; present && !emptyValue(raw) {
			v.add(custom(v.at(f), "With a csr, "+f+" comes from the CSR"))
		}
	}
}

func emptyValue(raw any) bool {
	switch x := raw.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case bool:
		return !x
	case map[string]any:
		for _, v := range x {
			if !emptyValue(v) {
				return false
			}
		}
		return true
	}
	return false
}

// v1Issued is the create answer (clients.md: the certificate object is
// never null: pkid never issues asynchronously).
type v1Issued struct {
	Certificate          v1Bundle `json:"certificate"`
	CertificateRequestID string   `json:"certificateRequestId"`
	Status               string   `json:"status"`
}

type v1Bundle struct {
	Certificate          string `json:"certificate"`
	IssuingCACertificate string `json:"issuingCaCertificate"`
	CertificateChain     string `json:"certificateChain"`
	PrivateKey           string `json:"privateKey,omitempty"`
	SerialNumber         string `json:"serialNumber"`
	CertificateID        string `json:"certificateId"`
}

func bundleOf(res *issuer.Result) v1Bundle {
	return v1Bundle{Certificate: res.Certificate, IssuingCACertificate: res.IssuingCACertificate, CertificateChain: res.CertificateChain,
		PrivateKey: res.PrivateKey, SerialNumber: res.SerialNumber, CertificateID: res.CertificateID}
}

func (h *handler) v1Create(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	req, e := h.decodeV1Create(c.body, c)
	if e != nil {
		return e
	}
	var res *issuer.Result
	var err error
	if req.sign != nil {
		l.profile = h.cfg.Issuer.ProfileName(req.sign.ProfileID)
		res, err = h.cfg.Issuer.Sign(r.Context(), c.meta, *req.sign)
	} else {
		l.profile = h.cfg.Issuer.ProfileName(req.issue.ProfileID)
		res, err = h.cfg.Issuer.Issue(r.Context(), c.meta, *req.issue)
	}
	if err != nil {
		return fromIssuer(err)
	}
	l.outcome, l.serial, l.status = issuer.OutcomeIssued, res.SerialNumber, http.StatusOK
	writeJSON(w, http.StatusOK, v1Issued{Certificate: bundleOf(res), CertificateRequestID: res.CertificateRequestID, Status: "issued"})
	return nil
}

// v1CertificateView is GET /api/v1/cert-manager/certificates/{id}: usages
// and altNames in the order they were requested, so that `terraform plan`
// sees what it applied; times RFC 3339 or null.
type v1CertificateView struct {
	ID                 string           `json:"id"`
	ProjectID          string           `json:"projectId"`
	ProfileID          string           `json:"profileId"`
	ApplicationID      string           `json:"applicationId,omitempty"`
	Status             string           `json:"status"`
	CommonName         string           `json:"commonName"`
	AltNames           []record.AltName `json:"altNames"`
	SerialNumber       string           `json:"serialNumber"`
	NotBefore          string           `json:"notBefore"`
	NotAfter           string           `json:"notAfter"`
	KeyAlgorithm       string           `json:"keyAlgorithm"`
	SignatureAlgorithm string           `json:"signatureAlgorithm"`
	KeyUsages          []string         `json:"keyUsages"`
	ExtendedKeyUsages  []string         `json:"extendedKeyUsages"`
	CertificateChain   string           `json:"certificateChain,omitempty"`
	RevokedAt          *string          `json:"revokedAt"`
	RevocationReason   *string          `json:"revocationReason"`
	CAName             string           `json:"caName"`
	CreatedAt          string           `json:"createdAt"`
	UpdatedAt          string           `json:"updatedAt"`
}

func (h *handler) v1View(c *issuer.Certificate) v1CertificateView {
	rec := c.Record
	v := v1CertificateView{ID: rec.ID, ProjectID: h.cfg.Catalog.Project.ID, ProfileID: rec.ProfileID, ApplicationID: rec.ApplicationID,
		Status: c.Status, CommonName: rec.CommonName, AltNames: rec.AltNames, SerialNumber: rec.Serial,
		NotBefore: rec.NotBefore.UTC().Format(time.RFC3339), NotAfter: rec.NotAfter.UTC().Format(time.RFC3339),
		KeyAlgorithm: rec.KeyAlgorithm, SignatureAlgorithm: rec.SignatureAlgorithm, KeyUsages: nonNil(rec.KeyUsages),
		ExtendedKeyUsages: nonNil(rec.ExtKeyUsages), CAName: rec.CA,
		CreatedAt: rec.CreatedAt.UTC().Format(time.RFC3339), UpdatedAt: rec.UpdatedAt.UTC().Format(time.RFC3339)}
	if v.AltNames == nil {
		v.AltNames = []record.AltName{}
	}
	if c.CA != nil {
		v.CertificateChain = c.CA.Chain(false)
	}
	if !rec.RevokedAt.IsZero() {
		at, reason := rec.RevokedAt.UTC().Format(time.RFC3339), rec.RevocationReason
		v.RevokedAt, v.RevocationReason = &at, &reason
	}
	return v
}

// byID looks up the certificate of the {certificateId} path parameter.
func (h *handler) byID(r *http.Request, l *logLine, c *call) (*issuer.Certificate, *httpError) {
	id, e := certificateIDParam(r)
	if e != nil {
		return nil, e
	}
	cert, err := h.cfg.Issuer.Lookup(r.Context(), c.meta, id, true)
	if err != nil {
		return nil, fromIssuer(err)
	}
	l.profile, l.serial, l.outcome, l.status = cert.Record.Profile, cert.Record.Serial, outcomeServed, http.StatusOK
	return cert, nil
}

func (h *handler) v1Get(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	cert, e := h.byID(r, l, c)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, map[string]v1CertificateView{"certificate": h.v1View(cert)})
	return nil
}

// v1Body is GET …/{id}/certificate and …/{id}/bundle: pkid never keeps a
// private key, so the bundle is the certificate and its chain.
func (h *handler) v1Body(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	cert, e := h.byID(r, l, c)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, bodyOf(cert))
	return nil
}

// v1RequestView is GET …/certificate-requests/{id}: always issued (pkid
// never issues asynchronously), without a private key (pkid keeps none).
type v1RequestView struct {
	Status               string `json:"status"`
	Certificate          string `json:"certificate"`
	IssuingCACertificate string `json:"issuingCaCertificate,omitempty"`
	CertificateChain     string `json:"certificateChain,omitempty"`
	SerialNumber         string `json:"serialNumber"`
	CertificateID        string `json:"certificateId"`
	CreatedAt            string `json:"createdAt"`
	UpdatedAt            string `json:"updatedAt"`
}

func (h *handler) v1Request(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	id := mux.Vars(r)["requestId"]
	if !uuidPattern.MatchString(id) {
		return validation([]issue{{Code: "invalid_string", Validation: "uuid", Message: "Invalid uuid", Path: []any{"requestId"}}})
	}
	cert, err := h.cfg.Issuer.ByRequestID(r.Context(), c.meta, strings.ToLower(id))
	if err != nil {
		return fromIssuer(err)
	}
	rec := cert.Record
	v := v1RequestView{Status: "issued", Certificate: pemCertificate(rec.DER), SerialNumber: rec.Serial, CertificateID: rec.ID,
		CreatedAt: rec.CreatedAt.UTC().Format(time.RFC3339), UpdatedAt: rec.UpdatedAt.UTC().Format(time.RFC3339)}
	if cert.CA != nil {
		v.IssuingCACertificate = pemCertificate(cert.CA.Certificate().Raw)
		v.CertificateChain = cert.CA.Chain(false)
	}
	l.profile, l.serial, l.outcome, l.status = rec.Profile, rec.Serial, outcomeServed, http.StatusOK
	writeJSON(w, http.StatusOK, v)
	return nil
}

// legacySign is the v1 pki sign-certificate of cert-manager's Infisical
// issuer v0.1: {caId | certificateTemplateId, csr, ttl}; either id names a
// profile, by id or slug.
func (h *handler) legacySign(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	v, keys, e := parseObject(c.body)
	if e != nil {
		return e
	}
	ref := ""
	for _, f := range []string{"caId", "certificateTemplateId"} {
		if s, ok := v.str(v.obj, v.at(f), f, false); ok && s != "" {
			if ref != "" {
				v.add(custom(v.at(f), "Give caId or certificateTemplateId, not both"))
			}
			ref = s
		}
	}
	if ref == "" {
		v.add(custom(v.at(), "caId or certificateTemplateId is required"))
	}
	csr, _ := v.str(v.obj, v.at("csr"), "csr", true)
	if csr = strings.TrimSpace(csr); len(csr) > maxCSRChars {
		v.add(tooBig(v.at("csr"), maxCSRChars, "string"))
	}
	ttl, _ := v.ttl()
	v.unrecognized(nil, keys, []string{"caId", "certificateTemplateId", "csr", "ttl", "commonName", "altNames"})
	// Infisical's legacy schema has these beside the csr; a value there would
	// be silently dropped, so it is refused as v1 create refuses it.
	v.refuseBesideCSR("commonName", "altNames")
	if len(v.issues) > 0 {
		return validation(v.issues)
	}
	info, err := h.cfg.Issuer.ProfileFor(r.Context(), c.meta, ref)
	if err != nil {
		return fromIssuer(err)
	}
	l.profile = info.Name
	res, err := h.cfg.Issuer.Sign(r.Context(), c.meta, issuer.SignRequest{ProfileID: info.ID, CSR: csr, TTL: ttl})
	if err != nil {
		return fromIssuer(err)
	}
	l.outcome, l.serial, l.status = issuer.OutcomeIssued, res.SerialNumber, http.StatusOK
	writeJSON(w, http.StatusOK, map[string]string{"certificate": res.Certificate, "certificateChain": res.CertificateChain,
		"issuingCaCertificate": res.IssuingCACertificate, "serialNumber": res.SerialNumber})
	return nil
}
