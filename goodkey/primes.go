package goodkey

// primesBelow returns the primes p < bound in ascending order, by the sieve
// of Eratosthenes. NewPolicy calls it once; bound is at most MaxSmallPrimes.
func primesBelow(bound int) []int64 {
	if bound < 3 {
		return nil
	}
	composite := make([]bool, bound)
	var primes []int64
	for i := 2; i < bound; i++ {
		if composite[i] {
			continue
		}
		primes = append(primes, int64(i))
		for j := i * i; j < bound; j += i {
			composite[j] = true
		}
	}
	return primes
}
