package goodkey

import (
	"crypto/rsa"
	"math/big"
)

// checkRSA applies the RSA rules in the order the refusals are documented:
// exponent, size, parity, small factors, Fermat, ROCA. The cheap structural
// checks come first so that the arithmetic ones only ever see a modulus of
// an accepted size.
func (p *Policy) checkRSA(k *rsa.PublicKey) error {
	if k.N == nil || k.N.Sign() <= 0 {
		return weak("RSA public key has no modulus")
	}
	if k.E != rsaExponent {
		return weak("RSA public exponent %d is not %d", k.E, rsaExponent)
	}
	// BR §6.1.5 sets the floor at 2048 bits; pkid's API names exactly three
	// sizes (§1), and a CSR key must map to one of them (§11).
	switch bits := k.N.BitLen(); bits {
	case 2048, 3072, 4096:
	default:
		return rsaSizeError(bits)
	}
	// BR §6.1.6: "an odd number". An even modulus has the factor 2, which
	// the small-prime check would also find, but this names it plainly.
	if k.N.Bit(0) == 0 {
		return weak("RSA modulus is even")
	}
	if f := p.smallFactor(k.N); f != 0 {
		return weak("RSA modulus has a small prime factor (%d)", f)
	}
	if _, _, ok := fermatFactor(k.N, p.fermatRounds); ok {
		return weak("RSA modulus can be factored by Fermat's method (its primes are too close)")
	}
	if p.roca.fingerprinted(k.N) {
		return weak("RSA key is vulnerable to ROCA (CVE-2017-15361)")
	}
	return nil
}

// smallFactor returns the smallest prime below the policy's bound that
// divides n, or 0 when there is none. One GCD with the product of all the
// primes answers whether there is any (Boulder's approach); only then are
// the primes tried one by one, to name the factor in the refusal.
//
// It runs in time that depends on n: n is public.
func (p *Policy) smallFactor(n *big.Int) int64 {
	var g big.Int
	g.GCD(nil, nil, n, p.smallProduct)
	if g.Cmp(big.NewInt(1)) == 0 {
		return 0
	}
	var r, d big.Int
	for _, q := range p.smallPrimes {
		if r.Mod(&g, d.SetInt64(q)).Sign() == 0 {
			return q
		}
	}
	return 0 // unreachable: g > 1 is a product of some of the primes
}

// fermatFactor tries rounds steps of Fermat's method on the odd number n and
// returns the factors it finds. Every odd n = a² − b² = (a+b)(a−b); when the
// two primes of an RSA modulus are close, a = (p+q)/2 is just above √n, so
// walking a up from ceil(√n) until a² − n is a perfect square b² recovers
// p = a+b and q = a−b. Keys whose primes were chosen independently have
// (p+q)/2 − √n astronomically larger than any number of rounds; keys that
// fall within a few rounds were made by a broken generator that picks q as
// the next prime after p (Böck 2022, CVE-2022-26320).
//
// Step i (0-based) tests a = ceil(√n) + i, so the method finds the factors
// exactly when (p+q)/2 − ceil(√n) < rounds. A perfect square n = p² is found
// at step 0 (b = 0).
//
// Most steps skip the square root: a perfect square is a square modulo any
// m, and a² − n is tracked modulo 64·63·65·11 in machine words, so only the
// ≈1 in 120 values that are squares modulo all four (the filter GMP's
// mpz_perfect_square_p uses) reach big.Int.Sqrt. That keeps a step at a few
// big additions, so even MaxFermatRounds stays well under a second.
func fermatFactor(n *big.Int, rounds int) (p, q *big.Int, ok bool) {
	one := big.NewInt(1)
	a := new(big.Int).Sqrt(n)
	b2 := new(big.Int).Mul(a, a)
	if b2.Cmp(n) < 0 { // √n is not an integer: round up
		a.Add(a, one)
		b2.Mul(a, a)
	}
	b2.Sub(b2, n) // b2 = a² − n ≥ 0

	moduli := [...]uint64{64, 63, 65, 11}
	const filter = 64 * 63 * 65 * 11
	var squares [len(moduli)][]bool
	for i, m := range moduli {
		squares[i] = make([]bool, m)
		for x := range m {
			squares[i][x*x%m] = true
		}
	}
	var r big.Int
	fm := big.NewInt(filter)
	am := r.Mod(a, fm).Uint64()  // a mod filter
	bm := r.Mod(b2, fm).Uint64() // b2 mod filter

	var b, sq, step big.Int
	for range rounds {
		candidate := true
		for i, m := range moduli {
			if !squares[i][bm%m] {
				candidate = false
				break
			}
		}
		if candidate {
			b.Sqrt(b2)
			if sq.Mul(&b, &b).Cmp(b2) == 0 {
				return new(big.Int).Add(a, &b), new(big.Int).Sub(a, &b), true
			}
		}
		// (a+1)² − n = (a² − n) + 2a + 1
		step.Lsh(a, 1).Add(&step, one)
		b2.Add(b2, &step)
		a.Add(a, one)
		bm = (bm + 2*am + 1) % filter
		am = (am + 1) % filter
	}
	return nil, nil, false
}
