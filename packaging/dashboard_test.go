package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// The dashboard pkid ships (configs/grafana-dashboard.json, installed as
// /usr/share/pkid/grafana/pkid.json) is checked here against what Grafana
// needs to load it and against the metric families pkid exports, which
// testdata/metrics.golden lists (the integration suite keeps that file equal
// to a real scrape). A panel for a metric pkid does not export yet fails
// here until the family is added to the golden file with its code.

const (
	dashboardFile = "../configs/grafana-dashboard.json"
	goldenFile    = "../testdata/metrics.golden"
	// Every panel and query reads the Prometheus data source the user picks.
	datasourceUID = "${datasource}"
)

// What DESIGN.md §7 and issue 13 ask the dashboard to show: each of these
// series is read by some panel.
var dashboardMustShow = []string{
	"pkid_issuance_requests_total",                    // issuance rate and outcomes per profile
	"pkid_issuance_duration_seconds_bucket",           // latency percentiles
	"pkid_hsm_sign_duration_seconds_bucket",           // HSM sign latency
	"pkid_hsm_errors_total",                           // HSM errors
	"pkid_hsm_up",                                     // token up
	"pkid_pending_records",                            // pending records
	"pkid_ca_not_after_timestamp_seconds",             // CA expiry
	"pkid_crl_next_update_timestamp_seconds",          // CRL expiry
	"pkid_ocsp_responder_not_after_timestamp_seconds", // OCSP responder expiry
	"pkid_revocations_total",                          // revocations
	"pkid_ocsp_responses_total",                       // OCSP
	"pkid_auth_logins_total",                          // logins
}

type dashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []dashPanel    `json:"panels"`
	Templating    dashTemplating `json:"templating"`
}

type dashTemplating struct {
	List []dashVariable `json:"list"`
}

type dashVariable struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *dsRef          `json:"datasource"`
}

type dashPanel struct {
	ID         int          `json:"id"`
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	GridPos    *gridPos     `json:"gridPos"`
	Datasource *dsRef       `json:"datasource"`
	Targets    []dashTarget `json:"targets"`
	Collapsed  bool         `json:"collapsed"`
	Panels     []dashPanel  `json:"panels"` // a collapsed row's
}

type gridPos struct {
	H, W, X, Y int
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashTarget struct {
	RefID      string `json:"refId"`
	Expr       string `json:"expr"`
	Datasource *dsRef `json:"datasource"`
}

// family is one line of testdata/metrics.golden: "name type label,label".
type family struct {
	typ    string
	labels []string
}

func readGolden(t *testing.T) map[string]family {
	t.Helper()
	f, err := os.Open(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fams := map[string]family{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) > 3 || len(fields) < 2 {
			t.Fatalf("%s:%d: want \"name type labels\", got %q", goldenFile, n, sc.Text())
		}
		fam := family{typ: fields[1]}
		if len(fields) == 3 {
			fam.labels = strings.Split(fields[2], ",")
		}
		fams[fields[0]] = fam
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(fams) == 0 {
		t.Fatalf("%s lists no metric family", goldenFile)
	}
	return fams
}

// series is a name a PromQL selector may read: a counter's or gauge's own
// name, or a histogram's _bucket, _sum and _count (never its bare name,
// which no series has).
type series struct {
	family string
	typ    string   // counter, gauge, histogram_bucket, histogram_sum, histogram_count
	labels []string // the family's, the target's job and instance, and le for buckets
}

func seriesOf(fams map[string]family, name string) (series, bool) {
	if fam, ok := fams[name]; ok && fam.typ != "histogram" && fam.typ != "summary" {
		return series{family: name, typ: fam.typ, labels: append([]string{"job", "instance"}, fam.labels...)}, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if fam, found := fams[base]; ok && found && fam.typ == "histogram" {
			s := series{family: base, typ: "histogram" + suffix, labels: append([]string{"job", "instance"}, fam.labels...)}
			if suffix == "_bucket" {
				s.labels = append(s.labels, "le")
			}
			return s, true
		}
	}
	return series{}, false
}

var grafanaVariable = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// substitute replaces Grafana's variables with what PromQL can parse: a
// duration for the interval ones and a marker for $job and $instance, which
// checkExpr then looks for in every selector's matchers.
func substitute(expr string, vars map[string]bool) (string, []string) {
	var unknown []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVariable.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		switch {
		case name == "__rate_interval" || name == "__interval" || name == "__range":
			return "5m"
		case vars[name]:
			return "__var_" + name + "__"
		default:
			unknown = append(unknown, name)
			return m
		}
	})
	return out, unknown
}

// exprReport is what checkExpr found in one expression.
type exprReport struct {
	problems []string
	unknown  []string // names no family of the golden file exports
	read     []string // series names the expression selects
	quantile []string // series histogram_quantile is computed over
}

// checkExpr parses expr (Grafana variables substituted) as Prometheus would
// without feature flags, and checks every selector against the golden
// families: known name, known labels, $job and $instance applied; rate()
// only over counters and histogram parts; histogram_quantile over buckets
// aggregated by le; grouping only by labels the aggregated series have.
func checkExpr(expr string, fams map[string]family, vars map[string]bool, scoped bool) exprReport {
	var r exprReport
	text, unknownVars := substitute(expr, vars)
	for _, v := range unknownVars {
		r.problems = append(r.problems, fmt.Sprintf("variable $%s is not defined by the dashboard", v))
	}
	node, err := parser.NewParser(parser.Options{}).ParseExpr(text)
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("does not parse: %v", err))
		return r
	}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			r.checkSelector(n, fams, scoped)
		case *parser.Call:
			r.checkCall(n, fams)
		case *parser.AggregateExpr:
			r.checkGrouping(n, fams)
		}
		return nil
	})
	return r
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

func (r *exprReport) checkSelector(vs *parser.VectorSelector, fams map[string]family, scoped bool) {
	name := selectorName(vs)
	if name == "" {
		r.problems = append(r.problems, fmt.Sprintf("selector %s names no metric", vs))
		return
	}
	r.read = append(r.read, name)
	s, ok := seriesOf(fams, name)
	if !ok {
		r.unknown = append(r.unknown, name)
		return
	}
	for _, m := range vs.LabelMatchers {
		if m.Name != labels.MetricName && !slices.Contains(s.labels, m.Name) {
			r.problems = append(r.problems, fmt.Sprintf("%s has no label %q (it has %s)", name, m.Name, strings.Join(s.labels, ", ")))
		}
	}
	if !scoped {
		return
	}
	for _, v := range []string{"job", "instance"} {
		if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
			return m.Name == v && m.Type == labels.MatchRegexp && m.Value == "__var_"+v+"__"
		}) {
			r.problems = append(r.problems, fmt.Sprintf("selector %s lacks %s=~\"$%s\", so the $%s variable does not apply", name, v, v, v))
		}
	}
}

// selectorsUnder returns the series of every selector in n.
func selectorsUnder(n parser.Node, fams map[string]family) []series {
	var out []series
	parser.Inspect(n, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if s, ok := seriesOf(fams, selectorName(vs)); ok {
				out = append(out, s)
			}
		}
		return nil
	})
	return out
}

func (r *exprReport) checkCall(c *parser.Call, fams map[string]family) {
	switch c.Func.Name {
	case "rate", "irate", "increase":
		for _, s := range selectorsUnder(c.Args[0], fams) {
			if s.typ == "gauge" {
				r.problems = append(r.problems, fmt.Sprintf("%s() of the gauge %s", c.Func.Name, s.family))
			}
		}
	case "histogram_quantile":
		arg := c.Args[1]
		if p, ok := arg.(*parser.ParenExpr); ok {
			arg = p.Expr
		}
		if agg, ok := arg.(*parser.AggregateExpr); ok && (agg.Without || !slices.Contains(agg.Grouping, "le")) {
			r.problems = append(r.problems, "histogram_quantile over an aggregation that drops le")
		}
		under := selectorsUnder(arg, fams)
		if len(under) == 0 {
			r.problems = append(r.problems, "histogram_quantile over no known histogram")
		}
		for _, s := range under {
			if s.typ != "histogram_bucket" {
				r.problems = append(r.problems, fmt.Sprintf("histogram_quantile over %s, which is not a histogram's _bucket", s.family))
			}
			r.quantile = append(r.quantile, s.family+"_bucket")
		}
	}
}

func (r *exprReport) checkGrouping(a *parser.AggregateExpr, fams map[string]family) {
	under := selectorsUnder(a.Expr, fams)
	if len(under) == 0 {
		return // unknown names are reported by checkSelector
	}
	for _, l := range a.Grouping {
		if !slices.ContainsFunc(under, func(s series) bool { return slices.Contains(s.labels, l) }) {
			r.problems = append(r.problems, fmt.Sprintf("%s by %q, a label none of its series has", a.Op, l))
		}
	}
}

func overlap(a, b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	fams := readGolden(t)

	t.Run("dashboard", func(t *testing.T) {
		// Datasource references as {type, uid} objects and the panel types
		// used here need schema 36 or later (Grafana 9+).
		if d.SchemaVersion < 36 {
			t.Errorf("schemaVersion %d, want 36 or later", d.SchemaVersion)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("uid %q, title %q: both are needed for provisioning and links", d.UID, d.Title)
		}
		if len(d.Panels) == 0 {
			t.Fatal("no panels")
		}
	})

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	t.Run("variables", func(t *testing.T) {
		byName := map[string]dashVariable{}
		for _, v := range d.Templating.List {
			if _, dup := byName[v.Name]; dup {
				t.Errorf("variable %q defined twice", v.Name)
			}
			byName[v.Name] = v
		}
		ds, ok := byName["datasource"]
		if !ok || ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
			t.Errorf("want a datasource variable named datasource querying prometheus, got %+v", ds)
		}
		for _, name := range []string{"job", "instance"} {
			v, ok := byName[name]
			if !ok {
				t.Errorf("no $%s variable", name)
				continue
			}
			if v.Type != "query" || v.Datasource == nil || *v.Datasource != (dsRef{"prometheus", datasourceUID}) {
				t.Errorf("$%s: want a query variable on datasource %s, got type %q datasource %+v", name, datasourceUID, v.Type, v.Datasource)
			}
			m := labelValues.FindStringSubmatch(v.Definition)
			if m == nil || m[2] != name {
				t.Errorf("$%s: definition %q, want label_values(<selector>, %s)", name, v.Definition, name)
				continue
			}
			r := checkExpr(m[1], fams, vars, false)
			for _, p := range r.problems {
				t.Errorf("$%s: %s", name, p)
			}
			if len(r.unknown) > 0 {
				t.Errorf("$%s: reads %s, not in %s", name, strings.Join(r.unknown, ", "), goldenFile)
			}
		}
	})

	// panels, flattened: a collapsed row carries its own.
	var all []dashPanel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}

	t.Run("panels", func(t *testing.T) {
		ids := map[int]string{}
		var placed []dashPanel
		for _, p := range all {
			if p.ID <= 0 {
				t.Errorf("panel %q: id %d, want a positive id", p.Title, p.ID)
			} else if other, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type == "" || p.Title == "" {
				t.Errorf("panel %d: type %q, title %q: both are needed", p.ID, p.Type, p.Title)
			}
			g := p.GridPos
			if g == nil {
				t.Errorf("panel %q: no gridPos", p.Title)
				continue
			}
			if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v is outside Grafana's 24-column grid", p.Title, *g)
			}
			if p.Type == "row" {
				if len(p.Targets) > 0 {
					t.Errorf("row %q has queries", p.Title)
				}
				if !p.Collapsed && len(p.Panels) > 0 {
					t.Errorf("row %q is open but holds panels (Grafana would drop them)", p.Title)
				}
			} else {
				if p.Datasource == nil || *p.Datasource != (dsRef{"prometheus", datasourceUID}) {
					t.Errorf("panel %q: datasource %+v, want {prometheus %s}", p.Title, p.Datasource, datasourceUID)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				refs := map[string]bool{}
				for _, q := range p.Targets {
					if q.RefID == "" || refs[q.RefID] {
						t.Errorf("panel %q: refId %q missing or repeated", p.Title, q.RefID)
					}
					refs[q.RefID] = true
					if q.Datasource == nil || *q.Datasource != (dsRef{"prometheus", datasourceUID}) {
						t.Errorf("panel %q query %s: datasource %+v, want {prometheus %s}", p.Title, q.RefID, q.Datasource, datasourceUID)
					}
				}
			}
			if slices.ContainsFunc(d.Panels, func(top dashPanel) bool { return top.ID == p.ID }) {
				for _, o := range placed {
					if overlap(*g, *o.GridPos) {
						t.Errorf("panels %q %+v and %q %+v overlap", o.Title, *o.GridPos, p.Title, *g)
					}
				}
				placed = append(placed, p)
			}
		}
	})

	t.Run("queries", func(t *testing.T) {
		unknown := map[string][]string{}
		read := map[string]bool{}
		quantiles := map[string]bool{}
		for _, p := range all {
			for _, q := range p.Targets {
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("panel %q query %s: empty expr", p.Title, q.RefID)
					continue
				}
				r := checkExpr(q.Expr, fams, vars, true)
				for _, msg := range r.problems {
					t.Errorf("panel %q query %s: %s\n\t%s", p.Title, q.RefID, msg, q.Expr)
				}
				for _, n := range r.unknown {
					unknown[n] = append(unknown[n], p.Title)
				}
				for _, n := range r.read {
					read[n] = true
				}
				for _, n := range r.quantile {
					quantiles[n] = true
				}
			}
		}
		if len(unknown) > 0 {
			names := make([]string, 0, len(unknown))
			for n := range unknown {
				names = append(names, n)
			}
			sort.Strings(names)
			var b strings.Builder
			for _, n := range names {
				fmt.Fprintf(&b, "\n\t%s (panels %q)", n, unknown[n])
			}
			t.Errorf("the dashboard reads metrics %s does not list; add each family there with the code that exports it:%s",
				filepath.Base(goldenFile), b.String())
		}
		for _, n := range dashboardMustShow {
			if !read[n] {
				t.Errorf("no panel reads %s", n)
			}
		}
		for _, h := range []string{"pkid_issuance_duration_seconds_bucket", "pkid_hsm_sign_duration_seconds_bucket"} {
			if !quantiles[h] {
				t.Errorf("no histogram_quantile over %s", h)
			}
		}
	})
}

// The checker itself: each rule on an expression it must refuse.
func TestCheckExpr(t *testing.T) {
	fams := map[string]family{
		"pkid_issuance_requests_total":   {"counter", []string{"outcome", "profile"}},
		"pkid_issuance_duration_seconds": {"histogram", []string{"profile"}},
		"pkid_hsm_up":                    {"gauge", nil},
	}
	vars := map[string]bool{"job": true, "instance": true, "datasource": true}
	const s = `job=~"$job", instance=~"$instance"`
	tests := []struct {
		name, expr string
		problem    string // part of the one problem expected; "" for none
		unknown    string
	}{
		{"good rate", `sum by (profile) (rate(pkid_issuance_requests_total{` + s + `}[$__rate_interval]))`, "", ""},
		{"good quantile", `histogram_quantile(0.9, sum by (le, profile) (rate(pkid_issuance_duration_seconds_bucket{` + s + `}[5m])))`, "", ""},
		{"syntax", `sum(rate(pkid_hsm_up{` + s + `}[5m])`, "does not parse", ""},
		{"unknown metric", `pkid_nope{` + s + `}`, "", "pkid_nope"},
		{"bare histogram name", `pkid_issuance_duration_seconds{` + s + `}`, "", "pkid_issuance_duration_seconds"},
		{"unknown label", `pkid_hsm_up{` + s + `, ca="x"}`, `no label "ca"`, ""},
		{"no job matcher", `pkid_hsm_up{instance=~"$instance"}`, `lacks job=~"$job"`, ""},
		{"undefined variable", `pkid_issuance_requests_total{` + s + `, profile="$nope"}`, "$nope is not defined", ""},
		{"rate of a gauge", `rate(pkid_hsm_up{` + s + `}[5m])`, "rate() of the gauge", ""},
		{"quantile without le", `histogram_quantile(0.9, sum by (profile) (rate(pkid_issuance_duration_seconds_bucket{` + s + `}[5m])))`, "drops le", ""},
		{"quantile of a counter", `histogram_quantile(0.9, rate(pkid_issuance_requests_total{` + s + `}[5m]))`, "not a histogram's _bucket", ""},
		{"group by a missing label", `sum by (ca) (pkid_hsm_up{` + s + `})`, `by "ca"`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checkExpr(tc.expr, fams, vars, true)
			switch {
			case tc.problem == "" && len(r.problems) > 0:
				t.Errorf("problems %q, want none", r.problems)
			case tc.problem != "" && (len(r.problems) != 1 || !strings.Contains(r.problems[0], tc.problem)):
				t.Errorf("problems %q, want one containing %q", r.problems, tc.problem)
			}
			if got := strings.Join(r.unknown, ","); got != tc.unknown {
				t.Errorf("unknown names %q, want %q", got, tc.unknown)
			}
		})
	}
}
