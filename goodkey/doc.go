// Package goodkey decides whether a public key is good enough for pkid to
// certify it: the key of a CSR that a client asks pkid to sign (DESIGN.md
// §11). It is modelled on Boulder's goodkey package.
//
// pkid accepts exactly the key algorithms its API names (§1): RSA with a
// 2048-, 3072- or 4096-bit modulus and the public exponent 65537, and ECDSA
// on P-256, P-384 or P-521. On top of the algorithm and size, a key is refused
// when its private half can be computed from its public half with a known,
// cheap method — the CA/Browser Forum Baseline Requirements §6.1.1.3 require a
// CA to reject such keys, and §6.1.6 (after NIST SP 800-89 §5.3.3) asks for an
// odd modulus without factors smaller than 752:
//
//   - an RSA modulus with a small prime factor (trial division by every
//     prime below Options.SmallPrimes, 1000 by default);
//   - an RSA modulus whose two primes are so close that Fermat's
//     factorization method finds them within Options.FermatRounds steps
//     (H. Böck, "Fermat Factorization in the Wild", 2022; CVE-2022-26320);
//   - an RSA modulus with the fingerprint of Infineon's RSALib, ROCA
//     (Nemec et al., "The Return of Coppersmith's Attack", ACM CCS 2017;
//     CVE-2017-15361);
//   - an EC point that is the identity or not on its curve (NIST SP 800-56A
//     rev. 3 §5.6.2.3.3, full public-key validation).
//
// The package is pure: no I/O, no clock, no package-level mutable state. A
// [Policy] holds the tables it needs, computed once by [NewPolicy], and is
// safe for concurrent use. Refusals are [*WeakKeyError] values whose text is
// safe to send to a client and names the weakness.
package goodkey
