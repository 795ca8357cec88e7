package goodkey

import (
	"math/big"
	"testing"
)

// TestFermatBoundary pins the round count: with a = (p+q)/2 and
// s = ceil(√n), the method needs exactly a − s + 1 rounds. The factors here
// are chosen so that a − s is a known k; they need not be prime.
func TestFermatBoundary(t *testing.T) {
	for _, k := range []int64{0, 3, 57, 100, 101, 1000, 12345} {
		// a ≈ 1.5·2^1023 (so n has 2048 bits); b² ≈ 2·a·k puts √(a²−b²)
		// about k below a. The exact distance is measured, then used.
		a := new(big.Int).Lsh(big.NewInt(3), 1022)
		a.Add(a, big.NewInt(1)) // odd a, even b: a±b odd
		b := new(big.Int).Mul(a, big.NewInt(2*k))
		b.Sqrt(b)
		b.SetBit(b, 0, 0)
		p := new(big.Int).Add(a, b)
		q := new(big.Int).Sub(a, b)
		n := new(big.Int).Mul(p, q)
		s := new(big.Int).Sqrt(n)
		if new(big.Int).Mul(s, s).Cmp(n) < 0 {
			s.Add(s, big.NewInt(1))
		}
		dist := new(big.Int).Sub(a, s)
		if !dist.IsInt64() {
			t.Fatalf("k=%d: distance %v", k, dist)
		}
		need := int(dist.Int64()) + 1
		t.Run(dist.String(), func(t *testing.T) {
			if _, _, ok := fermatFactor(n, need-1); ok {
				t.Errorf("found with %d rounds, want it to need %d", need-1, need)
			}
			gp, gq, ok := fermatFactor(n, need)
			if !ok {
				t.Fatalf("not found with %d rounds", need)
			}
			if gp.Cmp(p) != 0 || gq.Cmp(q) != 0 {
				t.Errorf("factors %v, %v; want %v, %v", gp, gq, p, q)
			}
		})
	}
}

// TestFermatMatchesPlainMethod compares fermatFactor, with its
// quadratic-residue filter, against the textbook method on every odd n up
// to 10 001: the filter may only skip steps that cannot succeed.
func TestFermatMatchesPlainMethod(t *testing.T) {
	const rounds = 40
	for v := int64(3); v <= 10001; v += 2 {
		n := big.NewInt(v)
		gp, gq, ok := fermatFactor(n, rounds)
		wp, wq, wok := plainFermat(v, rounds)
		if ok != wok || ok && (gp.Int64() != wp || gq.Int64() != wq) {
			t.Fatalf("n=%d: fermatFactor = %v, %v, %v; plain = %d, %d, %v", v, gp, gq, ok, wp, wq, wok)
		}
	}
}

func plainFermat(n int64, rounds int) (p, q int64, ok bool) {
	a := int64(0)
	for a*a < n {
		a++
	}
	for range rounds {
		b2 := a*a - n
		b := int64(0)
		for b*b < b2 {
			b++
		}
		if b*b == b2 {
			return a + b, a - b, true
		}
		a++
	}
	return 0, 0, false
}

func TestSmallFactorNamesTheSmallest(t *testing.T) {
	p := newTestPolicy(t, Options{})
	n := big.NewInt(751 * 997)
	n.Mul(n, big.NewInt((1<<61)-1)) // a Mersenne prime, above any bound
	if got := p.smallFactor(n); got != 751 {
		t.Errorf("smallFactor = %d, want 751", got)
	}
	if got := p.smallFactor(big.NewInt((1 << 61) - 1)); got != 0 {
		t.Errorf("smallFactor(prime) = %d, want 0", got)
	}
}

// TestROCATable checks the table against the published detector: its
// test_primorial asserts M and φ(M) for max_prime 167.
func TestROCATable(t *testing.T) {
	tab, err := newROCATable()
	if err != nil {
		t.Fatal(err)
	}
	wantM := "962947420735983927056946215901134429196419130606213075415963491270"
	if tab.m.String() != wantM {
		t.Errorf("M = %v, want %s", tab.m, wantM)
	}
	phi := big.NewInt(1)
	for _, p := range primesBelow(rocaMaxPrime + 1) {
		phi.Mul(phi, big.NewInt(p-1))
	}
	wantPhi := "103869096713434131141462689130396531045414801386011361280000000000"
	if phi.String() != wantPhi {
		t.Errorf("φ(M) = %v, want %s", phi, wantPhi)
	}
	// The order of 65537 mod M: 2^4·3^4·5^2·7·11·13·17·23·29·37·41·53·83.
	if got := tab.order.String(); got != "2454106387091158800" {
		t.Errorf("order = %s", got)
	}
	if new(big.Int).Exp(big.NewInt(rocaGenerator), tab.order, tab.m).Cmp(big.NewInt(1)) != 0 {
		t.Error("65537^order ≠ 1 mod M")
	}
}

func TestROCAFingerprint(t *testing.T) {
	tab, err := newROCATable()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		n    *big.Int
		want bool
	}{
		{"mod01 (512-bit positive)", hexInt(t, rocaMod01), true},
		{"mod02 (512-bit positive)", hexInt(t, rocaMod02), true},
		{"mod03 (2048-bit positive)", hexInt(t, rocaMod03), true},
		{"mod09 (4096-bit positive)", hexInt(t, rocaMod09), true},
		{"mod04 (negative)", hexInt(t, rocaMod04), false},
		{"mod06 (negative)", hexInt(t, rocaMod06), false},
		{"65537 itself", big.NewInt(65537), true},
		{"65537^2 + M", new(big.Int).Add(big.NewInt(65537*65537), tab.m), true},
		{"a multiple of 167", big.NewInt(167 * 65537), false},
	}
	for i, s := range rocaFakeMods {
		cases = append(cases, struct {
			name string
			n    *big.Int
			want bool
		}{"fake mod " + string(rune('0'+i)) + " (passes the old masks only)", decInt(t, s), false})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tab.fingerprinted(tc.n); got != tc.want {
				t.Errorf("fingerprinted = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPrimesBelow(t *testing.T) {
	cases := map[int][]int64{0: nil, 2: nil, 3: {2}, 12: {2, 3, 5, 7, 11}, 13: {2, 3, 5, 7, 11}, 14: {2, 3, 5, 7, 11, 13}}
	for bound, want := range cases {
		got := primesBelow(bound)
		if len(got) != len(want) {
			t.Errorf("primesBelow(%d) = %v, want %v", bound, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("primesBelow(%d) = %v, want %v", bound, got, want)
			}
		}
	}
	if n := len(primesBelow(752)); n != 133 {
		t.Errorf("π(751) = %d, want 133", n)
	}
}
