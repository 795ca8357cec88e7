package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
)

// validator collects zod-style issues while reading fields of obj, an
// object found at prefix in the body (nil for the top level).
type validator struct {
	obj    map[string]any
	prefix []any
	issues []issue
}

// at is the path of parts inside the validator's object.
func (v *validator) at(parts ...any) []any {
	return append(append(make([]any, 0, len(v.prefix)+len(parts)), v.prefix...), parts...)
}

// nested returns a validator over the object at key, sharing the issues.
func (v *validator) nested(obj map[string]any, key string) *validator {
	return &validator{obj: obj, prefix: v.at(key)}
}

func (v *validator) add(is issue) { v.issues = append(v.issues, is) }

func ptr[T any](x T) *T { return &x }

// zodType names a decoded JSON value the way zod's "received" does.
func zodType(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

func typeIssue(path []any, expected string, got any, present bool) issue {
	if path == nil {
		path = []any{}
	}
	if !present {
		return issue{Code: "invalid_type", Expected: expected, Received: "undefined", Path: path, Message: "Required"}
	}
	recv := zodType(got)
	return issue{Code: "invalid_type", Expected: expected, Received: recv, Path: path,
		Message: fmt.Sprintf("Expected %s, received %s", expected, recv)}
}

func tooSmall(path []any, min int, message string) issue {
	if message == "" {
		message = fmt.Sprintf("String must contain at least %d character(s)", min)
	}
	return issue{Code: "too_small", Minimum: ptr(min), Type: "string", Inclusive: ptr(true), Exact: ptr(false), Path: path, Message: message}
}

func tooBig(path []any, max int, typ string) issue {
	msg := fmt.Sprintf("String must contain at most %d character(s)", max)
	if typ == "array" {
		msg = fmt.Sprintf("Array must contain at most %d element(s)", max)
	}
	return issue{Code: "too_big", Maximum: ptr(max), Type: typ, Inclusive: ptr(true), Exact: ptr(false), Path: path, Message: msg}
}

func custom(path []any, message string) issue {
	if path == nil {
		path = []any{}
	}
	return issue{Code: "custom", Message: message, Path: path}
}

func enumIssue(path []any, options []string, got string) issue {
	quoted := make([]string, len(options))
	for k, o := range options {
		quoted[k] = "'" + o + "'"
	}
	return issue{Code: "invalid_enum_value", Options: options, Received: truncate(got, 100), Path: path,
		Message: fmt.Sprintf("Invalid enum value. Expected %s, received '%s'", strings.Join(quoted, " | "), truncate(got, 100))}
}

// str reads an optional (required=false) or required string field.
func (v *validator) str(obj map[string]any, path []any, key string, required bool) (string, bool) {
	raw, present := obj[key]
	if !present && !required {
		return "", false
	}
	s, ok := raw.(string)
	if !present || !ok {
		v.add(typeIssue(path, "string", raw, present))
		return "", false
	}
	return s, true
}

func (v *validator) enum(obj map[string]any, path []any, key string, options []string, required bool) (string, bool) {
	s, ok := v.str(obj, path, key, required)
	if !ok {
		return "", false
	}
	if !policy.IsOneOf(options, s) {
		v.add(enumIssue(path, options, s))
		return "", false
	}
	return s, true
}

// enumArray reads an optional array of enum values, dropping duplicates.
func (v *validator) enumArray(key string, options []string) []string {
	raw, present := v.obj[key]
	if !present {
		return nil
	}
	arr, ok := raw.([]any)
	if !ok {
		v.add(typeIssue(v.at(key), "array", raw, true))
		return nil
	}
	if len(arr) > maxUsages {
		v.add(tooBig(v.at(key), maxUsages, "array"))
		return nil
	}
	var out []string
	for k, item := range arr {
		path := v.at(key, k)
		s, ok := item.(string)
		if !ok {
			v.add(issue{Code: "invalid_type", Expected: "string", Received: zodType(item), Path: path,
				Message: fmt.Sprintf("Expected string, received %s", zodType(item))})
			continue
		}
		if !policy.IsOneOf(options, s) {
			v.add(enumIssue(path, options, s))
			continue
		}
		if !policy.IsOneOf(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (v *validator) timestamp(key string) (*time.Time, bool) {
	s, ok := v.str(v.obj, v.at(key), key, false)
	if !ok {
		return nil, false
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if err != nil {
		v.add(issue{Code: "invalid_string", Validation: "datetime", Path: v.at(key),
			Message: "Invalid datetime: an RFC 3339 timestamp such as 2026-01-02T15:04:05Z is required"})
		return nil, false
	}
	return &t, true
}

func (v *validator) unrecognized(path []any, keys []string, known []string) {
	var extra []string
	for _, k := range keys {
		if !policy.IsOneOf(known, k) {
			extra = append(extra, truncate(k, 64))
		}
	}
	if len(extra) == 0 {
		return
	}
	if path == nil {
		path = []any{}
	}
	v.add(issue{Code: "unrecognized_keys", Keys: extra, Path: path,
		Message: "Unrecognized key(s) in object: '" + strings.Join(extra, "', '") + "'"})
}

// issueRequest reads every field in schema order, then the cross-field rules.
func (v *validator) issueRequest(now time.Time) issuer.IssueRequest {
	var req issuer.IssueRequest
	req.ProfileID = v.uuid("profileId", true)
	if cn, ok := v.str(v.obj, v.at("commonName"), "commonName", false); ok {
		req.CommonName = v.commonName(cn)
	}
	ttl, ttlValid := v.ttl()
	req.TTL = ttl
	req.KeyUsages = v.enumArray("keyUsages", policy.KeyUsageNames)
	req.ExtKeyUsages = v.enumArray("extendedKeyUsages", policy.ExtKeyUsageNames)
	req.NotBefore, req.NotAfter = v.window(now, ttl, ttlValid)
	req.AltNames = v.altNames()
	req.SignatureAlgorithm, _ = v.enum(v.obj, v.at("signatureAlgorithm"), "signatureAlgorithm", policy.SignatureAlgorithmNames, true)
	req.KeyAlgorithm, _ = v.enum(v.obj, v.at("keyAlgorithm"), "keyAlgorithm", policy.KeyAlgorithmNames, true)
	req.RemoveRootsFromChain = v.boolean("removeRootsFromChain")
	return req
}

// uuid reads a UUID field (lower-cased), as zod's uuid check accepts it.
func (v *validator) uuid(key string, required bool) string {
	id, ok := v.str(v.obj, v.at(key), key, required)
	if !ok {
		return ""
	}
	if !uuidPattern.MatchString(id) {
		v.add(issue{Code: "invalid_string", Validation: "uuid", Message: "Invalid uuid", Path: v.at(key)})
		return ""
	}
	return strings.ToLower(id)
}

// ttl reads the required ttl in the one duration grammar.
func (v *validator) ttl() (time.Duration, bool) {
	ttl, ok := v.str(v.obj, v.at("ttl"), "ttl", true)
	if !ok {
		return 0, false
	}
	ttl = strings.TrimSpace(ttl)
	if ttl == "" {
		v.add(tooSmall(v.at("ttl"), 1, "TTL cannot be empty"))
		return 0, false
	}
	d, err := policy.ParseDuration(ttl)
	if err != nil {
		v.add(custom(v.at("ttl"), "TTL must be a positive number"))
		return 0, false
	}
	return d, true
}

// window reads notBefore and notAfter and checks them against each other
// and the ttl (DESIGN.md §1 "Validity").
func (v *validator) window(now time.Time, ttl time.Duration, ttlValid bool) (*time.Time, *time.Time) {
	notBefore, nbValid := v.timestamp("notBefore")
	notAfter, naValid := v.timestamp("notAfter")
	if nbValid && naValid && !notBefore.Before(*notAfter) {
		v.add(custom(v.at(), "notBefore must be earlier than notAfter"))
	} else if naValid && ttlValid {
		start := now
		if nbValid {
			start = *notBefore
		}
		if notAfter.Sub(start) > ttl {
			v.add(custom(v.at("notAfter"), "The validity period up to notAfter must not exceed ttl"))
		}
	}
	return notBefore, notAfter
}

// boolean reads an optional boolean field.
func (v *validator) boolean(key string) bool {
	raw, present := v.obj[key]
	if !present {
		return false
	}
	b, ok := raw.(bool)
	if !ok {
		v.add(typeIssue(v.at(key), "boolean", raw, true))
	}
	return b
}

// commonName checks the schema's rules for the CN (each with zod's code)
// and returns its canonical value.
func (v *validator) commonName(cn string) policy.CommonName {
	path := v.at("commonName")
	switch {
	case len(cn) < 1:
		v.add(tooSmall(path, 1, ""))
	case len(cn) > maxCommonName:
		v.add(tooBig(path, maxCommonName, "string"))
	case !commonNamePattern.MatchString(cn):
		v.add(issue{Code: "invalid_string", Validation: "regex", Path: path,
			Message: "Invalid pattern: only alphanumeric characters, spaces, *, ., @, -, and \\ are allowed."})
	default:
		c, err := policy.ParseCommonName(cn)
		if err != nil {
			v.add(custom(path, err.Error()))
			break
		}
		return c
	}
	return policy.CommonName{}
}

func (v *validator) altNames() []policy.SAN {
	raw, present := v.obj["altNames"]
	if !present {
		return nil
	}
	arr, ok := raw.([]any)
	if !ok {
		v.add(typeIssue(v.at("altNames"), "array", raw, true))
		return nil
	}
	if len(arr) > maxAltNames {
		v.add(tooBig(v.at("altNames"), maxAltNames, "array"))
		return nil
	}
	var out []policy.SAN
	for k, item := range arr {
		path := v.at("altNames", k)
		obj, ok := item.(map[string]any)
		if !ok {
			v.add(typeIssue(path, "object", item, true))
			continue
		}
		typ, typOK := v.enum(obj, v.at("altNames", k, "type"), "type", policy.SANTypeNames, true)
		valuePath := v.at("altNames", k, "value")
		value, valOK := v.str(obj, valuePath, "value", true)
		if valOK {
			switch {
			case value == "":
				v.add(tooSmall(valuePath, 1, "SAN value cannot be empty"))
			case len(value) > maxAltNameValue:
				v.add(tooBig(valuePath, maxAltNameValue, "string"))
			case typOK:
				// Parsed once into its canonical value: the policy, the
				// certificate and the record all see this one.
				san, err := policy.ParseSAN(typ, value)
				if err != nil {
					v.add(custom(valuePath, err.Error()))
					break
				}
				out = append(out, san)
			}
		}
		keys := make([]string, 0, len(obj))
		for key := range obj {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		v.unrecognized(path, keys, []string{"type", "value"})
	}
	return out
}
