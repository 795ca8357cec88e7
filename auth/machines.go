package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pkid/pkid/policy"
)

// Defaults of DESIGN §15 for a machine identity's access tokens.
const (
	DefaultAccessTokenTTL    = 2 * time.Hour
	DefaultAccessTokenMaxTTL = 24 * time.Hour
)

// MinAccessTokenTTL is the shortest accessTokenTTL pkid accepts. Infisical's
// CLI agent exits when a login answers expiresIn ≤ 30 s, and it renews at two
// thirds of the TTL; a minute leaves it room.
const MinAccessTokenTTL = time.Minute

// MachineConfig is one machineIdentities[] entry of the config file.
type MachineConfig struct {
	Name              string   `yaml:"name"`              // ^[a-z0-9][a-z0-9._-]{0,62}$ (policy.MachineIdentity's rule)
	ClientID          string   `yaml:"clientId"`          // UUID
	ClientSecretHash  string   `yaml:"clientSecretHash"`  // argon2id PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
	AccessTokenTTL    string   `yaml:"accessTokenTTL"`    // ms grammar (policy.ParseDuration); default 2h
	AccessTokenMaxTTL string   `yaml:"accessTokenMaxTTL"` // default 24h; >= TTL
	StaticTokens      []string `yaml:"staticTokens"`      // hex SHA-256 of static tokens ("token auth")
}

// machine is a validated machine identity.
type machine struct {
	name     string
	clientID string // canonical (lower-case) UUID
	hash     argonHash
	ttl      time.Duration
	maxTTL   time.Duration
	// credential fingerprints the client id and secret hash. Access tokens
	// carry it, so that rotating a machine's secret (or id) in the config
	// invalidates every token minted with the old one at the next reload,
	// rather than leaving a leaked secret's tokens alive up to their max TTL.
	credential string
}

// staticToken is one configured staticTokens entry.
type staticToken struct {
	sum     [sha256.Size]byte
	machine string
}

// Machines is the validated set of configured machine identities. It is
// immutable: a reload builds a new one.
type Machines struct {
	byName     map[string]*machine
	byClientID map[string]*machine
	static     []staticToken
	// decoy is verified in place of a client secret hash when the client id
	// is unknown, so that an unknown id costs what a wrong secret costs
	// (same parameters as most configured hashes; random salt and key, so it
	// matches no secret).
	decoy argonHash
}

// NewMachines validates every entry — names, client ids, secret hashes,
// TTLs, static-token hashes, and duplicates across entries — and returns the
// set, or an error listing every problem found. No message repeats a hash.
func NewMachines(cfgs []MachineConfig) (*Machines, error) {
	ms := &Machines{
		byName:     make(map[string]*machine, len(cfgs)),
		byClientID: make(map[string]*machine, len(cfgs)),
	}
	var errs []error
	staticOwner := make(map[[sha256.Size]byte]string)
	paramCount := make(map[params]int)
	for i, c := range cfgs {
		where := fmt.Sprintf("machineIdentities[%d]", i)
		if c.Name != "" {
			where += fmt.Sprintf(" (%s)", c.Name)
		}
		fail := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, a...)))
		}
		m := &machine{name: c.Name}

		switch _, err := policy.MachineIdentity(c.Name); {
		case c.Name == "":
			fail("name is required")
		case err != nil:
			fail("%v", err)
		case ms.byName[c.Name] != nil:
			fail("duplicate name %q", c.Name)
		default:
			ms.byName[c.Name] = m
		}

		switch id, ok := canonicalUUID(c.ClientID); {
		case c.ClientID == "":
			fail("clientId is required (pkid identity add makes one)")
		case !ok:
			fail("clientId %q is not a UUID (8-4-4-4-12 hex digits)", c.ClientID)
		case ms.byClientID[id] != nil:
			fail("clientId %s is also the clientId of %q", id, ms.byClientID[id].name)
		default:
			m.clientID = id
			ms.byClientID[id] = m
		}

		if c.ClientSecretHash == "" {
			fail("clientSecretHash is required (pkid identity add makes one)")
		} else if h, err := parseArgonHash(c.ClientSecretHash); err != nil {
			fail("clientSecretHash: %v", err)
		} else if err := checkCost(h); err != nil {
			fail("clientSecretHash: %v", err)
		} else {
			m.hash = h
			paramCount[h.params()]++
		}

		m.ttl = DefaultAccessTokenTTL
		ttlOK := parseTTL(c.AccessTokenTTL, "accessTokenTTL", &m.ttl, fail)
		if ttlOK && m.ttl < MinAccessTokenTTL {
			fail("accessTokenTTL %q is under %s: Infisical's CLI agent exits on a token of 30 s or less", c.AccessTokenTTL, MinAccessTokenTTL)
			ttlOK = false
		}
		m.maxTTL = DefaultAccessTokenMaxTTL
		maxOK := parseTTL(c.AccessTokenMaxTTL, "accessTokenMaxTTL", &m.maxTTL, fail)
		if ttlOK && maxOK && m.maxTTL < m.ttl {
			ttlName := "accessTokenTTL"
			if c.AccessTokenTTL == "" {
				ttlName = "the default accessTokenTTL"
			}
			fail("accessTokenMaxTTL (%s) is shorter than %s (%s)", m.maxTTL, ttlName, m.ttl)
		}

		for j, s := range c.StaticTokens {
			sum, ok := parseSHA256Hex(s)
			if !ok {
				fail("staticTokens[%d] is not a SHA-256 in hex (64 hex digits; pkid identity token makes one)", j)
				continue
			}
			if owner, dup := staticOwner[sum]; dup {
				if owner == c.Name {
					fail("staticTokens[%d] is listed twice", j)
				} else {
					fail("staticTokens[%d] is also a static token of %q", j, owner)
				}
				continue
			}
			staticOwner[sum] = c.Name
			ms.static = append(ms.static, staticToken{sum: sum, machine: c.Name})
		}

		cred := sha256.Sum256([]byte("pkid credential\x00" + m.clientID + "\x00" + c.ClientSecretHash))
		m.credential = base64.RawURLEncoding.EncodeToString(cred[:12])
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("machine identities: %w", errors.Join(errs...))
	}

	decoy, err := newDecoy(paramCount)
	if err != nil {
		return nil, err
	}
	ms.decoy = decoy
	return ms, nil
}

// parseTTL parses a config duration into *d when it is set, reporting a
// problem through fail; it reports whether *d is usable.
func parseTTL(s, field string, d *time.Duration, fail func(string, ...any)) bool {
	if s == "" {
		return true
	}
	v, err := policy.ParseDuration(s)
	if err != nil {
		fail("%s: %v", field, err)
		return false
	}
	// expiresIn and the JWT's exp are whole seconds; a fraction would be
	// silently dropped from one and not the other.
	if v%time.Second != 0 {
		fail("%s %q is not a whole number of seconds", field, s)
		return false
	}
	*d = v
	return true
}

// parseSHA256Hex parses 64 hex digits, either case.
func parseSHA256Hex(s string) ([sha256.Size]byte, bool) {
	var sum [sha256.Size]byte
	if len(s) != 2*sha256.Size {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(s)); err != nil {
		return sum, false
	}
	return sum, true
}

// newDecoy makes the hash verified for unknown client ids, with the
// parameters most configured hashes use (HashSecret's when none is
// configured), so that an unknown id takes as long as a known one with the
// usual parameters.
func newDecoy(paramCount map[params]int) (argonHash, error) {
	best := params{defaultMemoryKiB, defaultTime, defaultThreads}
	bestN := 0
	for p, n := range paramCount {
		// Ties go to the cheaper parameters, so that the choice does not
		// depend on map order.
		if n > bestN || n == bestN && p.memory*p.time < best.memory*best.time {
			best, bestN = p, n
		}
	}
	h := argonHash{memory: best.memory, time: best.time, threads: best.threads,
		salt: make([]byte, saltBytes), key: make([]byte, keyBytes)}
	if _, err := rand.Read(h.salt); err != nil {
		return argonHash{}, fmt.Errorf("machine identities: making the unknown-id decoy: %w", err)
	}
	if _, err := rand.Read(h.key); err != nil {
		return argonHash{}, fmt.Errorf("machine identities: making the unknown-id decoy: %w", err)
	}
	return h, nil
}

// Names returns the configured machine identity names, sorted (for
// check-config: a profile naming machine:<x> that no entry defines).
func (ms *Machines) Names() []string {
	names := make([]string, 0, len(ms.byName))
	for n := range ms.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Has reports whether a machine identity of that name is configured.
func (ms *Machines) Has(name string) bool {
	_, ok := ms.byName[name]
	return ok
}

// lookupClient returns the machine with that client id, case-insensitively
// (UUIDs are case-insensitive, RFC 9562 §4).
func (ms *Machines) lookupClient(clientID string) *machine {
	id, ok := canonicalUUID(clientID)
	if !ok {
		return nil
	}
	return ms.byClientID[id]
}

// staticMachine returns the machine whose static token has SHA-256 sum. It
// compares against every configured hash in constant time and without
// stopping at a match, so that timing tells nothing about which hash, or how
// much of one, matched.
func (ms *Machines) staticMachine(sum [sha256.Size]byte) (string, bool) {
	found := -1
	for i := range ms.static {
		eq := subtle.ConstantTimeCompare(ms.static[i].sum[:], sum[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return "", false
	}
	return ms.static[found].machine, true
}
