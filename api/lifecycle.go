package api

import (
	"encoding/pem"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// Routes of the certificate's life after issuance (DESIGN.md §11, §12).
const (
	SignPath        = "/api/v3/pki/certificates/sign-certificate"
	RenewPath       = "/api/v3/pki/certificates/{certificateId}/renew"
	CertificatePath = "/api/v1/pki/certificates/{serialNumber}"
	BodyPath        = "/api/v1/pki/certificates/{serialNumber}/certificate"
	RevokePath      = "/api/v1/pki/certificates/{serialNumber}/revoke"
)

// maxCSRChars bounds the csr field after trimming, as Infisical's schema does.
const maxCSRChars = 4096

var signFields = []string{"profileId", "csr", "ttl", "notBefore", "notAfter", "signatureAlgorithm", "removeRootsFromChain"}

// decodeSignRequest is sign-certificate's schema (DESIGN.md §11).
func decodeSignRequest(body []byte, now time.Time) (issuer.SignRequest, *httpError) {
	v, keys, e := parseObject(body)
	if e != nil {
		return issuer.SignRequest{}, e
	}
	var req issuer.SignRequest
	req.ProfileID = v.uuid("profileId", true)
	if csr, ok := v.str(v.obj, []any{"csr"}, "csr", true); ok {
		switch csr = strings.TrimSpace(csr); {
		case csr == "":
			v.add(tooSmall([]any{"csr"}, 1, "CSR cannot be empty"))
		case len(csr) > maxCSRChars:
			v.add(tooBig([]any{"csr"}, maxCSRChars, "string"))
		default:
			req.CSR = csr
		}
	}
	ttl, ttlValid := v.ttl()
	req.TTL = ttl
	req.NotBefore, req.NotAfter = v.window(now, ttl, ttlValid)
	if _, present := v.obj["signatureAlgorithm"]; present {
		req.SignatureAlgorithm, _ = v.enum(v.obj, []any{"signatureAlgorithm"}, "signatureAlgorithm", policy.SignatureAlgorithmNames, true)
	}
	req.RemoveRootsFromChain = v.boolean("removeRootsFromChain")
	v.unrecognized(nil, keys, signFields)
	if len(v.issues) > 0 {
		return issuer.SignRequest{}, validation(v.issues)
	}
	return req, nil
}

// signResponse is issue-certificate's answer without the private key.
type signResponse struct {
	Certificate          string `json:"certificate"`
	IssuingCACertificate string `json:"issuingCaCertificate"`
	CertificateChain     string `json:"certificateChain"`
	SerialNumber         string `json:"serialNumber"`
	CertificateID        string `json:"certificateId"`
}

func (h *handler) sign(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	req, e := decodeSignRequest(c.body, h.cfg.Now())
	if e != nil {
		return e
	}
	l.profile = h.cfg.Issuer.ProfileName(req.ProfileID)
	res, err := h.cfg.Issuer.Sign(r.Context(), c.meta, req)
	if err != nil {
		return fromIssuer(err)
	}
	l.outcome, l.serial, l.status = issuer.OutcomeIssued, res.SerialNumber, http.StatusOK
	writeJSON(w, http.StatusOK, signResponse{Certificate: res.Certificate, IssuingCACertificate: res.IssuingCACertificate,
		CertificateChain: res.CertificateChain, SerialNumber: res.SerialNumber, CertificateID: res.CertificateID})
	return nil
}

// renewResponse is issue-certificate's answer and the certificate request
// id of the renewal (DESIGN.md §12).
type renewResponse struct {
	Certificate          string `json:"certificate"`
	IssuingCACertificate string `json:"issuingCaCertificate"`
	CertificateChain     string `json:"certificateChain"`
	PrivateKey           string `json:"privateKey"`
	SerialNumber         string `json:"serialNumber"`
	CertificateID        string `json:"certificateId"`
	CertificateRequestID string `json:"certificateRequestId"`
}

// renew answers a renewal flat, v3's with its certificateRequestId. v1's
// leaves it empty: the Infisical CLI agent then writes the new certificate
// and its new key at once, whereas a request id would make it poll
// certificate-requests, which cannot carry the key (pkid keeps none).
func (h *handler) renew(withRequestID bool) func(http.ResponseWriter, *http.Request, *logLine, *call) *httpError {
	return func(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
		id, e := certificateIDParam(r)
		if e != nil {
			return e
		}
		removeRoots, e := decodeRenewBody(c.body)
		if e != nil {
			return e
		}
		res, err := h.cfg.Issuer.Renew(r.Context(), c.meta, id, removeRoots)
		if err != nil {
			return fromIssuer(err)
		}
		l.profile, l.outcome, l.serial, l.status = res.Profile, issuer.OutcomeIssued, res.SerialNumber, http.StatusOK
		answer := renewResponse{Certificate: res.Certificate, IssuingCACertificate: res.IssuingCACertificate,
			CertificateChain: res.CertificateChain, PrivateKey: res.PrivateKey, SerialNumber: res.SerialNumber,
			CertificateID: res.CertificateID}
		if withRequestID {
			answer.CertificateRequestID = res.CertificateRequestID
		}
		writeJSON(w, http.StatusOK, answer)
		return nil
	}
}

// decodeRenewBody reads a renewal's optional {removeRootsFromChain}.
func decodeRenewBody(body []byte) (bool, *httpError) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return false, nil
	}
	v, keys, e := parseObject(body)
	if e != nil {
		return false, e
	}
	removeRoots := v.boolean("removeRootsFromChain")
	v.unrecognized(nil, keys, []string{"removeRootsFromChain"})
	if len(v.issues) > 0 {
		return false, validation(v.issues)
	}
	return removeRoots, nil
}

// decodeRevokeBody reads {revocationReason} in Infisical's names.
func decodeRevokeBody(body []byte) (string, *httpError) {
	v, keys, e := parseObject(body)
	if e != nil {
		return "", e
	}
	reason, _ := v.enum(v.obj, []any{"revocationReason"}, "revocationReason", issuer.RevocationReasons, true)
	v.unrecognized(nil, keys, []string{"revocationReason"})
	if len(v.issues) > 0 {
		return "", validation(v.issues)
	}
	return reason, nil
}

// certificateIDParam is the {certificateId} of the path, a UUID (422 otherwise).
func certificateIDParam(r *http.Request) (string, *httpError) {
	id := mux.Vars(r)["certificateId"]
	if !uuidPattern.MatchString(id) {
		return "", validation([]issue{{Code: "invalid_string", Validation: "uuid", Message: "Invalid uuid", Path: []any{"certificateId"}}})
	}
	return strings.ToLower(id), nil
}

// serialParam is the {serialNumber} of the path: hex, any case, with or
// without colons, at most 20 octets (RFC 5280 §4.1.2.2); 422 otherwise.
func serialParam(r *http.Request) (string, *httpError) {
	s, ok := record.NormalizeSerial(mux.Vars(r)["serialNumber"])
	if !ok {
		return "", validation([]issue{{Code: "invalid_string", Validation: "regex", Path: []any{"serialNumber"},
			Message: "Invalid serial number: hexadecimal digits (optionally separated by colons), at most 20 octets"}})
	}
	return s, nil
}

// certificateView is the look-up answer (DESIGN.md §12).
type certificateView struct {
	ID                 string   `json:"id"`
	SerialNumber       string   `json:"serialNumber"`
	CommonName         string   `json:"commonName"`
	AltNames           string   `json:"altNames"` // comma-joined values, as Infisical answers
	Status             string   `json:"status"`
	NotBefore          string   `json:"notBefore"`
	NotAfter           string   `json:"notAfter"`
	RevokedAt          *string  `json:"revokedAt"`
	RevocationReason   *string  `json:"revocationReason"`
	KeyUsages          []string `json:"keyUsages"`
	ExtendedKeyUsages  []string `json:"extendedKeyUsages"`
	KeyAlgorithm       string   `json:"keyAlgorithm"`
	SignatureAlgorithm string   `json:"signatureAlgorithm"`
	ProfileID          string   `json:"profileId"`
	CAName             string   `json:"caName"`
}

func viewOf(c *issuer.Certificate) certificateView {
	rec := c.Record
	alt := make([]string, len(rec.AltNames))
	for k, a := range rec.AltNames {
		alt[k] = a.Value
	}
	v := certificateView{ID: rec.ID, SerialNumber: rec.Serial, CommonName: rec.CommonName, AltNames: strings.Join(alt, ", "),
		Status: c.Status, NotBefore: rec.NotBefore.UTC().Format(time.RFC3339), NotAfter: rec.NotAfter.UTC().Format(time.RFC3339),
		KeyUsages: nonNil(rec.KeyUsages), ExtendedKeyUsages: nonNil(rec.ExtKeyUsages), KeyAlgorithm: rec.KeyAlgorithm,
		SignatureAlgorithm: rec.SignatureAlgorithm, ProfileID: rec.ProfileID, CAName: rec.CA}
	if !rec.RevokedAt.IsZero() {
		at, reason := rec.RevokedAt.UTC().Format(time.RFC3339), rec.RevocationReason
		v.RevokedAt, v.RevocationReason = &at, &reason
	}
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (h *handler) lookup(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	serial, e := serialParam(r)
	if e != nil {
		return e
	}
	cert, err := h.cfg.Issuer.Lookup(r.Context(), c.meta, serial, false)
	if err != nil {
		return fromIssuer(err)
	}
	l.profile, l.serial, l.outcome, l.status = cert.Record.Profile, cert.Record.Serial, outcomeServed, http.StatusOK
	writeJSON(w, http.StatusOK, map[string]certificateView{"certificate": viewOf(cert)})
	return nil
}

// outcomeServed labels a look-up that was answered.
const outcomeServed = "served"

// bodyResponse is GET …/{serialNumber}/certificate and v1's
// …/{id}/certificate and …/{id}/bundle.
type bodyResponse struct {
	Certificate      string `json:"certificate"`
	CertificateChain string `json:"certificateChain"`
	SerialNumber     string `json:"serialNumber"`
}

func (h *handler) body(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	serial, e := serialParam(r)
	if e != nil {
		return e
	}
	cert, err := h.cfg.Issuer.Lookup(r.Context(), c.meta, serial, false)
	if err != nil {
		return fromIssuer(err)
	}
	l.profile, l.serial, l.outcome, l.status = cert.Record.Profile, cert.Record.Serial, outcomeServed, http.StatusOK
	writeJSON(w, http.StatusOK, bodyOf(cert))
	return nil
}

// bodyOf is the answer of the routes that return a certificate's PEM.
func bodyOf(cert *issuer.Certificate) bodyResponse {
	res := bodyResponse{Certificate: pemCertificate(cert.Record.DER), SerialNumber: cert.Record.Serial}
	if cert.CA != nil {
		res.CertificateChain = cert.CA.Chain(false)
	}
	return res
}

// revokeResponse is Infisical's answer to a revocation.
type revokeResponse struct {
	Message      string `json:"message"`
	SerialNumber string `json:"serialNumber"`
	RevokedAt    string `json:"revokedAt"`
}

// revoke revokes the certificate the path names: by serial number (v3 and
// the v1 pki routes) or, byID, by certificate id (v1 cert-manager).
func (h *handler) revoke(byID bool) func(http.ResponseWriter, *http.Request, *logLine, *call) *httpError {
	key := serialParam
	if byID {
		key = certificateIDParam
	}
	return func(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
		k, e := key(r)
		if e != nil {
			return e
		}
		reason, e := decodeRevokeBody(c.body)
		if e != nil {
			return e
		}
		rec, err := h.cfg.Issuer.Revoke(r.Context(), c.meta, k, byID, reason)
		if err != nil {
			return fromIssuer(err)
		}
		l.profile, l.serial, l.outcome, l.status = rec.Profile, rec.Serial, "revoked", http.StatusOK
		writeJSON(w, http.StatusOK, revokeResponse{Message: "Successfully revoked certificate", SerialNumber: rec.Serial,
			RevokedAt: rec.RevokedAt.UTC().Format(time.RFC3339)})
		return nil
	}
}

func pemCertificate(der []byte) string {
	return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}
