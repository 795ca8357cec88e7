package goodkey

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
)

func newTestPolicy(t *testing.T, opts Options) *Policy {
	t.Helper()
	p, err := NewPolicy(opts)
	if err != nil {
		t.Fatalf("NewPolicy(%+v): %v", opts, err)
	}
	return p
}

// readRSA loads a public key from testdata. The files hold the public halves
// of keys made once with crypto/rsa.GenerateKey for these tests; loading
// them keeps the test fast and deterministic.
func readRSA(t testing.TB, name string) *rsa.PublicKey {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return pub.(*rsa.PublicKey)
}

func hexInt(t testing.TB, s string) *big.Int {
	t.Helper()
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		t.Fatalf("bad hex %q", s)
	}
	return n
}

func decInt(t *testing.T, s string) *big.Int {
	t.Helper()
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("bad decimal %q", s)
	}
	return n
}

func rsaKey(n *big.Int) *rsa.PublicKey { return &rsa.PublicKey{N: n, E: 65537} }

// offsetPrime returns base + k and fails the test unless it is prime. The
// offsets below were found once by walking up from base with ProbablyPrime;
// the test only confirms them, so it stays deterministic and fast.
func offsetPrime(t *testing.T, base *big.Int, k int64) *big.Int {
	t.Helper()
	p := new(big.Int).Add(base, big.NewInt(k))
	if !p.ProbablyPrime(1) {
		t.Fatalf("base + %d is not prime", k)
	}
	return p
}

// smallTimesLarge returns f·q sized 2048 bits, q = the first prime at or
// above floor(3·2^2046 / f), which sits at base + k.
func smallTimesLarge(t *testing.T, f, k int64) *big.Int {
	t.Helper()
	base := new(big.Int).Lsh(big.NewInt(3), 2046)
	base.Div(base, big.NewInt(f))
	n := new(big.Int).Mul(offsetPrime(t, base, k), big.NewInt(f))
	if n.BitLen() != 2048 {
		t.Fatalf("%d·q has %d bits", f, n.BitLen())
	}
	return n
}

// fermatPrimes returns the first two primes above 3·2^1022: 1024-bit primes
// 660 apart, whose product has 2048 bits — the shape of keys from the
// generators Böck found, which pick q as the next prime after p.
func fermatPrimes(t *testing.T) (p, q *big.Int) {
	t.Helper()
	base := new(big.Int).Lsh(big.NewInt(3), 1022)
	return offsetPrime(t, base, 1037), offsetPrime(t, base, 1697)
}

func genEC(t *testing.T, c elliptic.Curve) *ecdsa.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

// handEC builds an ecdsa.PublicKey from raw coordinates, as a hostile or
// broken parser could: crypto/ecdsa's own parsers refuse such points.
func handEC(c elliptic.Curve, x, y *big.Int) *ecdsa.PublicKey {
	return &ecdsa.PublicKey{Curve: c, X: x, Y: y}
}

func TestCheck(t *testing.T) {
	policy := newTestPolicy(t, Options{})
	good2048 := readRSA(t, "rsa2048.pub.pem")
	fp, fq := fermatPrimes(t)
	gx, gy := elliptic.P256().Params().Gx, elliptic.P256().Params().Gy
	p256 := elliptic.P256().Params().P
	plus := func(a, b *big.Int) *big.Int { return new(big.Int).Add(a, b) }

	cases := []struct {
		name string
		key  crypto.PublicKey
		want string // "" accepts
	}{
		{"good RSA 2048", good2048, ""},
		{"good RSA 3072", readRSA(t, "rsa3072.pub.pem"), ""},
		{"good RSA 4096", readRSA(t, "rsa4096.pub.pem"), ""},
		{"good P-256", genEC(t, elliptic.P256()), ""},
		{"good P-384", genEC(t, elliptic.P384()), ""},
		{"good P-521", genEC(t, elliptic.P521()), ""},
		{"P-256 generator is a valid point", handEC(elliptic.P256(), gx, gy), ""},

		{"exponent 3", &rsa.PublicKey{N: good2048.N, E: 3}, "RSA public exponent 3 is not 65537"},
		{"exponent 65539", &rsa.PublicKey{N: good2048.N, E: 65539}, "RSA public exponent 65539 is not 65537"},
		{"exponent 1", &rsa.PublicKey{N: good2048.N, E: 1}, "RSA public exponent 1 is not 65537"},
		{"1024-bit modulus", rsaKey(new(big.Int).Rsh(good2048.N, 1024)), "RSA modulus of 1024 bits is not 2048, 3072 or 4096 bits"},
		{"2047-bit modulus", rsaKey(new(big.Int).Rsh(good2048.N, 1)), "RSA modulus of 2047 bits is not 2048, 3072 or 4096 bits"},
		{"2056-bit modulus", rsaKey(new(big.Int).Lsh(good2048.N, 8)), "RSA modulus of 2056 bits is not 2048, 3072 or 4096 bits"},
		{"8192-bit modulus", rsaKey(new(big.Int).Lsh(good2048.N, 6144)), "RSA modulus of 8192 bits is not 2048, 3072 or 4096 bits"},
		{"no modulus", &rsa.PublicKey{E: 65537}, "RSA public key has no modulus"},
		{"negative modulus", rsaKey(new(big.Int).Neg(good2048.N)), "RSA public key has no modulus"},
		{"even modulus", rsaKey(new(big.Int).Add(good2048.N, big.NewInt(1))), "RSA modulus is even"},
		{"factor 751", rsaKey(smallTimesLarge(t, 751, 1096)), "RSA modulus has a small prime factor (751)"},
		{"factor 997 (below the default bound 1000)", rsaKey(smallTimesLarge(t, 997, 662)), "RSA modulus has a small prime factor (997)"},
		{"close primes", rsaKey(new(big.Int).Mul(fp, fq)), "RSA modulus can be factored by Fermat's method (its primes are too close)"},
		{"square of a prime", rsaKey(new(big.Int).Mul(fp, fp)), "RSA modulus can be factored by Fermat's method (its primes are too close)"},
		{"ROCA 2048 (crocs-muni mod03)", rsaKey(hexInt(t, rocaMod03)), "RSA key is vulnerable to ROCA (CVE-2017-15361)"},
		{"ROCA 4096 (crocs-muni mod09)", rsaKey(hexInt(t, rocaMod09)), "RSA key is vulnerable to ROCA (CVE-2017-15361)"},
		{"not ROCA (crocs-muni mod04)", rsaKey(hexInt(t, rocaMod04)), ""},

		{"P-256 point off the curve", handEC(elliptic.P256(), gx, plus(gy, big.NewInt(1))), "EC public key is not a point on P-256"},
		{"P-256 x not reduced", handEC(elliptic.P256(), plus(gx, p256), gy), "EC public key is not a point on P-256"},
		{"P-256 negative y", handEC(elliptic.P256(), gx, new(big.Int).Neg(gy)), "EC public key is not a point on P-256"},
		{"P-384 point off the curve", handEC(elliptic.P384(), elliptic.P384().Params().Gx, big.NewInt(7)), "EC public key is not a point on P-384"},
		{"P-521 point off the curve", handEC(elliptic.P521(), big.NewInt(1), big.NewInt(1)), "EC public key is not a point on P-521"},
		{"P-256 identity", handEC(elliptic.P256(), big.NewInt(0), big.NewInt(0)), "EC public key is the identity (point at infinity) of P-256"},
		{"P-384 identity", handEC(elliptic.P384(), big.NewInt(0), big.NewInt(0)), "EC public key is the identity (point at infinity) of P-384"},
		{"no coordinates", handEC(elliptic.P256(), nil, nil), "EC public key has no point"},
		{"P-224", genEC(t, elliptic.P224()), "EC curve P-224 is not P-256, P-384 or P-521"},
		{"generic P-256 parameters", handEC(elliptic.P256().Params(), gx, gy), "EC curve P-256 is not the standard library's P-256"},
		{"no curve", &ecdsa.PublicKey{X: gx, Y: gy}, "EC public key has no curve"},

		{"ed25519", ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)), "unsupported key type ed25519.PublicKey"},
		{"X25519", mustX25519(t), "unsupported key type *ecdh.PublicKey"},
		{"RSA by value", *good2048, "unsupported key type rsa.PublicKey"},
		{"nil interface", nil, "public key is missing"},
		{"nil *rsa.PublicKey", (*rsa.PublicKey)(nil), "RSA public key is missing"},
		{"nil *ecdsa.PublicKey", (*ecdsa.PublicKey)(nil), "EC public key is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := policy.Check(tc.key)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check refused a good key: %v", err)
				}
				return
			}
			var wk *WeakKeyError
			if !errors.As(err, &wk) {
				t.Fatalf("Check = %v (%T), want *WeakKeyError %q", err, err, tc.want)
			}
			if wk.Reason != tc.want || err.Error() != tc.want {
				t.Fatalf("Check = %q, want %q", wk.Reason, tc.want)
			}
		})
	}
}

func mustX25519(t *testing.T) *ecdh.PublicKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// TestSmallPrimesBound shows what the option changes: 1009 is the first
// prime above the default bound, so a factor 1009 is only caught when the
// bound is raised past it.
func TestSmallPrimesBound(t *testing.T) {
	n := smallTimesLarge(t, 1009, 36)
	cases := []struct {
		name  string
		bound int
		want  string
	}{
		{"default bound 1000 misses 1009", 0, ""},
		{"bound 1009 excludes 1009 itself", 1009, ""},
		{"bound 1010 finds 1009", 1010, "RSA modulus has a small prime factor (1009)"},
		{"largest bound finds 1009", MaxSmallPrimes, "RSA modulus has a small prime factor (1009)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := newTestPolicy(t, Options{SmallPrimes: tc.bound}).Check(rsaKey(n))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("Check = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewPolicyOptions(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want []string // substrings of the error; nil accepts
	}{
		{"defaults", Options{}, nil},
		{"BR floor", Options{SmallPrimes: MinSmallPrimes, FermatRounds: MinFermatRounds}, nil},
		{"ceilings", Options{SmallPrimes: MaxSmallPrimes, FermatRounds: MaxFermatRounds}, nil},
		{"too few primes", Options{SmallPrimes: 751}, []string{"SmallPrimes 751"}},
		{"negative primes", Options{SmallPrimes: -1}, []string{"SmallPrimes -1"}},
		{"too many primes", Options{SmallPrimes: MaxSmallPrimes + 1}, []string{"SmallPrimes 65537"}},
		{"too few rounds", Options{FermatRounds: 99}, []string{"FermatRounds 99"}},
		{"too many rounds", Options{FermatRounds: MaxFermatRounds + 1}, []string{"FermatRounds 1048577"}},
		{"both reported at once", Options{SmallPrimes: 10, FermatRounds: 10}, []string{"SmallPrimes 10", "FermatRounds 10"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPolicy(tc.opts)
			if tc.want == nil {
				if err != nil || p == nil {
					t.Fatalf("NewPolicy = %v, %v", p, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewPolicy(%+v) accepted", tc.opts)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	p := newTestPolicy(t, Options{})
	if p.fermatRounds != DefaultFermatRounds {
		t.Errorf("fermatRounds = %d, want %d", p.fermatRounds, DefaultFermatRounds)
	}
	// π(1000) = 168, the last prime below 1000 is 997.
	if len(p.smallPrimes) != 168 || p.smallPrimes[0] != 2 || p.smallPrimes[167] != 997 {
		t.Errorf("small primes: %d of them, %d … %d", len(p.smallPrimes), p.smallPrimes[0], p.smallPrimes[len(p.smallPrimes)-1])
	}
}

func TestZeroPolicy(t *testing.T) {
	key := readRSA(t, "rsa2048.pub.pem")
	for name, p := range map[string]*Policy{"zero": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			err := p.Check(key)
			var wk *WeakKeyError
			if err == nil || errors.As(err, &wk) {
				t.Fatalf("Check on a %s Policy = %v, want a non-WeakKeyError error", name, err)
			}
		})
	}
}

func TestKeyAlgorithm(t *testing.T) {
	cases := []struct {
		name string
		key  crypto.PublicKey
		want string
		err  string
	}{
		{"RSA 2048", readRSA(t, "rsa2048.pub.pem"), "RSA_2048", ""},
		{"RSA 3072", readRSA(t, "rsa3072.pub.pem"), "RSA_3072", ""},
		{"RSA 4096", readRSA(t, "rsa4096.pub.pem"), "RSA_4096", ""},
		{"P-256", genEC(t, elliptic.P256()), "EC_prime256v1", ""},
		{"P-384", genEC(t, elliptic.P384()), "EC_secp384r1", ""},
		{"P-521", genEC(t, elliptic.P521()), "EC_secp521r1", ""},
		{"RSA 2047", rsaKey(new(big.Int).Lsh(big.NewInt(1), 2046)), "", "RSA modulus of 2047 bits is not 2048, 3072 or 4096 bits"},
		{"RSA without modulus", &rsa.PublicKey{E: 65537}, "", "RSA public key has no modulus"},
		{"P-224", genEC(t, elliptic.P224()), "", "EC curve P-224 is not P-256, P-384 or P-521"},
		{"ed25519", ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)), "", "unsupported key type ed25519.PublicKey"},
		{"nil", nil, "", "public key is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := KeyAlgorithm(tc.key)
			if tc.err != "" {
				var wk *WeakKeyError
				if !errors.As(err, &wk) || wk.Reason != tc.err {
					t.Fatalf("KeyAlgorithm = %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("KeyAlgorithm = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
