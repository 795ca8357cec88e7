package policy

// A wildcard name `*.S` stands for every name `X.S` where X is one label
// (RFC 6125 §6.4.3: the `*` covers exactly one label). A policy that denies
// admin.example.internal must therefore refuse *.example.internal, or the
// wildcard certificate would be valid for the denied name.
//
// wildcardWitness decides this exactly and without enumerating labels: it
// searches the product of the glob's automaton (see Match) with the automaton
// of the language { X "." S : X a valid label }, and returns the shortest
// name of that language the glob matches. A valid label is 1..63 letters,
// digits and hyphens, not starting or ending with a hyphen, and X.S must
// fit in 253 characters (RFC 1035 §2.3.4). Both names and patterns are
// canonical (lower case), so the alphabet is [a-z0-9-].
//
// The product has (len(pattern)+1) × (2·64 + len(S)+1) states, each with at
// most one transition per distinct character of the pattern plus two, so the
// search is a few thousand steps for realistic patterns and bounded for any.
func wildcardWitness(pattern, suffix string) (string, bool) {
	maxLabel := min(maxDNSLabel, maxDNSName-1-len(suffix))
	if maxLabel < 1 {
		return "", false
	}
	n := len(pattern)
	// The states of the name automaton: 2·l+h while reading X (l characters
	// read, h = the last one was a hyphen), then labelStates+k after the dot
	// with k characters of S read.
	labelStates := 2 * (maxLabel + 1)
	nd := labelStates + len(suffix) + 1
	accept := labelStates + len(suffix)

	// The characters worth trying in X: those the pattern names, one
	// letter or digit it does not name (they all behave alike), and '-'.
	var alphabet []byte
	seen := [256]bool{}
	for i := 0; i < n; i++ {
		if c := pattern[i]; c != '*' && isLDH(c) && !seen[c] {
			seen[c] = true
			alphabet = append(alphabet, c)
		}
	}
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyz0123456789") {
		if !seen[c] {
			alphabet = append(alphabet, c)
			break
		}
	}
	if !seen['-'] {
		alphabet = append(alphabet, '-')
	}

	visited := make(map[int32]edge)
	var queue []int32
	push := func(q, d int, e edge) {
		id := int32(q*nd + d)
		if _, ok := visited[id]; ok {
			return
		}
		visited[id] = e
		queue = append(queue, id)
	}
	push(0, 0, edge{from: -1})
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		q, d := int(id)/nd, int(id)%nd
		if q == n && d == accept {
			return witnessPath(visited, id), true
		}
		if q < n && pattern[q] == '*' {
			push(q+1, d, edge{from: id}) // `*` matches the empty run
		}
		// step moves the glob on c from q, alongside the name automaton's
		// move to d2.
		step := func(c byte, d2 int) {
			if q >= n {
				return
			}
			if pattern[q] == '*' {
				push(q, d2, edge{from: id, c: c})
			} else if pattern[q] == c {
				push(q+1, d2, edge{from: id, c: c})
			}
		}
		if d < labelStates {
			l, hyphen := d/2, d%2 == 1
			for _, c := range alphabet {
				if (c == '-' && l == 0) || l == maxLabel {
					continue
				}
				h := 0
				if c == '-' {
					h = 1
				}
				step(c, 2*(l+1)+h)
			}
			if l > 0 && !hyphen {
				step('.', labelStates)
			}
		} else if k := d - labelStates; k < len(suffix) {
			step(suffix[k], d+1)
		}
	}
	return "", false
}

// edge is how the search first reached a product state.
type edge struct {
	from int32 // product state, -1 for the start
	c    byte  // the character read, 0 for an ε-move of the glob
}

// witnessPath spells the name that led the search to id.
func witnessPath(visited map[int32]edge, id int32) string {
	var rev []byte
	for id >= 0 {
		e := visited[id]
		if e.c != 0 {
			rev = append(rev, e.c)
		}
		id = e.from
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return string(rev)
}

// coversDenied lists the denied DNS patterns that some name covered by the
// canonical wildcard name (`*.S`) matches.
func coversDenied(wildcard string, denied []string) []string {
	suffix := wildcard[len("*."):]
	var out []string
	for _, p := range denied {
		if _, ok := wildcardWitness(p, suffix); ok {
			out = append(out, p)
		}
	}
	return out
}
