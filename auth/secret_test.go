package auth

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestHashSecretRoundTrip(t *testing.T) {
	const secret = "8d3c0f6e2a41b7c95e1d0a3f6b2c4e7a9d1f3b5c7e9a0b2d4f6a8c0e2b4d6f8a"
	h, err := HashSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Fatalf("HashSecret = %q, want $argon2id$v=19$m=19456,t=2,p=1$<16-byte salt>$<32-byte hash>", h)
	}
	parsed, err := parseArgonHash(h)
	if err != nil {
		t.Fatalf("parseArgonHash(HashSecret()) = %v", err)
	}
	if err := checkCost(parsed); err != nil {
		t.Fatalf("HashSecret's own parameters fail checkCost: %v", err)
	}
	if parsed.String() != h {
		t.Errorf("String() = %q, want the input %q back", parsed.String(), h)
	}
	tests := []struct {
		name   string
		secret string
		want   bool
	}{
		{"the secret", secret, true},
		{"another secret", strings.Repeat("0", 64), false},
		{"one character off", secret[:63] + "b", false},
		{"a prefix", secret[:32], false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parsed.verify(tc.secret); got != tc.want {
				t.Errorf("verify = %v, want %v", got, tc.want)
			}
		})
	}

	again, err := HashSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if again == h {
		t.Error("two hashes of one secret are equal: the salt is not random")
	}
	if _, err := HashSecret(""); err == nil {
		t.Error("HashSecret(\"\") succeeded, want an error")
	}
}

// TestArgon2idVectors checks the PHC parsing and argon2id against the
// reference implementation's vectors.
func TestArgon2idVectors(t *testing.T) {
	f, err := os.Open("testdata/argon2id-vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			t.Fatalf("bad vector line %q", line)
		}
		password, phc, weak := fields[0], fields[1], len(fields) > 2 && fields[2] == "weak"
		n++
		t.Run(phc, func(t *testing.T) {
			h, err := parseArgonHash(phc)
			if err != nil {
				t.Fatalf("parseArgonHash = %v", err)
			}
			if h.String() != phc {
				t.Errorf("String() = %q, want %q", h.String(), phc)
			}
			if !h.verify(password) {
				t.Errorf("verify(%q) = false, want true", password)
			}
			if h.verify(password + "x") {
				t.Errorf("verify(%q) = true, want false", password+"x")
			}
			if err := checkCost(h); (err != nil) != weak {
				t.Errorf("checkCost = %v, want an error: %v", err, weak)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no vectors read")
	}
}

// TestArgon2idKnownKey pins the raw output of the reference vector, so that
// a PHC round trip that agrees with itself cannot hide a wrong key.
func TestArgon2idKnownKey(t *testing.T) {
	h, err := parseArgonHash("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	if err != nil {
		t.Fatal(err)
	}
	const want = "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7"
	if got := hex.EncodeToString(h.key); got != want {
		t.Errorf("key = %s, want %s", got, want)
	}
	if string(h.salt) != "somesalt" || h.memory != 65536 || h.time != 2 || h.threads != 1 {
		t.Errorf("parsed %+v, want m=65536 t=2 p=1 salt somesalt", h.params())
	}
}

func TestParseArgonHashRefuses(t *testing.T) {
	const ok = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	if _, err := parseArgonHash(ok); err != nil {
		t.Fatalf("the reference vector: %v", err)
	}
	tests := []struct {
		name, hash string
	}{
		{"empty", ""},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ012"},
		{"argon2i", strings.Replace(ok, "argon2id", "argon2i", 1)},
		{"argon2d", strings.Replace(ok, "argon2id", "argon2d", 1)},
		{"no version", "$argon2id$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"},
		{"version 16", strings.Replace(ok, "v=19", "v=16", 1)},
		{"parameters out of order", strings.Replace(ok, "m=65536,t=2,p=1", "t=2,m=65536,p=1", 1)},
		{"missing parameter", strings.Replace(ok, "m=65536,t=2,p=1", "m=65536,t=2", 1)},
		{"extra parameter", strings.Replace(ok, "p=1", "p=1,keyid=x", 1)},
		{"leading zero", strings.Replace(ok, "t=2", "t=02", 1)},
		{"negative", strings.Replace(ok, "t=2", "t=-2", 1)},
		{"overflow", strings.Replace(ok, "m=65536", "m=99999999999999", 1)},
		{"t=0", strings.Replace(ok, "t=2", "t=0", 1)},
		{"p=0", strings.Replace(ok, "p=1", "p=0", 1)},
		{"p=256", strings.Replace(ok, "p=1", "p=256", 1)},
		{"m < 8p", "$argon2id$v=19$m=8,t=2,p=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"},
		{"padded base64", strings.Replace(ok, "c29tZXNhbHQ", "c29tZXNhbHQ=", 1)},
		{"base64url", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$C4TWUs9rDEvq7w3-J4umqA32aWKB1-DSiRuBfYxFj94"},
		{"non-canonical base64", strings.Replace(ok, "c29tZXNhbHQ", "c29tZXNhbHR", 1)},
		{"missing hash", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ"},
		{"trailing field", ok + "$"},
		{"surrounding space", " " + ok},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseArgonHash(tc.hash); err == nil {
				t.Errorf("parseArgonHash(%q) succeeded, want an error", tc.hash)
			}
		})
	}
}

func TestCheckCost(t *testing.T) {
	salt, key := make([]byte, 16), make([]byte, 32)
	tests := []struct {
		name string
		h    argonHash
		ok   bool
	}{
		{"HashSecret's", argonHash{19456, 2, 1, salt, key}, true},
		{"RFC 9106 second option", argonHash{65536, 3, 4, salt, key}, true},
		{"OWASP m=7 MiB t=5", argonHash{7168, 5, 1, salt, key}, true},
		{"OWASP m=46 MiB t=1", argonHash{47104, 1, 1, salt, key}, true},
		{"19 MiB with t=1", argonHash{19456, 1, 1, salt, key}, false},
		{"under 7 MiB", argonHash{7167, 16, 1, salt, key}, false},
		{"256 MiB ceiling", argonHash{262144, 1, 1, salt, key}, true},
		{"over 256 MiB", argonHash{262145, 1, 1, salt, key}, false},
		{"t over 16", argonHash{19456, 17, 1, salt, key}, false},
		{"p over 16", argonHash{19456, 2, 17, salt, key}, false},
		{"7-byte salt", argonHash{19456, 2, 1, make([]byte, 7), key}, false},
		{"8-byte salt", argonHash{19456, 2, 1, make([]byte, 8), key}, true},
		{"15-byte key", argonHash{19456, 2, 1, salt, make([]byte, 15)}, false},
		{"65-byte key", argonHash{19456, 2, 1, salt, make([]byte, 65)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkCost(tc.h); (err == nil) != tc.ok {
				t.Errorf("checkCost = %v, want ok: %v", err, tc.ok)
			}
		})
	}
}

func TestNewClientCredentials(t *testing.T) {
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 8 {
		id, secret, err := NewClientCredentials()
		if err != nil {
			t.Fatal(err)
		}
		if !uuid4.MatchString(id) {
			t.Errorf("client id %q is not a lower-case UUID v4", id)
		}
		if _, ok := canonicalUUID(id); !ok {
			t.Errorf("canonicalUUID(%q) refuses a client id it made", id)
		}
		if b, err := hex.DecodeString(secret); err != nil || len(b) != 32 {
			t.Errorf("secret is not 64 hex digits (256 bits): %d characters, %v", len(secret), err)
		}
		if seen[id] || seen[secret] {
			t.Error("NewClientCredentials repeated itself")
		}
		seen[id], seen[secret] = true, true
	}
}

func TestNewStaticToken(t *testing.T) {
	token, hash, err := NewStaticToken()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^pkid_st_[A-Za-z0-9_-]{43}$`).MatchString(token) {
		t.Errorf("token %q: want pkid_st_ and 43 base64url characters (256 bits)", token)
	}
	sum := sha256.Sum256([]byte(token))
	if hash != hex.EncodeToString(sum[:]) {
		t.Errorf("hash %s is not the token's SHA-256", hash)
	}
	if strings.Count(token, ".") != 0 {
		t.Error("a static token must not look like a JWT")
	}
	other, _, err := NewStaticToken()
	if err != nil {
		t.Fatal(err)
	}
	if other == token {
		t.Error("two static tokens are equal")
	}
}

func TestCanonicalUUID(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"lower", "3c90c3cc-0d44-4b50-8888-8dd25736052a", "3c90c3cc-0d44-4b50-8888-8dd25736052a", true},
		{"upper", "3C90C3CC-0D44-4B50-8888-8DD25736052A", "3c90c3cc-0d44-4b50-8888-8dd25736052a", true},
		{"version 1", "6f1c5b1e-0000-1000-8000-000000000001", "6f1c5b1e-0000-1000-8000-000000000001", true},
		{"braces", "{3c90c3cc-0d44-4b50-8888-8dd25736052a}", "", false},
		{"no hyphens", "3c90c3cc0d444b5088888dd25736052a", "", false},
		{"urn", "urn:uuid:3c90c3cc-0d44-4b50-8888-8dd25736052a", "", false},
		{"not hex", "3c90c3cc-0d44-4b50-8888-8dd25736052g", "", false},
		{"misplaced hyphen", "3c90c3c-c0d44-4b50-8888-8dd25736052a", "", false},
		{"empty", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := canonicalUUID(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("canonicalUUID(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestVerifyCost measures one verification with HashSecret's parameters
// against the ~50 ms budget. It is a report, not a gate (a loaded machine or
// the race detector is slower), unless PKID_AUTH_STRICT_COST is set.
func TestVerifyCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measures argon2")
	}
	h, err := HashSecret("secret")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parseArgonHash(h)
	if err != nil {
		t.Fatal(err)
	}
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		parsed.verify("secret")
		best = min(best, time.Since(start))
	}
	t.Logf("argon2id m=19456 KiB, t=2, p=1: one verification takes %v (best of 3)", best)
	if os.Getenv("PKID_AUTH_STRICT_COST") != "" && best > 60*time.Millisecond {
		t.Errorf("verification takes %v, over the ~50 ms budget", best)
	}
}

func BenchmarkVerify(b *testing.B) {
	h, err := HashSecret("secret")
	if err != nil {
		b.Fatal(err)
	}
	parsed, err := parseArgonHash(h)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		parsed.verify("secret")
	}
}
