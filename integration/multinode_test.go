package integration

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pkid/pkid/store/postgres/pgtest"
)

// Two real pkid nodes on one real PostgreSQL database and one SoftHSM2
// token (DESIGN.md §16), driven as clients, relying parties and operators
// would: both nodes issue at once, and every serial is unique, every
// certificate verifies, either node's config lists them all, and the audit
// log is one chain; a revocation on one node reaches both nodes' CRLs and
// OCSP answers; one node makes each CA's CRLs; a node killed under load
// resolves only its own pending rows when it comes back, and those of a
// node that stays dead are resolved by the other, running on, once its
// heartbeat is older than nodeTimeout; with the database gone both nodes
// answer 503 with Retry-After and sign nothing, and serve again when it is
// back.
//
// The fixture is softhsm/setup-demo-ha.sh's (the demo fixture and the two
// node configs), so `make demo-ha` runs what this test checks.
func TestMultiNode(t *testing.T) {
	started := time.Now()
	srv := pgtest.StartServer(t)
	c := newHACluster(t, srv)
	a, b := c.nodes[0], c.nodes[1]
	t.Logf("PostgreSQL and two nodes up in %s", time.Since(started).Round(time.Millisecond))

	var issued []haIssued
	step(t, "concurrent issuance on both nodes", func(t *testing.T) {
		const perNode, workers = 50, 8
		var mu sync.Mutex
		var wg sync.WaitGroup
		var failures []string
		for _, n := range c.nodes {
			jobs := make(chan int)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := range jobs {
						got, err := n.issue(fmt.Sprintf("%s-%d.prod.example.internal", n.name, k))
						mu.Lock()
						if err != nil {
							failures = append(failures, err.Error())
						} else {
							issued = append(issued, got)
						}
						mu.Unlock()
					}
				}()
			}
			go func() {
				for k := 0; k < perNode; k++ {
					jobs <- k
				}
				close(jobs)
			}()
		}
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("%d of %d requests failed, e.g. %s", len(failures), 2*perNode, failures[0])
		}
		serials := map[string]string{}
		byNode := map[string]int{}
		ids := make([]string, 0, len(issued))
		for _, got := range issued {
			if other, dup := serials[got.serial]; dup {
				t.Errorf("serial %s issued twice: by %s and by %s", got.serial, other, got.node)
			}
			serials[got.serial] = got.node
			byNode[got.node]++
			ids = append(ids, got.id)
			c.verifyLeaf(t, got)
		}
		if byNode[a.name] != perNode || byNode[b.name] != perNode {
			t.Fatalf("issued per node: %v", byNode)
		}
		// Both processes signed with the one token.
		for _, n := range c.nodes {
			if v := metricSum(t, n, `pkid_hsm_sign_duration_seconds_count{ca="ec-issuing"}`); v < perNode {
				t.Errorf("%s: %v signatures by ec-issuing's key for %d certificates", n.name, v, perNode)
			}
		}
		// Either node's config sees every record, issued.
		for _, n := range c.nodes {
			status := recordsOf(t, n)
			for _, got := range issued {
				if status[got.id] != "issued" {
					t.Errorf("records list --config %s: certificate %s (from %s) is %q", filepath.Base(n.config), got.id, got.node, status[got.id])
				}
			}
		}
		// Each record names the node that issued it, and the audit log —
		// one chain — has the issuance entry of every one of them.
		rows := c.query(t, `SELECT c.node, count(*) FROM certificates c JOIN audit a ON a.event::jsonb->>'certificateId' = c.id
			WHERE a.event::jsonb->>'action' = 'issued' AND c.id = ANY($1) GROUP BY c.node ORDER BY c.node`, ids)
		if want := fmt.Sprintf("%s %d; %s %d", a.name, perNode, b.name, perNode); strings.Join(rows, "; ") != want {
			t.Errorf("issuance audit entries per recording node: %q, want %q", strings.Join(rows, "; "), want)
		}
		for _, n := range c.nodes {
			auditVerifyOn(t, n)
		}
	})
	if len(issued) < 4 {
		t.Fatal("nothing to revoke")
	}

	step(t, "a revocation on one node reaches both nodes' CRLs and OCSP", func(t *testing.T) {
		fromB, fromA := pick(issued, b.name, 0), pick(issued, a.name, 0)
		before := c.sameCRL(t, "ec-issuing", nil)
		// B answers good first, so a cached answer is what a revocation
		// elsewhere must overturn.
		if out := c.ocsp(t, b, fromB); !strings.Contains(out, ": good") {
			t.Fatalf("OCSP from %s before the revocation:\n%s", b.name, out)
		}
		code, body := a.call(t, "client", http.MethodPost, "/api/v1/pki/certificates/"+fromB.serialField+"/revoke",
			map[string]string{"revocationReason": "KEY_COMPROMISE"})
		if code != 200 || body["message"] != "Successfully revoked certificate" {
			t.Fatalf("revoke %s on %s: %d %v", fromB.serialField, a.name, code, body)
		}
		revokedAt := time.Now()
		out := c.ocsp(t, b, fromB)
		if !strings.Contains(out, ": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
			t.Errorf("OCSP from %s right after the revocation on %s answered:\n%s", b.name, a.name, out)
			c.waitOCSP(t, b, fromB, ": revoked")
			t.Logf("%s answered revoked %s after the revocation", b.name, time.Since(revokedAt).Round(time.Millisecond))
		}
		crl := c.sameCRL(t, "ec-issuing", func(crl *x509.RevocationList) bool { return listed(crl, fromB.leaf) })
		took := time.Since(revokedAt)
		t.Logf("both nodes serve CRL %d listing the serial %s after the revocation", crl.Number, took.Round(time.Millisecond))
		if took > c.maxDelay+time.Second { // the test polls every 100ms
			t.Errorf("the CRLs listed the revocation after %s; crl.maxDelay is %s", took, c.maxDelay)
		}
		if crl.Number.Int64() <= before.Number.Int64() {
			t.Errorf("CRL number %d after %d", crl.Number, before.Number)
		}
		// openssl as the relying party, with the CRL fetched from node B.
		_, der, _ := fetchCRL(t, b.public, "ec-issuing")
		crlFile := writeTemp(t, c.tmp, "b.crl", string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})))
		for _, v := range []struct {
			cert haIssued
			ok   bool
		}{{fromB, false}, {fromA, true}} {
			out, err := openssl(t, c.tmp, "verify", "-CAfile", c.bundle, "-crl_check", "-CRLfile", crlFile, c.leafFile(t, v.cert))
			if v.ok && err != nil {
				t.Errorf("openssl verify -crl_check of an unrevoked certificate with %s's CRL: %v %s", b.name, err, out)
			}
			if !v.ok && (err == nil || !strings.Contains(out, "certificate revoked")) {
				t.Errorf("openssl verify -crl_check of the revoked certificate with %s's CRL: %v %s", b.name, err, out)
			}
		}

		// The other way round, by the operator: pkid revoke with node B's
		// config, for a certificate node A issued; node A's OCSP and both
		// CRLs follow.
		if out, errOut, code := s.pkid(t, "revoke", "--config", b.config, "--serial", fromA.serialField, "--reason", "superseded"); code != 0 {
			t.Fatalf("pkid revoke --config %s: %d %s %s", filepath.Base(b.config), code, out, errOut)
		}
		c.waitOCSP(t, a, fromA, ": revoked")
		crl = c.sameCRL(t, "ec-issuing", func(crl *x509.RevocationList) bool { return listed(crl, fromA.leaf) && listed(crl, fromB.leaf) })
		for _, n := range c.nodes {
			out, errOut, code := s.pkid(t, "crl", "show", "--config", n.config, "--ca", "ec-issuing")
			var v struct {
				Number  int64 `json:"crlNumber"`
				Entries []struct{ SerialNumber, Reason string }
			}
			if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
				t.Fatalf("pkid crl show --config %s: %d %s %s", filepath.Base(n.config), code, out, errOut)
			}
			if v.Number != crl.Number.Int64() || len(v.Entries) != 2 {
				t.Errorf("pkid crl show --config %s: CRL %d with %d entries; the nodes serve %d with 2", filepath.Base(n.config), v.Number, len(v.Entries), crl.Number)
			}
		}
	})

	step(t, "one node makes each CA's CRLs", func(t *testing.T) {
		c.oneCRLMaker(t, 0)
	})

	step(t, "an access token from one node works on the other, and its revocation on both", func(t *testing.T) {
		id, secret, _ := credentials(t, c.dir)
		onA, onB := newAgent(t, c.dir, a.addr), newAgent(t, c.dir, b.addr)
		onA.login(id, secret)
		onB.bearer = onA.bearer
		create := map[string]any{"profileId": webServerID, "applicationId": webAppID, "attributes": map[string]any{
			"ttl": "1h", "commonName": "token.example.internal", "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1",
			"altNames": []map[string]string{{"type": "dns_name", "value": "token.example.internal"}}}}
		onB.must(http.MethodPost, "/api/v1/cert-manager/certificates", create)
		onB.must(http.MethodPost, "/api/v1/auth/token/revoke", map[string]string{"accessToken": onA.bearer})
		for _, ag := range []*agent{onA, onB} {
			if r := ag.do(http.MethodPost, "/api/v1/cert-manager/certificates", "", create); r.status != http.StatusUnauthorized {
				t.Errorf("a token revoked on %s, used on %s: %d %s", b.name, ag.addr, r.status, r.raw)
			}
		}
	})

	step(t, "a node killed under load resolves only its own pending rows", func(t *testing.T) {
		bLoad := startHALoad(b, 6)
		bLog := b.logSize(t)
		pending := c.crashUnderLoad(t, a, func() {
			bLoad.waitMore(t, 10)
		})
		bPending := c.pendingOf(t, b.name)
		abortedB := c.count(t, `SELECT count(*) FROM certificates WHERE status = 'aborted' AND node = $1`, b.name)
		a.start(t) // while node B keeps issuing
		recovered := a.logSinceStart(t, "resolved pending record")
		bLoad.waitMore(t, 10) // node B served on through all of it
		bGot, bFailed := bLoad.stop()
		for _, r := range recovered {
			if r["node"] != a.name {
				t.Errorf("%s resolved a pending row of %v: %v", a.name, r["node"], r)
			}
		}
		// Node B takes node A for dead once A's last heartbeat is
		// nodeTimeout old, which a slow restart can reach: then B resolved
		// those of A's rows A did not find (the step after this one shows
		// B never does so sooner).
		byA, byB := certificateRows(recovered, a.name), certificateRows(b.logSince(t, bLog, "resolved pending record"), a.name)
		if byA+byB != pending { // pending counts certificate rows; a cut CRL reservation is resolved too
			t.Errorf("%s resolved %d pending certificate rows at start and %s %d; the crash left %d", a.name, byA, b.name, byB, pending)
		}
		if byB > 0 {
			t.Logf("%s's last heartbeat grew older than %s before it restarted: %s resolved %d of its rows", a.name, c.nodeTimeout, b.name, byB)
		}
		if n := c.count(t, `SELECT count(*) FROM certificates WHERE status = 'aborted' AND node = $1`, b.name); n != abortedB {
			t.Errorf("%d of %s's rows were aborted while %s recovered", n-abortedB, b.name, a.name)
		}
		if v := metricSum(t, a, "pkid_recovered_records_total"); v != float64(len(recovered)) {
			t.Errorf("%s: pkid_recovered_records_total %v, want %d", a.name, v, len(recovered))
		}
		if len(bFailed) > 0 {
			t.Errorf("%s failed %d requests while %s crashed and recovered, e.g. %s", b.name, len(bFailed), a.name, bFailed[0])
		}
		t.Logf("%s had %d rows in flight just before %s restarted; it served %d certificates meanwhile", b.name, bPending, a.name, len(bGot))
		if n := c.count(t, `SELECT count(*) FROM certificates WHERE status = 'pending'`); n != 0 {
			t.Errorf("%d pending rows once the load stopped", n)
		}
		for _, got := range bGot {
			c.verifyLeaf(t, got)
		}
		status := recordsOf(t, b)
		for id := range bGot {
			if status[id] != "issued" {
				t.Errorf("a client received %s from %s; its record is %q", id, b.name, status[id])
			}
		}
		auditVerifyOn(t, a)
	})

	step(t, "a dead node's pending rows are resolved by the running node", func(t *testing.T) {
		bLog, bRecovered := b.logSize(t), metricSum(t, b, "pkid_recovered_records_total")
		pending := c.crashUnderLoad(t, a, nil)
		killedAt := time.Now()
		// While node A is dead, node B takes over the CRLs A made: a
		// revocation still reaches the CRL.
		target := pick(issued, a.name, 1)
		code, body := b.call(t, "client", http.MethodPost, "/api/v1/pki/certificates/"+target.serialField+"/revoke",
			map[string]string{"revocationReason": "AFFILIATION_CHANGED"})
		if code != 200 {
			t.Fatalf("revoke on %s: %d %v", b.name, code, body)
		}
		crl, _ := waitCRLOn(t, b, "ec-issuing", func(crl *x509.RevocationList) bool { return listed(crl, target.leaf) }, 3*c.maxDelay)
		t.Logf("with %s dead, %s published CRL %d with the revocation", a.name, b.name, crl.Number)
		// Node B, running on, resolves A's rows on its heartbeat schedule
		// once A's heartbeat is older than nodeTimeout: no node starts.
		// The bound is only a failure bound.
		// B logs the rows and counts them after their transaction commits:
		// the counter, which moves last, is the event to wait for.
		for deadline := time.Now().Add(c.nodeTimeout + time.Minute); ; time.Sleep(200 * time.Millisecond) {
			if c.pendingOf(t, a.name) == 0 &&
				metricSum(t, b, "pkid_recovered_records_total") > bRecovered {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's pending rows were still pending %s after the kill", a.name, time.Since(killedAt).Round(time.Second))
			}
		}
		t.Logf("%s resolved %s's %d rows %s after the kill", b.name, a.name, pending, time.Since(killedAt).Round(time.Millisecond))
		var beat time.Time
		if rows := c.query(t, `SELECT heartbeat_at FROM nodes WHERE name = $1`, a.name); len(rows) == 1 {
			var err error
			if beat, err = time.Parse(time.RFC3339Nano, rows[0]); err != nil {
				t.Fatalf("heartbeat of %s: %q: %v", a.name, rows[0], err)
			}
		}
		recovered := b.logSince(t, bLog, "resolved pending record")
		var certs int
		for _, r := range recovered {
			if r["node"] != a.name {
				t.Errorf("%s resolved a row of %v, not of the dead %s", b.name, r["node"], a.name)
			}
			if certificateRow(r) {
				certs++
			}
			// Never while A could still have been signing it.
			if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["time"])); err != nil || at.Sub(beat) < c.nodeTimeout {
				t.Errorf("%s resolved %v at %v, %s after %s's last heartbeat at %s; nodeTimeout is %s",
					b.name, r["certificateId"], r["time"], at.Sub(beat), a.name, beat.Format(time.RFC3339Nano), c.nodeTimeout)
			}
		}
		if certs != pending {
			t.Errorf("%s resolved %d certificate rows; %s left %d", b.name, certs, a.name, pending)
		}
		if v := metricSum(t, b, "pkid_recovered_records_total") - bRecovered; v != float64(len(recovered)) {
			t.Errorf("%s: pkid_recovered_records_total grew by %v, want %d", b.name, v, len(recovered))
		}
		a.start(t)
		if again := a.logSinceStart(t, "resolved pending record"); len(again) != 0 {
			t.Errorf("%s found %d rows to resolve after %s had", a.name, len(again), b.name)
		}
		auditVerifyOn(t, b)
	})

	step(t, "the database gone and back", func(t *testing.T) {
		before := c.count(t, `SELECT count(*) FROM certificates`)
		// The token's signatures are counted from here: a node's start-up
		// pass over the OCSP answers (node A has just started) must have
		// ended, or its signatures would be taken for refused requests'.
		signs := map[string]float64{}
		for _, n := range c.nodes {
			n.waitOCSPPresigned(t, n.name)
			signs[n.name] = metricSum(t, n, "pkid_hsm_sign_duration_seconds_count")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		for _, n := range c.nodes {
			for k := 0; k < 5; k++ {
				code, header, body, err := n.issueRaw(fmt.Sprintf("gone-%d.prod.example.internal", k))
				if err != nil {
					t.Fatalf("%s: %v", n.name, err)
				}
				if code != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || body["error"] != "ServiceUnavailable" {
					t.Errorf("%s with the database gone: %d Retry-After=%q %v", n.name, code, header.Get("Retry-After"), body)
				} else if k == 0 {
					t.Logf("%s with the database gone: %d Retry-After: %s, %v", n.name, code, header.Get("Retry-After"), body["message"])
				}
			}
			waitReadyz(t, n, http.StatusServiceUnavailable)
			t.Logf("%s: 503s and not ready %s after the stop", n.name, time.Since(stopped).Round(time.Millisecond))
		}
		for _, n := range c.nodes {
			if got := metricSum(t, n, "pkid_hsm_sign_duration_seconds_count"); got != signs[n.name] {
				t.Errorf("%s signed %v times with the database gone", n.name, got-signs[n.name])
			}
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		c.db.Reset() // the test's own connections died with the server
		restarted := time.Now()
		served := 0
		for _, n := range c.nodes {
			waitReadyz(t, n, http.StatusOK)
			deadline := time.Now().Add(30 * time.Second)
			for {
				got, err := n.issue("back.prod.example.internal")
				if err == nil {
					c.verifyLeaf(t, got)
					served++
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s after the database came back: %v", n.name, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if n.cmd.ProcessState != nil {
				t.Errorf("%s exited during the outage", n.name)
			}
			t.Logf("%s: ready and issuing %s after the start", n.name, time.Since(restarted).Round(time.Millisecond))
		}
		if after := c.count(t, `SELECT count(*) FROM certificates`); after != before+served {
			t.Errorf("%d records after the outage, %d before and %d issued since: the refused requests left rows", after, before, served)
		}
		// After the outage, a revocation still makes one CRL, by one node.
		last := c.count(t, `SELECT coalesce(max(number), 0) FROM crls WHERE ca = 'ec-issuing'`)
		target := pick(issued, b.name, 1)
		if code, body := b.call(t, "client", http.MethodPost, "/api/v1/pki/certificates/"+target.serialField+"/revoke",
			map[string]string{"revocationReason": "CESSATION_OF_OPERATION"}); code != 200 {
			t.Fatalf("revoke on %s after the outage: %d %v", b.name, code, body)
		}
		revokedAt := time.Now()
		c.sameCRL(t, "ec-issuing", func(crl *x509.RevocationList) bool { return listed(crl, target.leaf) })
		// Every node reads the revocation counts each maxDelay/2: by
		// maxDelay after the revocation, a second node that took itself
		// for the CRL maker would have made its CRL too.
		time.Sleep(time.Until(revokedAt.Add(c.maxDelay + 500*time.Millisecond)))
		c.oneCRLMaker(t, last)
	})

	step(t, "PostgreSQL restarted under load", func(t *testing.T) {
		loads, logAt := make([]*haLoad, len(c.nodes)), make([]int64, len(c.nodes))
		for k, n := range c.nodes {
			logAt[k] = n.logSize(t)
			loads[k] = startHALoad(n, 4)
		}
		for _, l := range loads {
			l.waitMore(t, 10)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// -m fast: the server cuts every session, mid-transaction or not.
		if err := srv.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		for k, n := range c.nodes {
			loads[k].waitRefused(t)
			waitReadyz(t, n, http.StatusServiceUnavailable)
		}
		restarted := time.Now()
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		c.db.Reset()
		for k, n := range c.nodes {
			loads[k].waitMore(t, 10) // the same workers, no restart
			t.Logf("%s: issuing under load again %s after pg_ctl start was run", n.name, time.Since(restarted).Round(time.Millisecond))
		}
		for k, n := range c.nodes {
			got, failed := loads[k].stop()
			refused := loads[k].refused
			if n.cmd.ProcessState != nil {
				t.Errorf("%s exited during the outage", n.name)
			}
			if len(failed) != len(refused) {
				t.Errorf("%s: %d requests failed without an answer, e.g. %v", n.name, len(failed)-len(refused), failed)
			}
			for _, r := range refused {
				if r.code != http.StatusServiceUnavailable || r.retryAfter == "" || r.body["error"] != "ServiceUnavailable" {
					t.Errorf("%s refused a request with the database gone with %v, want 503 with Retry-After", n.name, r)
					break
				}
			}
			status := recordsOf(t, n)
			for id, cert := range got {
				if status[id] != "issued" {
					t.Errorf("a client received %s from %s; its record is %q", id, n.name, status[id])
				}
				c.verifyLeaf(t, cert)
			}
			// A request whose finalize the outage cut was answered 503; the
			// node aborts its row itself after its next heartbeat.
			var pending int
			for deadline := time.Now().Add(c.nodeTimeout + time.Minute); ; time.Sleep(200 * time.Millisecond) {
				if pending = c.pendingOf(t, n.name); pending == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s still has %d pending rows %s after the server started", n.name, pending, time.Since(restarted).Round(time.Second))
				}
			}
			ended := 0
			for _, r := range n.logSince(t, logAt[k], "resolved pending record") {
				if r["node"] != n.name {
					t.Errorf("%s resolved a row of %v while both nodes ran", n.name, r["node"])
				}
				if certificateRow(r) {
					ended++
				}
			}
			if ended > len(refused) {
				t.Errorf("%s resolved %d rows of ended requests but refused only %d", n.name, ended, len(refused))
			}
			t.Logf("%s: %d certificates, %d refusals (503), %d rows of cut requests aborted by the node itself", n.name, len(got), len(refused), ended)
		}
		if dup := c.count(t, `SELECT count(*) - count(DISTINCT serial) FROM certificates`); dup != 0 {
			t.Errorf("%d duplicate serials", dup)
		}
	})

	for _, n := range c.nodes {
		auditVerifyOn(t, n)
	}
	for _, n := range c.nodes {
		if err := n.stop(); err != nil {
			t.Errorf("stopping %s: %v", n.name, err)
		}
	}
	t.Logf("TestMultiNode took %s", time.Since(started).Round(time.Millisecond))
}

// step runs one part of the multi-node test; a part that fails does not
// stop the parts after it, which run on the same nodes.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	start := time.Now()
	t.Run(name, f)
	t.Logf("%s: %s", name, time.Since(start).Round(time.Millisecond))
}

// haCluster is the fixture, its database and its two nodes.
type haCluster struct {
	dir, tmp    string // the fixture; scratch files
	bundle      string // root and issuing CA certificates, for openssl
	db          *pgxpool.Pool
	nodes       []*haNode
	roots       *x509.CertPool
	maxDelay    time.Duration // crl.maxDelay of the fixture
	nodeTimeout time.Duration
}

// haNode is one pkid node of the cluster: daemon2's clients and helpers
// on a config of its own in the shared fixture.
type haNode struct {
	*daemon2
	name, config string
}

// haNodes are the nodes A and B of the fixture in dir, on free loopback
// addresses, and env with the addresses the fixture's scripts read. Their
// logs go to logDir; "" leaves them to the script that starts them.
func haNodes(dir, logDir string, env []string) ([]*haNode, []string) {
	var nodes []*haNode
	for _, n := range []string{"A", "B"} {
		name := "node-" + strings.ToLower(n)
		d := &daemon2{dir: dir, addr: freeAddr(), metrics: freeAddr(), public: freeAddr()}
		if logDir != "" {
			d.logPath = filepath.Join(logDir, name+".log")
		}
		env = append(env, "PKID_"+n+"_API_ADDR="+d.addr, "PKID_"+n+"_METRICS_ADDR="+d.metrics, "PKID_"+n+"_PUBLIC_ADDR="+d.public)
		nodes = append(nodes, &haNode{daemon2: d, name: name, config: filepath.Join(dir, name+".yaml")})
	}
	return nodes, env
}

const haNodeTimeout = 10 * time.Second // the floor: the dead-node step waits this long

func newHACluster(t *testing.T, srv *pgtest.Server) *haCluster {
	t.Helper()
	base := t.TempDir()
	c := &haCluster{dir: filepath.Join(base, "demo"), tmp: filepath.Join(base, "scratch"), maxDelay: 2 * time.Second, nodeTimeout: haNodeTimeout}
	if err := os.Mkdir(c.tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	dsn := srv.NewDatabase(t)
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(c.dir, "pg-password")
	if err := os.WriteFile(pwFile, []byte(srv.Password()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PKID_BIN="+s.bin, "PKID_DATABASE="+dsn, "PKID_DATABASE_PASSWORD_FILE="+pwFile,
		"PKID_NODE_TIMEOUT="+haNodeTimeout.String())
	c.nodes, env = haNodes(c.dir, base, env)
	setup := exec.Command("../softhsm/setup-demo-ha.sh", c.dir)
	setup.Env = env
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("setup-demo-ha.sh: %v\n%s", err, out)
	}
	cfg := readFile(t, c.nodes[1].config)
	for _, want := range []string{`database: "` + dsn + `"`, "nodeName: node-b", "nodeTimeout: 10s", `listen: "` + c.nodes[1].addr + `"`,
		"crl:\n  validity: 7d\n  maxDelay: 2s\n"} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("node-b.yaml lacks %q:\n%s", want, cfg)
		}
	}
	clients, root, err := fixtureClients(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	c.roots = x509.NewCertPool()
	c.roots.AddCert(root)
	c.bundle = writeTemp(t, c.tmp, "bundle.pem", readFile(t, filepath.Join(c.dir, "ca", "root.pem"))+readFile(t, filepath.Join(c.dir, "ca", "ec-issuing.pem")))

	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	poolCfg.ConnConfig.Password, poolCfg.MaxConns = srv.Password(), 2
	if c.db, err = pgxpool.NewWithConfig(context.Background(), poolCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.db.Close)

	for _, n := range c.nodes {
		n.clients = clients
		n.listenNotify(t, filepath.Join(base, n.name+".sock"))
		t.Cleanup(func() {
			if n.cmd != nil && n.cmd.ProcessState == nil {
				n.cmd.Process.Kill()
				<-n.exited
			}
			if t.Failed() {
				t.Logf("%s log (%s):\n%s", n.name, n.logPath, tail(readFile(t, n.logPath), 20000))
			}
		})
	}
	// One after the other: SoftHSM2 2.6.1 fails one of two processes that
	// open the same token at the same instant now and then (pkcs11-tool
	// too: CKR_GENERAL_ERROR, "no slot with token"); once started, the
	// nodes share it — restarts under the other's load included.
	// Concurrent migrations are store/postgres's TestConcurrentMigrations.
	for _, n := range c.nodes {
		n.start(t)
	}
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// listenNotify receives the node's sd_notify messages.
func (n *haNode) listenNotify(t *testing.T, sock string) {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n.sock, n.notes = sock, make(chan string, 64)
	go func() {
		buf := make([]byte, 512)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case n.notes <- string(buf[:k]):
			default:
			}
		}
	}()
}

// launch starts the node's process; waitReady waits for its READY=1.
func (n *haNode) launch(t *testing.T) {
	t.Helper()
	for drained := false; !drained; {
		select {
		case <-n.notes:
		default:
			drained = true
		}
	}
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	n.logOffset = n.logSize(t)
	n.cmd = exec.Command(s.bin, "serve", "--config", n.config)
	n.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.sock)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan error) { exited <- cmd.Wait() }(n.cmd, n.exited)
}

func (n *haNode) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case note := <-n.notes:
			if note == "READY=1" {
				return
			}
		case err := <-n.exited:
			n.exited <- err
			t.Fatalf("%s exited before it was ready: %v\n%s", n.name, err, tail(readFile(t, n.logPath), 4000))
		case <-deadline:
			t.Fatalf("%s not ready within 60s", n.name)
		}
	}
}

func (n *haNode) start(t *testing.T) {
	t.Helper()
	n.launch(t)
	n.waitReady(t)
}

// stop sends SIGTERM and waits for the drained exit.
func (n *haNode) stop() error {
	if n.cmd == nil || n.cmd.ProcessState != nil {
		return nil
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.exited:
		n.exited <- err
		return err
	case <-time.After(40 * time.Second):
		n.cmd.Process.Kill()
		return errors.New("no exit within 40s of SIGTERM")
	}
}

func (n *haNode) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	err := <-n.exited
	n.exited <- err
}

// haIssued is a certificate a client received from a node.
type haIssued struct {
	node, id, serial string // serial: the certificate's, lower-case hex
	serialField      string // as answered
	leaf             *x509.Certificate
	chain            []*x509.Certificate
	pem              string
}

var prodIssue = map[string]any{"profileId": prodClients, "ttl": "1h", "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"}

// issueRaw asks the node for a prod-clients certificate; safe in goroutines.
func (n *haNode) issueRaw(cn string) (int, http.Header, map[string]any, error) {
	req := map[string]any{"commonName": cn}
	for k, v := range prodIssue {
		req[k] = v
	}
	b, _ := json.Marshal(req)
	resp, err := n.clients["client"].Post("https://"+n.addr+"/api/v3/pki/certificates/issue-certificate", "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("%s: status %d, body not JSON: %w", n.name, resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// issue is issueRaw that wants a certificate.
func (n *haNode) issue(cn string) (haIssued, error) {
	code, header, body, err := n.issueRaw(cn)
	if err != nil {
		return haIssued{}, err
	}
	if code != 200 {
		return haIssued{}, &haRefusal{node: n.name, code: code, retryAfter: header.Get("Retry-After"), body: body}
	}
	got := haIssued{node: n.name}
	got.id, _ = body["certificateId"].(string)
	got.serialField, _ = body["serialNumber"].(string)
	got.pem, _ = body["certificate"].(string)
	if got.leaf, err = parseCert(got.pem); err != nil {
		return haIssued{}, fmt.Errorf("%s: %w", n.name, err)
	}
	got.serial = got.leaf.SerialNumber.Text(16)
	chain, _ := body["certificateChain"].(string)
	for rest := []byte(chain); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return haIssued{}, fmt.Errorf("%s: chain: %w", n.name, err)
		}
		got.chain = append(got.chain, c)
	}
	return got, nil
}

// certificateRow reports whether a "resolved pending record" line is a
// certificate's (a CRL's names none).
func certificateRow(line map[string]any) bool {
	id, _ := line["certificateId"].(string)
	return id != ""
}

// certificateRows counts the "resolved pending record" lines of node's
// certificate rows.
func certificateRows(lines []map[string]any, node string) int {
	n := 0
	for _, r := range lines {
		if r["node"] == node && certificateRow(r) {
			n++
		}
	}
	return n
}

// haRefusal is an answer other than 200 to an issuing request.
type haRefusal struct {
	node       string
	code       int
	retryAfter string
	body       map[string]any
}

func (r *haRefusal) Error() string {
	return fmt.Sprintf("%s: %d Retry-After=%q %v", r.node, r.code, r.retryAfter, r.body)
}

// verifyLeaf checks a received certificate as a client would: it chains to
// the demo root through the chain it came with, for client auth, and its
// serialNumber field is its serial.
func (c *haCluster) verifyLeaf(t *testing.T, got haIssued) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, ca := range got.chain {
		inter.AddCert(ca)
	}
	if _, err := got.leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime: got.leaf.NotBefore.Add(time.Second)}); err != nil {
		t.Errorf("certificate %s from %s does not verify: %v", got.id, got.node, err)
	}
	if strings.TrimLeft(strings.ToLower(got.serialField), "0") != got.serial {
		t.Errorf("serialNumber %s is not the certificate's %s", got.serialField, got.serial)
	}
}

func (c *haCluster) leafFile(t *testing.T, got haIssued) string {
	return writeTemp(t, c.tmp, got.serial+".pem", got.pem+"\n")
}

// pick returns the k-th certificate node issued in the issuance step.
func pick(issued []haIssued, node string, k int) haIssued {
	for _, got := range issued {
		if got.node == node {
			if k == 0 {
				return got
			}
			k--
		}
	}
	panic("no certificate of " + node)
}

// recordsOf is `pkid records list --config` of node n: id → status.
func recordsOf(t *testing.T, n *haNode) map[string]string {
	t.Helper()
	out, errOut, code := s.pkid(t, "records", "list", "--config", n.config)
	if code != 0 {
		t.Fatalf("records list --config %s: %d %s", filepath.Base(n.config), code, errOut)
	}
	status := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct{ CertificateID, Status string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("records list line %q: %v", line, err)
		}
		status[r.CertificateID] = r.Status
	}
	return status
}

// auditVerifyOn runs `pkid audit verify` with node n's config.
func auditVerifyOn(t *testing.T, n *haNode) {
	t.Helper()
	out, errOut, code := s.pkid(t, "audit", "verify", "--config", n.config)
	if code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Errorf("audit verify --config %s: %d %s %s", filepath.Base(n.config), code, out, errOut)
	}
}

// query runs a read-only statement and returns each row's columns joined
// by spaces.
func (c *haCluster) query(t *testing.T, sql string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rows, err := c.db.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		cols := make([]string, len(vals))
		for k, v := range vals {
			cols[k] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(cols, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// pendingOf is how many certificate rows of node are pending.
func (c *haCluster) pendingOf(t *testing.T, node string) int {
	t.Helper()
	return c.count(t, `SELECT count(*) FROM certificates WHERE status = 'pending' AND node = $1`, node)
}

func (c *haCluster) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	rows := c.query(t, sql, args...)
	if len(rows) != 1 {
		t.Fatalf("%s: %d rows", sql, len(rows))
	}
	n, err := strconv.Atoi(rows[0])
	if err != nil {
		t.Fatalf("%s: %q", sql, rows[0])
	}
	return n
}

// listed reports whether crl lists leaf's serial.
func listed(crl *x509.RevocationList, leaf *x509.Certificate) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// waitCRLOn polls n's CRL of ca until ok (nil: any) holds.
func waitCRLOn(t *testing.T, n *haNode, ca string, ok func(*x509.RevocationList) bool, within time.Duration) (*x509.RevocationList, []byte) {
	t.Helper()
	return pollCRL(t, n.public, ca, within, func(crl *x509.RevocationList) bool { return ok == nil || ok(crl) },
		func(crl *x509.RevocationList) string {
			return fmt.Sprintf("%s's CRL %d of %s did not change as expected within %s", n.name, crl.Number, ca, within)
		})
}

// sameCRL waits until both nodes serve one CRL of ca (the same DER) for
// which ok holds, and returns it.
func (c *haCluster) sameCRL(t *testing.T, ca string, ok func(*x509.RevocationList) bool) *x509.RevocationList {
	t.Helper()
	deadline := time.Now().Add(3*c.maxDelay + 5*time.Second)
	for {
		crlA, derA := waitCRLOn(t, c.nodes[0], ca, ok, time.Until(deadline))
		_, derB, _ := fetchCRL(t, c.nodes[1].public, ca)
		if bytes.Equal(derA, derB) {
			return crlA
		}
		if time.Now().After(deadline) {
			crlB, _ := x509.ParseRevocationList(derB)
			t.Fatalf("the nodes serve different CRLs of %s: %d and %d", ca, crlA.Number, crlB.Number)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// oneCRLMaker checks the CRLs in the store numbered above after: per CA,
// numbers that follow one another without a gap, every one issued, all
// made by one node, which alone logged them.
func (c *haCluster) oneCRLMaker(t *testing.T, after int) {
	t.Helper()
	rows := c.query(t, `SELECT ca, number, status, node FROM crls WHERE number > $1 ORDER BY ca, number`, after)
	type crlRow struct {
		number       int
		status, node string
	}
	byCA := map[string][]crlRow{}
	for _, r := range rows {
		f := strings.Fields(r)
		n, _ := strconv.Atoi(f[1])
		byCA[f[0]] = append(byCA[f[0]], crlRow{n, f[2], f[3]})
	}
	if len(byCA["ec-issuing"]) == 0 {
		t.Fatalf("no CRL of ec-issuing numbered above %d", after)
	}
	published := map[string]map[string][]int{} // node → CA → numbers it logged
	for _, n := range c.nodes {
		published[n.name] = map[string][]int{}
		for _, line := range n.allLog(t, "published CRL") {
			ca, _ := line["ca"].(string)
			num, _ := line["number"].(float64)
			if int(num) > after {
				published[n.name][ca] = append(published[n.name][ca], int(num))
			}
		}
	}
	cas := make([]string, 0, len(byCA))
	for ca := range byCA {
		cas = append(cas, ca)
	}
	sort.Strings(cas)
	for _, ca := range cas {
		list := byCA[ca]
		makers := map[string]bool{}
		var numbers []int
		for k, r := range list {
			numbers = append(numbers, r.number)
			makers[r.node] = true
			if r.status != "issued" {
				t.Errorf("CRL %d of %s is %s", r.number, ca, r.status)
			}
			if k > 0 && r.number != list[k-1].number+1 {
				t.Errorf("CRL numbers of %s jump from %d to %d", ca, list[k-1].number, r.number)
			}
		}
		if len(makers) != 1 {
			t.Errorf("CRLs %v of %s were made by %d nodes: %v", numbers, ca, len(makers), makers)
		}
		for _, n := range c.nodes {
			got := published[n.name][ca]
			if makers[n.name] != (len(got) > 0) || (len(got) > 0 && fmt.Sprint(got) != fmt.Sprint(numbers)) {
				t.Errorf("%s logged CRLs %v of %s; the store holds %v by %v", n.name, got, ca, numbers, makers)
			}
		}
		t.Logf("CRLs %v of %s, by %v", numbers, ca, makers)
	}
}

// allLog is logSinceStart over every run of the node.
func (n *haNode) allLog(t *testing.T, msg string) []map[string]any {
	t.Helper()
	return n.logSince(t, 0, msg)
}

// ocsp asks node n about got with openssl ocsp, the request by POST to the
// node's /ocsp, and returns openssl's output; the answer must verify.
func (c *haCluster) ocsp(t *testing.T, n *haNode, got haIssued) string {
	t.Helper()
	issuer := writeTemp(t, c.tmp, "issuer.pem", readFile(t, filepath.Join(c.dir, "ca", "ec-issuing.pem")))
	leaf := c.leafFile(t, got)
	out, err := openssl(t, c.tmp, "ocsp", "-issuer", issuer, "-cert", leaf, "-url", "http://"+n.public+"/ocsp", "-CAfile", c.bundle, "-no_nonce")
	if err != nil || !strings.Contains(out, "Response verify OK") {
		t.Fatalf("openssl ocsp against %s: %v\n%s", n.name, err, out)
	}
	return out
}

// waitOCSP polls n's OCSP answer for got until it says want.
func (c *haCluster) waitOCSP(t *testing.T, n *haNode, got haIssued, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := c.ocsp(t, n, got)
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's OCSP answer never said %q:\n%s", n.name, want, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// crashUnderLoad kills node n with SIGKILL while it issues — once during
// (if not nil) has run, 30 more certificates were received and the store
// holds reservations of n's — until a kill leaves pending rows of n's in
// the store (at most three rounds, restarting n between them), and returns
// how many it left.
func (c *haCluster) crashUnderLoad(t *testing.T, n *haNode, during func()) int {
	t.Helper()
	for round := 1; round <= 3; round++ {
		if round > 1 {
			n.start(t)
		}
		l := startHALoad(n, 12)
		if during != nil {
			during()
		}
		l.waitMore(t, 30)
		// SIGKILL while the store holds reservations of n's in flight (a
		// row may still be finalized between the look and the kill: then
		// another round).
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if c.pendingOf(t, n.name) >= 2 {
				break
			}
		}
		n.kill()
		c.waitDisconnected(t, n)
		got, _ := l.stop()
		pending := c.pendingOf(t, n.name)
		t.Logf("round %d: SIGKILL of %s after %d certificates left %d pending rows", round, n.name, len(got), pending)
		// Whatever the client received is recorded as issued.
		status := recordsOf(t, c.nodes[1-c.index(n)])
		for id := range got {
			if status[id] != "issued" {
				t.Errorf("a client received %s from %s before the kill; its record is %q", id, n.name, status[id])
			}
		}
		if pending > 0 {
			return pending
		}
	}
	t.Fatalf("three SIGKILLs of %s under load left no pending row; the test cannot show recovery", n.name)
	return 0
}

// waitDisconnected waits until PostgreSQL has ended every session of the
// killed node n: a COMMIT that reached the server before the kill still
// commits, so until then n's rows may still change.
func (c *haCluster) waitDisconnected(t *testing.T, n *haNode) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left := c.count(t, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, "pkid/"+n.name)
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL still has %d sessions of the killed %s", left, n.name)
		}
	}
}

func (c *haCluster) index(n *haNode) int {
	for k, m := range c.nodes {
		if m == n {
			return k
		}
	}
	panic("not a node of the cluster")
}

// haLoad keeps workers issuing from one node until stopped (or until the
// node stops answering).
type haLoad struct {
	quit     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	got      map[string]haIssued
	failed   []string
	refused  []*haRefusal  // the failures that were answers
	progress chan struct{} // a certificate or a refusal arrived
}

func startHALoad(n *haNode, workers int) *haLoad {
	l := &haLoad{quit: make(chan struct{}), got: map[string]haIssued{}, progress: make(chan struct{}, 1)}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-l.quit:
					return
				default:
				}
				got, err := n.issue(fmt.Sprintf("load-%d-%d.prod.example.internal", w, k))
				var refusal *haRefusal
				l.mu.Lock()
				if err != nil {
					l.failed = append(l.failed, err.Error())
					if errors.As(err, &refusal) {
						l.refused = append(l.refused, refusal)
					}
				} else {
					l.got[got.id] = got
				}
				l.mu.Unlock()
				switch {
				case err == nil:
					l.progressed()
				case refusal != nil:
					l.progressed()
					time.Sleep(20 * time.Millisecond) // a client's back-off, not a wait for anything
				default:
					var ne net.Error
					if errors.As(err, &ne) || strings.Contains(err.Error(), "connection") || strings.Contains(err.Error(), "EOF") {
						return // the node died under us
					}
				}
			}
		}()
	}
	return l
}

// progressed wakes a wait: a certificate or a refusal arrived.
func (l *haLoad) progressed() {
	select {
	case l.progress <- struct{}{}:
	default:
	}
}

// waitMore waits until k more certificates than now were received.
func (l *haLoad) waitMore(t *testing.T, k int) {
	t.Helper()
	l.mu.Lock()
	goal := len(l.got) + k
	l.mu.Unlock()
	l.waitFor(t, func() (bool, string) {
		return len(l.got) >= goal, fmt.Sprintf("the load stalled at %d certificates (%d failures)", len(l.got), len(l.failed))
	})
}

// waitRefused waits until the load has had a refusal.
func (l *haLoad) waitRefused(t *testing.T) {
	t.Helper()
	l.waitFor(t, func() (bool, string) { return len(l.refused) > 0, "the load had no refusal within 30s" })
}

// waitFor waits, on the load's progress, until done (called under l.mu)
// holds; it fails with done's message once 30 s pass without progress.
func (l *haLoad) waitFor(t *testing.T, done func() (bool, string)) {
	t.Helper()
	for {
		l.mu.Lock()
		ok, failure := done()
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-l.progress:
		case <-time.After(30 * time.Second):
			t.Fatal(failure)
		}
	}
}

// stop ends the load and returns what it received and what failed.
func (l *haLoad) stop() (map[string]haIssued, []string) {
	close(l.quit)
	l.wg.Wait()
	return l.got, l.failed
}

// metricSum adds up every sample of the node whose series starts with name.
func metricSum(t *testing.T, n *haNode, name string) float64 {
	t.Helper()
	_, text := httpGet(t, "http://"+n.metrics+"/metrics")
	sum := 0.0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

func waitReadyz(t *testing.T, n *haNode, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := httpGet(t, "http://"+n.metrics+"/readyz")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s /readyz = %d %s, want %d", n.name, code, body, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
