package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/pkid/pkid/issuer"
)

// Limits on the request body's shape; the byte size is limited earlier.
const (
	maxDepth        = 16
	maxAltNames     = 100
	maxUsages       = 32
	maxAltNameValue = 1024
	maxCommonName   = 100
)

// The schema's field order; issues are reported in this order, as zod does.
var schemaFields = []string{
	"profileId", "commonName", "ttl", "keyUsages", "extendedKeyUsages", "notBefore", "notAfter",
	"altNames", "signatureAlgorithm", "keyAlgorithm", "removeRootsFromChain",
}

var (
	// zod's uuid pattern (any version).
	uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// Infisical's commonName character set.
	commonNamePattern = regexp.MustCompile(`^[A-Za-z0-9 *@\-.\\]+$`)
)

// decodeIssueRequest turns a body into an issuer.IssueRequest whose names
// are canonical values, or an error: 400 when it is not JSON at all, 422
// with every schema issue at once otherwise. now is used only to check a
// notAfter against ttl when notBefore is absent.
func decodeIssueRequest(body []byte, now time.Time) (issuer.IssueRequest, *httpError) {
	v, keyOrder, e := parseObject(body)
	if e != nil {
		return issuer.IssueRequest{}, e
	}
	req := v.issueRequest(now)
	v.unrecognized(nil, keyOrder, schemaFields)
	if len(v.issues) > 0 {
		return issuer.IssueRequest{}, validation(v.issues)
	}
	return req, nil
}

// parseObject checks that body is one JSON object (UTF-8, no duplicate
// keys, bounded depth) and returns a validator over it with its top-level
// keys in document order.
func parseObject(body []byte) (*validator, []string, *httpError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil, malformed("Body cannot be empty when content-type is set to 'application/json'")
	}
	if !utf8.Valid(body) {
		return nil, nil, malformed("Body is not valid UTF-8")
	}
	keyOrder, e := checkStructure(body)
	if e != nil {
		return nil, nil, e
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, malformed("Body is not valid JSON")
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, nil, validation([]issue{typeIssue(nil, "object", doc, true)})
	}
	return &validator{obj: obj}, keyOrder, nil
}

// jsonFrame is one open object or array while walking tokens.
type jsonFrame struct {
	object  bool
	keys    map[string]bool
	wantKey bool
}

// checkStructure walks the JSON tokens once: it rejects syntax errors,
// trailing data, duplicate keys at any level (a classic smuggling vector:
// parsers disagree on which one wins) and nesting deeper than maxDepth. It
// returns the top-level keys in document order.
func checkStructure(body []byte) ([]string, *httpError) {
	malformed := func(format string, a ...any) *httpError { return malformed(fmt.Sprintf(format, a...)) }
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []*jsonFrame
	var top []string
	values := 0
	endValue := func() {
		if len(stack) == 0 {
			values++
		} else if f := stack[len(stack)-1]; f.object {
			f.wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, malformed("Body is not valid JSON: %s at offset %d", se.Error(), se.Offset)
			}
			return nil, malformed("Body is not valid JSON")
		}
		if values > 0 {
			return nil, malformed("Body has data after the JSON value")
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			cur := stack[n-1]
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				endValue()
				continue
			}
			key, _ := tok.(string)
			if cur.keys[key] {
				return nil, malformed("Body has a duplicate key %q", truncate(key, 64))
			}
			cur.keys[key] = true
			cur.wantKey = false
			if n == 1 {
				top = append(top, key)
			}
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxDepth {
				return nil, malformed("Body is nested deeper than %d levels", maxDepth)
			}
			stack = append(stack, &jsonFrame{object: tok == json.Delim('{'), keys: map[string]bool{}, wantKey: true})
		case json.Delim(']'), json.Delim('}'):
			stack = stack[:len(stack)-1]
			endValue()
		default:
			endValue()
		}
	}
	if len(stack) > 0 || values == 0 {
		return nil, malformed("Body is not valid JSON: unexpected end of input")
	}
	return top, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
