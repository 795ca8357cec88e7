#!/bin/sh
# Runs each fuzz target briefly: scripts/fuzz.sh FUZZTIME pkg:FuzzName...
#
# A finding fails the run and its output is printed, with the reproducer
# the fuzzer wrote under <pkg>/testdata/fuzz/<FuzzName>/ (commit it with the
# fix, so plain go test replays it from then on).
#
# Go's fuzzer sometimes exits non-zero at the -fuzztime boundary without
# having found anything: "context deadline exceeded" while a worker was
# busy (golang/go#51484, #56238). That run wrote no reproducer, so there is
# nothing to replay; the target is run once more and only a second failure
# counts. Any other failure counts the first time.
set -u
fuzztime=$1
shift
go=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() { # pkg fn
	"$go" test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "./$1" >"$log" 2>&1
}

boundary_flake() {
	grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"
}

for t in "$@"; do
	pkg=${t%%:*}
	fn=${t#*:}
	echo "fuzz $fn ($fuzztime)"
	run "$pkg" "$fn" && continue
	if boundary_flake; then
		echo "fuzz $fn: the fuzzer stopped at its deadline without a finding; running it once more"
		run "$pkg" "$fn" && continue
	fi
	echo "fuzz $fn failed:"
	tail -n 60 "$log"
	exit 1
done
