package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// report is everything one run measured; a part that did not run is nil
// or empty.
type report struct {
	opts                      *options
	floorEC, floorRSA         time.Duration
	floorECRate, floorRSARate float64
	lintCost                  time.Duration
	issue                     []result
	csr                       *csrResult
	ocsp                      *ocspResult
	crl                       *crlResult
	pg                        *pgResult
}

// target is one line of the summary: what was asked, what was measured.
type target struct {
	what, goal, measured string
	ratio                float64 // measured ÷ goal, in the goal's direction
	met                  bool
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func ms(d time.Duration) string  { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string  { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }
func sec(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func writeReport(path string, rep *report) error {
	var b strings.Builder
	o := rep.opts
	model := "unknown"
	if ci, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(ci), "\n") {
			if v, ok := strings.CutPrefix(l, "model name\t: "); ok {
				model = v
				break
			}
		}
	}
	var parts []string
	for _, p := range []string{partOCSP, partIssue, partCSR, partCRL, partPG} {
		if o.parts[p] {
			parts = append(parts, p)
		}
	}
	fmt.Fprintf(&b, "# pkid benchmarks\n\n")
	fmt.Fprintf(&b, "Produced by `make bench` (`go run ./tools/pkid-bench -bin bin/pkid -out BENCHMARKS.md`) on %s; parts: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), strings.Join(parts, ", "))
	fmt.Fprintf(&b, "Machine: %d cores (%s), %s, %s. The load generator runs on the same machine and shares its cores.\n\n", runtime.NumCPU(), model, runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "Every safety step is on: the serial is reserved durably before signing, the exact TBS is linted with zlint (RFC 5280 + CA/B Forum BR lints for server certificates), the token (SoftHSM2) signs, the signature and TBS are verified, and the record and its audit entry are committed (WAL, synchronous=FULL, grouped) before the response.\n\n")

	var targets []target
	if rep.floorEC > 0 {
		fmt.Fprintf(&b, "## Floor (in-process, one core: leaf key generation + signing a certificate with the same token key; EC over 3s, RSA over %s)\n\n", o.rsaDuration)
		fmt.Fprintf(&b, "| leaf / CA | CPU per certificate (ms) | certificates/s on one core |\n|---|---:|---:|\n")
		fmt.Fprintf(&b, "| EC_prime256v1 / EC P-256 | %s | %.0f |\n", ms(rep.floorEC), rep.floorECRate)
		if rep.floorRSA > 0 {
			fmt.Fprintf(&b, "| RSA_2048 / RSA-3072 | %s | %.0f |\n", ms(rep.floorRSA), rep.floorRSARate)
		}
		b.WriteString("\n")
		if rep.lintCost > 0 {
			fmt.Fprintf(&b, "zlint cost per server certificate (pkid's filtered registries, in-process): %s ms CPU.\n\n", ms(rep.lintCost))
		}
	}
	if len(rep.issue) > 0 {
		rsa := ""
		if rep.floorRSA > 0 {
			rsa = fmt.Sprintf(" and %s per RSA case", o.rsaDuration)
		}
		fmt.Fprintf(&b, "## Issuing (issue-certificate: real daemon, keep-alive mTLS, %s per EC case%s after a warm-up)\n\n", o.duration, rsa)
		writeCaseTable(&b, rep.issue, "certificates/s", "daemon CPU ms/cert")
	}
	if rep.csr != nil {
		targets = append(targets, writeCSR(&b, o, rep.csr)...)
	}
	if rep.crl != nil {
		targets = append(targets, writeCRL(&b, rep.crl)...)
	}
	if rep.ocsp != nil {
		targets = append(targets, writeOCSP(&b, o, rep.ocsp)...)
	}
	if rep.pg != nil {
		targets = append(targets, writePG(&b, o, rep.pg)...)
	}
	if len(targets) > 0 {
		fmt.Fprintf(&b, "## Against the targets of issues 9, 10 and 12\n\n| target | goal | measured | measured ÷ goal | |\n|---|---|---:|---:|---|\n")
		for _, t := range targets {
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s |\n", t.what, t.goal, t.measured, t.ratio, metWord(t.met))
		}
		b.WriteString("\n")
	}
	if notes, err := os.ReadFile("docs/benchmark-notes.md"); err == nil {
		b.Write(notes)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func writeCaseTable(b *strings.Builder, rs []result, rateName, cpuName string) {
	fmt.Fprintf(b, "| case | concurrency | %s | p50 ms | p90 ms | p99 ms | errors | %s | ÷ floor | bench CPU ms/cert | peak RSS MiB | avg commit group |\n", rateName, cpuName)
	fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(b, "| %s | %d | %.0f | %s | %s | %s | %d | %s | %.2f | %s | %d | %.1f |\n", r.name, r.concurrency, r.rate(),
			ms(r.p50), ms(r.p90), ms(r.p99), r.errors, ms(r.cpuPerOp), ratio(r.cpuPerOp, r.floor), ms(r.clientPerOp), r.peakRSS>>20, r.commitGroup)
	}
	for _, r := range rs {
		if r.firstErr != "" {
			fmt.Fprintf(b, "\nFirst error in %s c=%d: `%s`\n", r.name, r.concurrency, r.firstErr)
		}
	}
	b.WriteString("\n")
}

func writeCSR(b *strings.Builder, o *options, c *csrResult) []target {
	fmt.Fprintf(b, "## Signing CSRs (sign-certificate, web-server; %s per case after a warm-up)\n\n", o.duration)
	fmt.Fprintf(b, "Each CSR has its own EC P-256 key, as step-ca's `/1.0/sign` clients make them; the %d CSRs are built before the first case and sent round-robin, so the load generator's CPU goes to TLS and HTTP only. ÷ floor is against the EC floor above (which also generates the leaf key).\n\n", c.pool)
	writeCaseTable(b, c.cases, "certificates/s", "daemon CPU ms/cert")
	var out []target
	for _, r := range c.cases {
		if r.concurrency == csrTargetConcurrency {
			t := target{what: "CSR signing: daemon CPU per certificate at c=16", goal: "≤ " + ms(csrTargetCPU) + " ms",
				measured: ms(r.cpuPerOp) + " ms", ratio: ratio(r.cpuPerOp, csrTargetCPU), met: r.cpuPerOp <= csrTargetCPU}
			fmt.Fprintf(b, "Target: daemon CPU ≤ 0.9 ms per certificate at concurrency 16 (step-ca: 1.15–1.7 ms on the same machine class, without lint or durable commits): **%s ms, %.2f× the target — %s**. ",
				ms(r.cpuPerOp), t.ratio, metWord(t.met))
			fmt.Fprintf(b, "What limits it: the daemon's own CPU per certificate (%.2f× the floor: the token signature and verification, zlint over the exact TBS, the durable reservation and finalization with an audit entry, TLS and JSON); throughput is bounded by the two cores it shares with the load generator (%s ms of bench CPU per certificate).\n\n",
				ratio(r.cpuPerOp, r.floor), ms(r.clientPerOp))
			out = append(out, t)
		}
	}
	if c.profile != nil {
		fmt.Fprintf(b, "### Where the daemon's time goes (CPU profile, %d s at concurrency 16, a separate run)\n\n", csrProfileSeconds)
		writeProfile(b, c.profile)
	}
	return out
}

func writeCRL(b *strings.Builder, c *crlResult) []target {
	fmt.Fprintf(b, "## A CRL with %d revoked entries (ec-issuing)\n\n", c.entries)
	fmt.Fprintf(b, "Before the daemon starts, %d certificates of ec-issuing are reserved, finalized and revoked in-process through `store/sqlite` (the daemon's own store API; %d goroutines, %d writes in %d group commits, %.1f per commit) in %s s (%s s of bench CPU); the database is then %d MiB. The daemon makes every CA's first CRL before it reports ready (%s s after exec). A CRL after a revocation is timed from sending the revocation to a GET of `/crl/{ca}.crl` (conditional, every %v) that returns a CRL with a higher number; that includes the publisher's batching wait (crl.maxDelay/4: 0.5 s with the demo's 2 s).\n\n",
		c.entries, c.workers, c.fillWrites, c.commits, float64(c.fillWrites)/float64(max(c.commits, 1)), sec(c.fill), sec(c.fillCPU), c.dbBytes>>20, sec(c.startup), crlPollInterval)
	fmt.Fprintf(b, "| CRL | entries | number | DER bytes | wall s until served | daemon CPU s until served | CPU ÷ 3 s target | s until idle again | daemon CPU s until idle (+2 s quiet) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range []crlRun{c.atStart, c.idle, c.control, c.under} {
		if r.what == "" {
			continue
		}
		idle, total := "–", "–"
		if r.untilIdle > 0 {
			idle, total = sec(r.untilIdle), sec(r.totalCPU)
		}
		fmt.Fprintf(b, "| %s | %d | %d | %d | %s | %s | %.2f | %s | %s |\n", r.what, r.entries, r.number, r.derBytes, sec(r.wall), sec(r.cpu),
			ratio(r.cpu, crlTargetCPU), idle, total)
	}
	fmt.Fprintf(b, "\nThe start-up CRL's time and CPU are taken between the log line of the CRL made before it and its own \"published CRL\" line (CPU sampled from /proc every %v), so they cover reading the revocations, building, linting, signing and storing it, and nothing else. After a revocation the daemon does more than make the CRL: the OCSP responder re-signs the answers the revocation made stale (the revoked certificate's; the pass over every certificate is the periodic round's, not the revocation's), and that goes on after a small CRL is served, so the rsa-issuing control's CPU until idle is what a revocation costs besides a big CRL.",
		cpuSampleEvery)
	if c.idle.totalCPU > 0 && c.control.totalCPU > 0 {
		fmt.Fprintf(b, " The big CRL's share of the idle case is therefore about %s s (%s − %s).", sec(c.idle.totalCPU-c.control.totalCPU), sec(c.idle.totalCPU), sec(c.control.totalCPU))
	}
	fmt.Fprintf(b, " Serving it costs the daemon %s ms of CPU per conditional GET answered 304 (the ETag is the CA's name and the CRL number, so a 304 hashes nothing) and %s ms per full GET.\n\n",
		ms(c.get304CPU), ms(c.get200CPU))
	if c.settled {
		fmt.Fprintf(b, "After start the OCSP responder pre-signs an answer for every unexpired issued or revoked certificate: the daemon went idle %s s after ready, having used %s s of CPU and made %.0f token signatures. The measurements above and below were taken after that.\n\n",
			sec(c.settle), sec(c.settleCPU), c.settleSigs)
	} else {
		fmt.Fprintf(b, "After start the OCSP responder pre-signs an answer for every unexpired issued or revoked certificate; the daemon was **still busy after %s s** (%s s of CPU, %.0f signatures), so the measurements below overlap with it.\n\n",
			sec(c.settle), sec(c.settleCPU), c.settleSigs)
	}
	fmt.Fprintf(b, "| issue-certificate, EC, c=%d | span s | certificates | certificates/s | daemon CPU s |\n|---|---:|---:|---:|---:|\n", crlLoadConcurrency)
	fmt.Fprintf(b, "| right before the revocation | %s | %d | %.0f | %s |\n", sec(c.before.span), c.before.n, c.before.rate(), sec(c.before.cpu))
	fmt.Fprintf(b, "| from the revocation to the new CRL served | %s | %d | %.0f | %s |\n\n", sec(c.during.span), c.during.n, c.during.rate(), sec(c.during.cpu))
	fmt.Fprintf(b, "Over that span the token made %.0f signatures for the %d certificates issued: the rest are the CRL and OCSP answers (the revoked certificate's, and those the responder's round after the revocation pre-signs for certificates that have none yet).\n\n",
		c.duringSigs, c.during.n)
	if c.loadErrors > 0 {
		fmt.Fprintf(b, "Issuance errors during the load: %d, first `%s`.\n\n", c.loadErrors, c.loadFirstErr)
	}
	keep := 0.0
	if c.before.rate() > 0 {
		keep = c.during.rate() / c.before.rate()
	}
	if c.profile != nil {
		fmt.Fprintf(b, "### Where the daemon's time goes after a revocation (CPU profile, %d s across one more revocation on the idle daemon, a separate run: its CRL was served after %s s)\n\n",
			crlProfileSecs, sec(c.profiled.wall))
		writeProfile(b, c.profile)
	}
	cores := 0.0
	if c.idle.wall > 0 {
		cores = c.idle.cpu.Seconds() / c.idle.wall.Seconds()
	}
	fmt.Fprintf(b, "Peak RSS of this daemon: %d MiB (the daemon sets a 512 MiB soft memory limit unless GOMEMLIMIT is set). What limits these numbers: one goroutine makes the CRL, so at start, with nothing else running, its CPU is close to its wall time; after a revocation on the idle daemon the daemon used %.1f cores on average until the CRL was served, so most of that CPU is work other than the CRL's own goroutine (the profile above says which). Under load that work takes the two cores from issuance and the load generator, which is what the drop in throughput measures.\n\n",
		c.peakRSS>>20, cores)
	return []target{
		{what: fmt.Sprintf("CRL of %d entries made at start: CPU to build, lint, sign and store", c.atStart.entries), goal: "≤ 3 s",
			measured: sec(c.atStart.cpu) + " s", ratio: ratio(c.atStart.cpu, crlTargetCPU), met: c.atStart.served && c.atStart.cpu <= crlTargetCPU},
		{what: "CRL after one more revocation (idle): daemon CPU until served, OCSP refresh included", goal: "≤ 3 s",
			measured: sec(c.idle.cpu) + " s", ratio: ratio(c.idle.cpu, crlTargetCPU), met: c.idle.served && c.idle.cpu <= crlTargetCPU},
		{what: "issuance at c=8 while that CRL is made, ÷ right before", goal: "≥ 0.67 (drop ≤ ⅓)",
			measured: fmt.Sprintf("%.0f/s ÷ %.0f/s = %.2f", c.during.rate(), c.before.rate(), keep), ratio: keep / (1 - crlMaxDrop), met: keep >= 1-crlMaxDrop},
	}
}

func writeOCSP(b *strings.Builder, o *options, c *ocspResult) []target {
	fmt.Fprintf(b, "## OCSP (cached answers, keep-alive HTTP/1.1, %s per case after a warm-up)\n\n", o.ocspDuration)
	fmt.Fprintf(b, "One certificate of ec-issuing; one pre-built request (SHA-1 CertID, no nonce) sent by POST, and as base64 in the path by GET; every answer is compared with the cached one (%d bytes), anything else counts as an error.\n\n", c.answerBytes)
	fmt.Fprintf(b, "| request | concurrency | answers/s | p50 ms | p90 ms | p99 ms | errors | daemon CPU µs/answer | bench CPU µs/answer | ÷ 10 000/s target |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var out []target
	for _, r := range []result{c.post, c.get} {
		fmt.Fprintf(b, "| %s | %d | %.0f | %s | %s | %s | %d | %s | %s | %.2f |\n", r.name, r.concurrency, r.rate(), ms(r.p50), ms(r.p90), ms(r.p99),
			r.errors, us(r.cpuPerOp), us(r.clientPerOp), r.rate()/ocspTarget)
		out = append(out, target{what: "OCSP cached answers/s at c=32, " + r.name, goal: "≥ 10 000/s", measured: fmt.Sprintf("%.0f/s", r.rate()),
			ratio: r.rate() / ocspTarget, met: r.rate() >= ocspTarget})
	}
	for _, r := range []result{c.post, c.get} {
		if r.firstErr != "" {
			fmt.Fprintf(b, "\nFirst error in %s: `%s`\n", r.name, r.firstErr)
		}
	}
	p := c.post
	both := p.cpuPerOp + p.clientPerOp
	ceiling := 0.0
	if both > 0 {
		ceiling = float64(runtime.NumCPU()) * float64(time.Second) / float64(both)
	}
	fmt.Fprintf(b, "\nWhat limits it: a cached answer costs the daemon %s µs of CPU (HTTP parsing, the request's parse and CertID match, a map look-up, the write) and the load generator %s µs on the same cores; with %d cores that caps the pair at about %.0f answers/s, whatever the daemon does.\n\n",
		us(p.cpuPerOp), us(p.clientPerOp), runtime.NumCPU(), ceiling)
	if c.revoked {
		fmt.Fprintf(b, "Revocation: the revoke call took %s ms; the first answer that said revoked came %s ms after the revocation was sent (%d good answers were seen in between), and the daemon used %s of CPU over that time: the revocation marks the cached answer stale, and the next request re-signs it at once.\n\n",
			ms(c.revokeCall), ms(c.untilRevoked), c.goodAfter, cpuText(c.revokeCPU))
	} else {
		fmt.Fprintf(b, "Revocation: **no answer said revoked** within the bound (%d answers asked after the revoke call of %s ms).\n\n", c.goodAfter, ms(c.revokeCall))
	}
	return out
}

func writeProfile(b *strings.Builder, p *profileSummary) {
	if p.err != "" {
		fmt.Fprintf(b, "The profile could not be taken or read: `%s`\n\n", p.err)
		return
	}
	fmt.Fprintf(b, "%s. Cumulative time of the steps (they overlap where one calls another):\n\n| step | cum | cum%% |\n|---|---:|---:|\n", p.header)
	for _, st := range p.steps {
		fmt.Fprintf(b, "| %s | %s | %s |\n", st.what, st.e.cum, st.e.cumPct)
	}
	b.WriteString("\n")
	for _, t := range []struct {
		title   string
		entries []topEntry
	}{{"by flat time (in the function itself)", p.flat}, {"by cumulative time (with what it calls; frames of one call chain collapsed)", p.cum}} {
		fmt.Fprintf(b, "Top %d %s:\n\n| flat | flat%% | cum | cum%% | function |\n|---:|---:|---:|---:|---|\n", len(t.entries), t.title)
		for _, e := range t.entries {
			fmt.Fprintf(b, "| %s | %s | %s | %s | `%s` |\n", e.flat, e.flatPct, e.cum, e.cumPct, e.name)
		}
		b.WriteString("\n")
	}
}

// cpuText shows a /proc CPU reading, whose resolution is one 10 ms tick.
func cpuText(d time.Duration) string {
	if d < 10*time.Millisecond {
		return "less than 10 ms (one /proc tick)"
	}
	return ms(d) + " ms"
}

func writePG(b *strings.Builder, o *options, p *pgResult) []target {
	fmt.Fprintf(b, "## Two nodes on one PostgreSQL beside one node on SQLite (issue 12; %s per case after a warm-up)\n\n", o.duration)
	fmt.Fprintf(b, "softhsm/setup-demo-ha.sh's fixture, built for this part: one SoftHSM2 token; `pkid.yaml` on SQLite, and node-a and node-b on one database of a PostgreSQL %s server on 127.0.0.1 (store/postgres/pgtest's: fsync=on, synchronous_commit=on, shared_buffers=32MB, otherwise the defaults; each node's pool databaseMaxConns 10). The SQLite node runs every case first, alone; then it is stopped and both PostgreSQL nodes start, one after the other, and run them with half the client workers on each (one keep-alive mTLS connection per worker). Both stores' databases are empty at the start, the same %d CSRs are sent round-robin, and every safety step is on for both.\n\n",
		p.server, max(o.csrPool, 1))
	b.WriteString("What the columns count: *daemon CPU* is the pkid processes' user+system time from /proc over the measured run (both nodes' added up; SoftHSM2 runs inside them); *PostgreSQL CPU* that of the server's processes pg_stat_activity lists (the nodes' backends, checkpointer, WAL writer, …) over the same run; *group commits* the store writers' commits (`pkid_db_commit_group_size_count`, summed over nodes: each one durable commit, a WAL sync on SQLite and a COMMIT on PostgreSQL, holding the reservations and finalizations of many requests) over the measured run; *PostgreSQL transactions* `pg_stat_database.xact_commit` of the nodes' database from before the warm-up to 11 s after the run (PostgreSQL flushes a backend's counts at most once a second, and an idle one's after 10 s), over every certificate issued in that span: every committed transaction, read-only ones (each statement outside a transaction) and the nodes' background work (heartbeats, CRL and OCSP) included. All are per certificate issued.\n\n")
	var out []target
	name := ""
	for _, c := range p.cases {
		if c.spec.name != name {
			if name != "" {
				b.WriteString("\n")
			}
			name = c.spec.name
			fmt.Fprintf(b, "### %s\n\n", name)
			fmt.Fprintf(b, "| store | concurrency | certificates/s | ÷ SQLite | p50 ms | p99 ms | errors | daemon CPU ms/cert | PostgreSQL CPU ms/cert | group commits/cert | PostgreSQL transactions/cert | peak RSS MiB (largest node) |\n")
			fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		}
		for i, r := range []result{c.sqlite, c.pg} {
			vs, dbCPU, xact := "–", "–", "–"
			if i == 1 {
				vs, dbCPU, xact = fmt.Sprintf("%.2f", c.ratio()), ms(r.dbCPUPerOp), fmt.Sprintf("%.2f", r.dbXactPerOp)
			}
			fmt.Fprintf(b, "| %s | %d | %.0f | %s | %s | %s | %d | %s | %s | %.2f | %s | %d |\n", r.name, r.concurrency, r.rate(), vs,
				ms(r.p50), ms(r.p99), r.errors, ms(r.cpuPerOp), dbCPU, r.commitsPerOp, xact, r.peakRSS>>20)
		}
		t := target{what: fmt.Sprintf("two PostgreSQL nodes ÷ one SQLite node, %s, c=%d", c.spec.short, c.concurrency), goal: "≥ 1 (at least as fast)",
			measured: fmt.Sprintf("%.0f/s ÷ %.0f/s", c.pg.rate(), c.sqlite.rate()), ratio: c.ratio(), met: c.ratio() >= 1}
		out = append(out, t)
	}
	b.WriteString("\n")
	for _, c := range p.cases {
		for _, r := range []result{c.sqlite, c.pg} {
			if r.firstErr != "" {
				fmt.Fprintf(b, "First error in %s, %s c=%d: `%s`\n\n", r.name, c.spec.name, c.concurrency, r.firstErr)
			}
		}
	}
	b.WriteString("Against the target (two PostgreSQL nodes together at least as fast as one SQLite node on this machine, every safety step on):")
	for i, t := range out {
		sep := ";"
		if i == len(out)-1 {
			sep = "."
		}
		fmt.Fprintf(b, " %s c=%d: %s = %.2f, **%s**%s", p.cases[i].spec.short, p.cases[i].concurrency, t.measured, t.ratio, metWord(t.met), sep)
	}
	b.WriteString(" The two nodes share this machine's cores with the PostgreSQL server and the load generator, so the comparison says what a second node costs and brings here, not what two machines would do.\n\n")
	// When the cores are saturated, throughput is bounded by the machine's
	// CPU per certificate; this is where the second store's extra goes.
	b.WriteString("Machine CPU per certificate (daemons + PostgreSQL server + load generator), SQLite → PostgreSQL:")
	for i, c := range p.cases {
		sep := ";"
		if i == len(p.cases)-1 {
			sep = "."
		}
		sq := c.sqlite.cpuPerOp + c.sqlite.clientPerOp
		pg := c.pg.cpuPerOp + c.pg.dbCPUPerOp + c.pg.clientPerOp
		fmt.Fprintf(b, " %s c=%d: %s → %s ms (× %.2f)%s", c.spec.short, c.concurrency, ms(sq), ms(pg), ratio(pg, sq), sep)
	}
	b.WriteString("\n\n")
	return out
}
