package acme

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/pkid/pkid/record"
)

// maxContacts bounds an account's contact list.
const maxContacts = 10

// accountJSON is the account object (RFC 8555 §7.1.2).
type accountJSON struct {
	Status  string   `json:"status"`
	Contact []string `json:"contact"`
	Orders  string   `json:"orders"`
}

func (x *exchange) accountURL(id string) string { return x.base + "/acct/" + id }

func (x *exchange) accountReply(status int, a *record.ACMEAccount) *reply {
	contacts := a.Contacts
	if contacts == nil {
		contacts = []string{}
	}
	return &reply{status: status, location: x.accountURL(a.ID),
		body: accountJSON{Status: a.Status, Contact: contacts, Orders: x.accountURL(a.ID) + "/orders"}}
}

// checkContacts accepts mailto: URIs of one plain address each.
func checkContacts(contacts []string) *problem {
	if len(contacts) > maxContacts {
		return newProblem(http.StatusBadRequest, probInvalidContact, "At most 10 contacts")
	}
	for _, c := range contacts {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return newProblem(http.StatusBadRequest, probUnsupportedContact, "Only mailto: contacts are supported")
		}
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Address != addr || a.Name != "" || strings.ContainsAny(addr, "?,%") {
			return newProblem(http.StatusBadRequest, probInvalidContact, "Contact "+quote(c)+" is not a mailto: URI of one address")
		}
	}
	return nil
}

// newAccount serves new-account (RFC 8555 §7.3): the key's existing
// account, or a new one, bound to an EAB key when one is given or the
// profile requires it.
func (s *Server) newAccount(ctx context.Context, x *exchange, req *request, _ []string) (*reply, *problem) {
	var in struct {
		Contact                []string        `json:"contact"`
		TermsOfServiceAgreed   bool            `json:"termsOfServiceAgreed"`
		OnlyReturnExisting     bool            `json:"onlyReturnExisting"`
		ExternalAccountBinding json.RawMessage `json:"externalAccountBinding"`
	}
	if p := decodePayload(req.payload, &in); p != nil {
		return nil, p
	}
	existing, err := s.cfg.Store.ACMEAccountByKey(ctx, x.profile.ID, req.keyID)
	switch {
	case err == nil:
		x.identity = "acme:" + existing.ID
		if existing.Status != record.ACMEValid {
			return nil, unauthorized("The account of this key is " + existing.Status)
		}
		return x.accountReply(http.StatusOK, existing), nil
	case !errors.Is(err, record.ErrNotFound):
		return nil, storeProblem(err, "Account")
	case in.OnlyReturnExisting:
		return nil, newProblem(http.StatusBadRequest, probAccountDoesNotExist, "No account has this key")
	}
	if p := checkContacts(in.Contact); p != nil {
		return nil, p
	}
	a := &record.ACMEAccount{ID: uuid.NewString(), ProfileID: x.profile.ID, KeyID: req.keyID, Contacts: in.Contact,
		Status: record.ACMEValid, CreatedAt: s.now(), UpdatedAt: s.now()}
	if len(in.ExternalAccountBinding) > 0 && string(in.ExternalAccountBinding) != "null" {
		kid, p := x.verifyEAB(ctx, in.ExternalAccountBinding, req.jwk)
		if p != nil {
			return nil, p
		}
		a.EABKeyID = kid
	} else if x.profile.ExternalAccountRequired {
		return nil, newProblem(http.StatusBadRequest, probExternalAccountRequired,
			"This directory requires an external account binding; ask the operator for a key (pkid acme eab add)")
	}
	if a.Key, err = req.jwk.Public().MarshalJSON(); err != nil {
		return nil, internalProblem(err)
	}
	switch err := s.cfg.Store.CreateACMEAccount(ctx, a); {
	case errors.Is(err, record.ErrEABKeyUsed), errors.Is(err, record.ErrNotFound):
		return nil, unauthorized("The external account binding is not valid for this directory, or was used already")
	case errors.Is(err, record.ErrACMEKeyInUse):
		// Another request made the key's account meanwhile: that is it.
		existing, err := s.cfg.Store.ACMEAccountByKey(ctx, x.profile.ID, req.keyID)
		if err != nil {
			return nil, storeProblem(err, "Account")
		}
		x.identity = "acme:" + existing.ID
		return x.accountReply(http.StatusOK, existing), nil
	case err != nil:
		return nil, storeProblem(err, "Account")
	}
	x.identity = "acme:" + a.ID
	return x.accountReply(http.StatusCreated, a), nil
}

// ownAccount refuses a request about another account than the signer's.
func ownAccount(req *request, id string) *problem {
	if req.account.ID != id {
		return unauthorized("The request is signed by another account")
	}
	return nil
}

// accountUpdate serves POST to an account URL: read (POST-as-GET),
// replace its contacts, or deactivate it (RFC 8555 §7.3.2, §7.3.6).
func (s *Server) accountUpdate(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem) {
	if p := ownAccount(req, args[0]); p != nil {
		return nil, p
	}
	a := req.account
	if req.postAsGet() {
		return x.accountReply(http.StatusOK, a), nil
	}
	var in struct {
		Contact *[]string `json:"contact"`
		Status  string    `json:"status"`
	}
	if p := decodePayload(req.payload, &in); p != nil {
		return nil, p
	}
	status, contacts := a.Status, a.Contacts
	switch in.Status {
	case "", record.ACMEValid:
	case record.ACMEDeactivated:
		status = record.ACMEDeactivated
	default:
		return nil, malformed("An account's status can only be set to deactivated")
	}
	if in.Contact != nil {
		if p := checkContacts(*in.Contact); p != nil {
			return nil, p
		}
		contacts = *in.Contact
	}
	if err := s.cfg.Store.UpdateACMEAccount(ctx, a.ID, contacts, status, s.now()); err != nil {
		if errors.Is(err, record.ErrACMEStateChanged) {
			return nil, unauthorized("The account is deactivated")
		}
		return nil, storeProblem(err, "Account")
	}
	a.Status, a.Contacts = status, contacts
	return x.accountReply(http.StatusOK, a), nil
}

// orders serves an account's orders list (RFC 8555 §7.1.2.1): its
// newest orders that are not invalid.
func (s *Server) orders(ctx context.Context, x *exchange, req *request, args []string) (*reply, *problem) {
	if p := ownAccount(req, args[0]); p != nil {
		return nil, p
	}
	urls := []string{}
	now := s.now()
	err := s.cfg.Store.ACMEOrders(ctx, req.account.ID, 100, func(o *record.ACMEOrder) error {
		if o.Status != record.ACMEInvalid && (o.Status == record.ACMEValid || now.Before(o.Expires)) {
			urls = append(urls, x.base+"/order/"+o.ID)
		}
		return nil
	})
	if err != nil {
		return nil, storeProblem(err, "Orders")
	}
	return &reply{status: http.StatusOK, body: map[string][]string{"orders": urls}}, nil
}

// keyChange serves key rollover (RFC 8555 §7.3.5): the outer JWS is the
// account's, the inner one the new key's, over the account URL and the
// old key.
func (s *Server) keyChange(ctx context.Context, x *exchange, req *request, _ []string) (*reply, *problem) {
	jws, h, p := verifyInner(req.payload, signatureAlgorithms, x.url)
	if p != nil {
		return nil, p
	}
	if h.JSONWebKey == nil || h.KeyID != "" {
		return nil, malformed("The inner JWS must carry the new key as jwk")
	}
	if p := checkKey(h.JSONWebKey); p != nil {
		return nil, p
	}
	payload, err := jws.Verify(h.JSONWebKey.Key)
	if err != nil {
		return nil, malformed("The inner JWS signature does not verify with the new key")
	}
	var in struct {
		Account string          `json:"account"`
		OldKey  jose.JSONWebKey `json:"oldKey"`
	}
	if err := json.Unmarshal(payload, &in); err != nil {
		return nil, malformed("The inner JWS payload is not {account, oldKey}")
	}
	a := req.account
	oldKey, err1 := thumbprint(&in.OldKey)
	newKey, err2 := thumbprint(h.JSONWebKey)
	switch {
	case in.Account != x.accountURL(a.ID):
		return nil, unauthorized("The inner JWS names another account")
	case err1 != nil || err2 != nil:
		return nil, malformed("A key has no thumbprint")
	case oldKey != a.KeyID:
		return nil, unauthorized("oldKey is not the account's key")
	case newKey == a.KeyID:
		return nil, malformed("The new key is the account's key")
	}
	jwk, err := h.JSONWebKey.Public().MarshalJSON()
	if err != nil {
		return nil, internalProblem(err)
	}
	switch err := s.cfg.Store.ChangeACMEAccountKey(ctx, a.ID, a.KeyID, newKey, jwk, s.now()); {
	case errors.Is(err, record.ErrACMEKeyInUse):
		p := malformed("Another account has the new key")
		p.Status = http.StatusConflict
		if other, err := s.cfg.Store.ACMEAccountByKey(ctx, x.profile.ID, newKey); err == nil {
			p.location = x.accountURL(other.ID)
		}
		return nil, p
	case errors.Is(err, record.ErrACMEStateChanged):
		return nil, unauthorized("The account's key changed meanwhile, or it was deactivated")
	case err != nil:
		return nil, storeProblem(err, "Account")
	}
	a.KeyID, a.Key = newKey, jwk
	return x.accountReply(http.StatusOK, a), nil
}
