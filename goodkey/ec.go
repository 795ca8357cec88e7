package goodkey

import "crypto/ecdsa"

// checkEC applies the EC rules: an accepted curve, then full public-key
// validation (NIST SP 800-56A rev. 3 §5.6.2.3.3): Q is not the identity, its
// coordinates are field elements, and Q is on the curve. The fourth step,
// n·Q = O, holds for every point on P-256, P-384 and P-521 because their
// cofactor is 1, so it needs no separate test.
//
// The point is validated by crypto/ecdh through k.ECDH(), which encodes it
// and lets the constant-time nistec code reject coordinates outside [0, p−1]
// and points off the curve. crypto/elliptic, which parsed points before,
// represented the identity as the affine (0, 0) (as Boulder notes); that
// pair is not on these curves and ECDH would refuse it too, but it is named
// here so that the refusal says what it is.
func checkEC(k *ecdsa.PublicKey) error {
	c, err := curveOf(k)
	if err != nil {
		return err
	}
	if k.X == nil || k.Y == nil {
		return weak("EC public key has no point")
	}
	if k.X.Sign() == 0 && k.Y.Sign() == 0 {
		return weak("EC public key is the identity (point at infinity) of %s", c.name)
	}
	if _, err := k.ECDH(); err != nil {
		return weak("EC public key is not a point on %s", c.name)
	}
	return nil
}
