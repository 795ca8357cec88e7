package policy

// Match reports whether value matches pattern. `*` matches any run of
// characters (including none and including dots, as in Infisical); every
// other character matches itself exactly and case-sensitively. A pattern
// without `*` is therefore an exact comparison.
//
// The matcher is iterative with single-star backtracking, so it runs in
// O(len(pattern)·len(value)) at worst and cannot be driven into exponential
// time by hostile input.
func Match(pattern, value string) bool {
	p, v := 0, 0
	star, mark := -1, 0
	for v < len(value) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, v
			p++
		case p < len(pattern) && pattern[p] == value[v]:
			p++
			v++
		case star >= 0:
			p = star + 1
			mark++
			v = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchAny reports whether value matches at least one of patterns.
func MatchAny(patterns []string, value string) bool {
	for _, p := range patterns {
		if Match(p, value) {
			return true
		}
	}
	return false
}

func hasWildcard(patterns []string) bool {
	for _, p := range patterns {
		for i := 0; i < len(p); i++ {
			if p[i] == '*' {
				return true
			}
		}
	}
	return false
}
