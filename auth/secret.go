package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// The parameters HashSecret uses: OWASP's first argon2id option (m=19 MiB,
// t=2, p=1; OWASP Password Storage Cheat Sheet). RFC 9106 §4's second
// recommended option (m=64 MiB, t=3, p=4) was measured at about 210 ms on one
// core of the reference machine, four times the ~50 ms budget a login may
// spend; its four lanes only help when four cores are free, and a CA daemon's
// cores belong to signing. m=19 MiB, t=2, p=1 verifies in about 39 ms on one
// core and takes 19 MiB per concurrent verification, which the login gate
// bounds (LoginLimits.Concurrency).
//
// The secrets hashed here are machine-generated (NewClientCredentials: 256
// bits from crypto/rand), so the hash is not what stands between a leaked
// config file and the secret — 256 bits do. It is there so that the config
// file holds a verifier rather than the credential, and so that an
// operator-chosen, weaker secret still gets a memory-hard hash.
const (
	defaultMemoryKiB = 19 * 1024
	defaultTime      = 2
	defaultThreads   = 1
	saltBytes        = 16 // RFC 9106 §3.1: 128 bits are recommended
	keyBytes         = 32
)

// Bounds on the parameters of a configured clientSecretHash. The ceiling
// keeps a typo (m=4194304) from turning every login into a 4 GiB allocation;
// the floor refuses hashes weaker than OWASP's weakest listed argon2id option
// (m=7 MiB with t=5; every listed option has m·t ≥ 35840 KiB).
const (
	minMemoryKiB      = 7 * 1024
	minMemoryTimeKiB  = 35840
	maxMemoryKiB      = 256 * 1024
	maxTime           = 16
	maxThreads        = 16
	minSaltBytes      = 8 // RFC 9106 §3.1: at least 8 bytes
	maxSaltBytes      = 64
	minKeyBytes       = 16
	maxKeyBytes       = 64
	argon2Version     = 19 // 0x13, the version of RFC 9106
	secretRandomBytes = 32
	tokenRandomBytes  = 32
)

// staticTokenPrefix marks tokens made by NewStaticToken, so that a secret
// scanner (or a person reading a log that should not have had one) can tell
// what leaked. Nothing depends on it: Authenticate accepts any token whose
// SHA-256 is configured.
const staticTokenPrefix = "pkid_st_"

// argonHash is a parsed argon2id PHC string.
type argonHash struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// params is the cost of verifying against h, comparable with ==.
type params struct {
	memory  uint32
	time    uint32
	threads uint8
}

func (h argonHash) params() params { return params{h.memory, h.time, h.threads} }

// phcB64 is the PHC string format's base64: standard alphabet, no padding.
// Strict, so that one hash has exactly one spelling.
var phcB64 = base64.RawStdEncoding.Strict()

// String is the PHC form, $argon2id$v=19$m=…,t=…,p=…$salt$hash, exactly as
// the reference implementation encodes it.
func (h argonHash) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2Version, h.memory, h.time, h.threads, phcB64.EncodeToString(h.salt), phcB64.EncodeToString(h.key))
}

// verify runs argon2id over secret with h's parameters and salt and compares
// the result with h's key in constant time.
func (h argonHash) verify(secret string) bool {
	got := argon2.IDKey([]byte(secret), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// errBadHash is the one message for a clientSecretHash that does not parse:
// the hash is a verifier of a credential and is never echoed back.
var errBadHash = errors.New("not an argon2id PHC string ($argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>, as made by pkid identity add)")

// parseArgonHash parses the reference encoding of an argon2id hash: the
// version, then m, t and p in that order, unpadded standard base64. It checks
// syntax and the limits of the algorithm only; checkCost applies pkid's
// bounds.
func parseArgonHash(s string) (argonHash, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return argonHash{}, errBadHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2Version) {
		return argonHash{}, fmt.Errorf("argon2id version: want v=%d (RFC 9106)", argon2Version)
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return argonHash{}, errBadHash
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(kv[i], name+"=")
		if !ok || v == "" || (len(v) > 1 && v[0] == '0') {
			return argonHash{}, errBadHash
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return argonHash{}, errBadHash
		}
		vals[i] = n
	}
	h := argonHash{memory: uint32(vals[0]), time: uint32(vals[1])}
	if vals[2] < 1 || vals[2] > 255 || h.time < 1 || uint64(h.memory) < 8*vals[2] {
		// RFC 9106 §3.1: p in 1..2^24-1 (x/crypto/argon2 takes a uint8),
		// t ≥ 1, m ≥ 8p.
		return argonHash{}, errors.New("argon2id parameters out of range: want p in 1..255, t ≥ 1 and m ≥ 8·p")
	}
	h.threads = uint8(vals[2])
	var err error
	if h.salt, err = phcB64.DecodeString(parts[4]); err != nil {
		return argonHash{}, errBadHash
	}
	if h.key, err = phcB64.DecodeString(parts[5]); err != nil {
		return argonHash{}, errBadHash
	}
	return h, nil
}

// checkCost applies pkid's bounds to a configured hash: not weaker than
// OWASP's minimum, not so expensive that logins become a denial of service.
func checkCost(h argonHash) error {
	var problems []string
	switch {
	case h.memory > maxMemoryKiB:
		problems = append(problems, fmt.Sprintf("m=%d KiB is over pkid's ceiling of %d KiB (every login would allocate it)", h.memory, maxMemoryKiB))
	case h.memory < minMemoryKiB || uint64(h.memory)*uint64(h.time) < minMemoryTimeKiB:
		problems = append(problems, fmt.Sprintf("m=%d,t=%d is weaker than OWASP's minimum (m ≥ %d KiB and m·t ≥ %d KiB, e.g. m=19456,t=2)", h.memory, h.time, minMemoryKiB, minMemoryTimeKiB))
	}
	if h.time > maxTime {
		problems = append(problems, fmt.Sprintf("t=%d is over pkid's ceiling of %d", h.time, maxTime))
	}
	if h.threads > maxThreads {
		problems = append(problems, fmt.Sprintf("p=%d is over pkid's ceiling of %d", h.threads, maxThreads))
	}
	if len(h.salt) < minSaltBytes || len(h.salt) > maxSaltBytes {
		problems = append(problems, fmt.Sprintf("salt of %d bytes, want %d..%d", len(h.salt), minSaltBytes, maxSaltBytes))
	}
	if len(h.key) < minKeyBytes || len(h.key) > maxKeyBytes {
		problems = append(problems, fmt.Sprintf("hash of %d bytes, want %d..%d", len(h.key), minKeyBytes, maxKeyBytes))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// HashSecret makes the clientSecretHash of a machine identity's client
// secret: argon2id with m=19456 KiB, t=2, p=1, a 16-byte random salt and a
// 32-byte output, in the PHC string format.
func HashSecret(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("hashing a client secret: the secret is empty")
	}
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hashing a client secret: reading a salt: %w", err)
	}
	h := argonHash{memory: defaultMemoryKiB, time: defaultTime, threads: defaultThreads, salt: salt}
	h.key = argon2.IDKey([]byte(secret), h.salt, h.time, h.memory, h.threads, keyBytes)
	return h.String(), nil
}

// NewClientCredentials returns a new client id (a random UUID, version 4)
// and client secret (256 bits from crypto/rand, 64 lowercase hex digits:
// hex survives shells, YAML, environment variables and form encoding
// unquoted), for `pkid identity add`. Store only HashSecret(secret).
func NewClientCredentials() (clientID, secret string, err error) {
	var b [16 + secretRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("making client credentials: %w", err)
	}
	return formatUUIDv4(b[:16]), hex.EncodeToString(b[16:]), nil
}

// NewStaticToken returns a new static token ("token auth": the client sends
// it as the Bearer directly, as Terraform's auth.token does) and the SHA-256
// hex that goes into staticTokens, for `pkid identity token`. The token is
// "pkid_st_" and 256 bits from crypto/rand in unpadded base64url; being
// random, it needs no slow hash, and a fast one lets Authenticate check it
// on every request.
func NewStaticToken() (token, hash string, err error) {
	var b [tokenRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("making a static token: %w", err)
	}
	token = staticTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:]), nil
}

// formatUUIDv4 sets the version (4) and variant (RFC 9562 §4.1) bits of 16
// random bytes and renders them in the canonical 8-4-4-4-12 form.
func formatUUIDv4(b []byte) string {
	var u [16]byte
	copy(u[:], b)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// canonicalUUID returns s in lower case if it is a UUID in the 8-4-4-4-12
// hex form (any version: an operator may bring ids from elsewhere), and
// false otherwise.
func canonicalUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return "", false
			}
		}
	}
	return string(b), true
}
