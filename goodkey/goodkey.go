package goodkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"
)

// Defaults and bounds of [Options].
const (
	// DefaultSmallPrimes is the default trial-division bound. The Baseline
	// Requirements §6.1.6 (after NIST SP 800-89 §5.3.3) ask for no factor
	// below 752; pkid rounds up to 1000, which costs nothing measurable (one
	// GCD with a product of 168 primes instead of 133) and leaves a margin.
	DefaultSmallPrimes = 1000
	// MinSmallPrimes is the floor of Options.SmallPrimes: the BR §6.1.6 bound.
	MinSmallPrimes = 752
	// MaxSmallPrimes caps the trial-division bound; beyond it the product of
	// the primes grows past 90 000 bits and the check stops being cheap,
	// while no key generator produces factors that size by accident.
	MaxSmallPrimes = 1 << 16

	// DefaultFermatRounds is the default number of Fermat steps. Every
	// vulnerable key Böck found in the wild factors within the first few
	// steps; Boulder uses 100 as its floor.
	DefaultFermatRounds = 100
	// MinFermatRounds is the floor of Options.FermatRounds.
	MinFermatRounds = 100
	// MaxFermatRounds caps the work one CSR can cost: 2^20 steps on a
	// 4096-bit modulus take about a third of a second.
	MaxFermatRounds = 1 << 20
)

// rsaExponent is the only RSA public exponent pkid accepts. BR §6.1.6 asks
// for an odd exponent of at least 3 and recommends 2^16+1 or more; pkid's own
// leaf keys use 65537 (§1), and accepting one value keeps the key space — and
// the test matrix — small (Boulder does the same).
const rsaExponent = 65537

// Options configures [NewPolicy]. The zero value selects the defaults.
type Options struct {
	// SmallPrimes is the trial-division bound: a modulus divisible by any
	// prime below it is refused. 0 means DefaultSmallPrimes; otherwise it
	// must lie in [MinSmallPrimes, MaxSmallPrimes].
	SmallPrimes int
	// FermatRounds is how many steps of Fermat's method are tried, starting
	// at ceil(sqrt(N)). 0 means DefaultFermatRounds; otherwise it must lie
	// in [MinFermatRounds, MaxFermatRounds].
	FermatRounds int
}

// Policy says which keys pkid accepts; the zero value is invalid — use
// [NewPolicy]. A Policy is immutable and safe for concurrent use.
type Policy struct {
	// smallPrimes are the primes below the trial-division bound, ascending;
	// smallProduct is their product, so one GCD tests them all.
	smallPrimes  []int64
	smallProduct *big.Int
	fermatRounds int
	roca         *rocaTable
}

// WeakKeyError is a refusal of a key. Its text is safe to show a client and
// names the weakness.
type WeakKeyError struct {
	Reason string
}

func (e *WeakKeyError) Error() string { return e.Reason }

func weak(format string, args ...any) *WeakKeyError {
	return &WeakKeyError{Reason: fmt.Sprintf(format, args...)}
}

// NewPolicy validates opts and builds the tables the checks need. It reports
// every problem with opts at once.
func NewPolicy(opts Options) (*Policy, error) {
	var problems []error
	bound := opts.SmallPrimes
	if bound == 0 {
		bound = DefaultSmallPrimes
	} else if bound < MinSmallPrimes || bound > MaxSmallPrimes {
		problems = append(problems, fmt.Errorf("SmallPrimes %d is outside [%d, %d] (BR §6.1.6 asks for no factor below %d)",
			opts.SmallPrimes, MinSmallPrimes, MaxSmallPrimes, MinSmallPrimes))
	}
	rounds := opts.FermatRounds
	if rounds == 0 {
		rounds = DefaultFermatRounds
	} else if rounds < MinFermatRounds || rounds > MaxFermatRounds {
		problems = append(problems, fmt.Errorf("FermatRounds %d is outside [%d, %d]",
			opts.FermatRounds, MinFermatRounds, MaxFermatRounds))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("goodkey: invalid options: %w", errors.Join(problems...))
	}

	primes := primesBelow(bound)
	product := big.NewInt(1)
	for _, p := range primes {
		product.Mul(product, big.NewInt(p))
	}
	roca, err := newROCATable()
	if err != nil {
		return nil, fmt.Errorf("goodkey: building the ROCA table: %w", err)
	}
	return &Policy{
		smallPrimes:  primes,
		smallProduct: product,
		fermatRounds: rounds,
		roca:         roca,
	}, nil
}

// Check returns nil when pkid may certify pub, a [*WeakKeyError] naming the
// weakness when it may not, and another error only when p was not built by
// [NewPolicy].
func (p *Policy) Check(pub crypto.PublicKey) error {
	if p == nil || p.smallProduct == nil || p.roca == nil {
		return errors.New("goodkey: Check on a Policy not built by NewPolicy")
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil {
			return weak("RSA public key is missing")
		}
		return p.checkRSA(k)
	case *ecdsa.PublicKey:
		if k == nil {
			return weak("EC public key is missing")
		}
		return checkEC(k)
	case nil:
		return weak("public key is missing")
	default:
		return weak("unsupported key type %T", pub)
	}
}

// KeyAlgorithm maps pub to pkid's API name for its algorithm (DESIGN.md §1):
// RSA_2048, RSA_3072, RSA_4096, EC_prime256v1, EC_secp384r1 or EC_secp521r1.
// It looks only at the type, size and curve; [Policy.Check] judges the key.
// Anything else is a [*WeakKeyError] with the text Check would give.
func KeyAlgorithm(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "", weak("RSA public key has no modulus")
		}
		switch bits := k.N.BitLen(); bits {
		case 2048:
			return "RSA_2048", nil
		case 3072:
			return "RSA_3072", nil
		case 4096:
			return "RSA_4096", nil
		default:
			return "", rsaSizeError(bits)
		}
	case *ecdsa.PublicKey:
		if k == nil {
			return "", weak("EC public key is missing")
		}
		c, err := curveOf(k)
		if err != nil {
			return "", err
		}
		return c.algorithm, nil
	case nil:
		return "", weak("public key is missing")
	default:
		return "", weak("unsupported key type %T", pub)
	}
}

func rsaSizeError(bits int) *WeakKeyError {
	return weak("RSA modulus of %d bits is not 2048, 3072 or 4096 bits", bits)
}

// curve is one of the curves pkid accepts, with its names.
type curve struct {
	name      string // NIST name, as in messages: "P-256"
	algorithm string // pkid's API name: "EC_prime256v1"
}

// curveOf identifies k's curve by the standard library's singletons: a
// caller-built Curve with the same name but other parameters is refused.
func curveOf(k *ecdsa.PublicKey) (curve, error) {
	switch k.Curve {
	case elliptic.P256():
		return curve{"P-256", "EC_prime256v1"}, nil
	case elliptic.P384():
		return curve{"P-384", "EC_secp384r1"}, nil
	case elliptic.P521():
		return curve{"P-521", "EC_secp521r1"}, nil
	case nil:
		return curve{}, weak("EC public key has no curve")
	}
	name := fmt.Sprintf("%T", k.Curve)
	if params := k.Curve.Params(); params != nil && params.Name != "" {
		name = params.Name
	}
	switch name {
	case "P-256", "P-384", "P-521":
		// e.g. elliptic.P256().Params(): the generic, variable-time code,
		// or a look-alike with other parameters.
		return curve{}, weak("EC curve %s is not the standard library's %s", name, name)
	}
	return curve{}, weak("EC curve %s is not P-256, P-384 or P-521", name)
}
