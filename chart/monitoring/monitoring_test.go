package monitoring

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetLabels are added by Prometheus to every scraped series (job, instance) and by the
// Kubernetes service discovery the chart's README suggests (PodMonitor, ServiceMonitor).
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "service", "endpoint"}

// catalog maps every series name the service exports to its label names: a histogram's
// _bucket (with le), _sum and _count, a summary's quantiles (quantile), _sum and _count.
type catalog map[string][]string

func loadCatalog(t *testing.T) catalog {
	t.Helper()
	f, err := os.Open("testdata/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := catalog{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			t.Fatalf("metrics.txt: %q is not \"name type [labels]\"", s.Text())
		}
		name, typ, ls := fields[0], fields[1], []string(nil)
		if len(fields) > 2 {
			ls = strings.Split(fields[2], ",")
		}
		switch typ {
		case "histogram":
			c[name+"_bucket"] = append(slices.Clone(ls), "le")
			c[name+"_sum"], c[name+"_count"] = ls, ls
		case "summary":
			c[name] = append(slices.Clone(ls), "quantile")
			c[name+"_sum"], c[name+"_count"] = ls, ls
		default:
			c[name] = ls
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(c) == 0 {
		t.Fatal("metrics.txt lists no metric")
	}
	return c
}

var promql = parser.NewParser(parser.Options{})

// check parses expr and reports every metric it selects that the service does not export,
// every label it matches or groups by that none of its metrics (nor Prometheus) carries, and
// returns the metrics it names.
func (c catalog) check(expr string) (names []string, problems []string) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, []string{fmt.Sprintf("does not parse: %v", err)}
	}
	known := slices.Clone(targetLabels)
	var matched, grouped []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch v := n.(type) {
		case *parser.VectorSelector:
			name := v.Name
			for _, m := range v.LabelMatchers {
				if m.Name == labels.MetricName {
					if m.Type != labels.MatchEqual {
						problems = append(problems, fmt.Sprintf("selects metrics by a pattern (%s): name each", m))
					}
					name = m.Value
				} else {
					matched = append(matched, m.Name)
				}
			}
			ls, ok := c[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("names %s, which the service does not export", name))
			}
			names = append(names, name)
			known = append(known, ls...)
		case *parser.AggregateExpr:
			grouped = append(grouped, v.Grouping...)
		case *parser.BinaryExpr:
			if v.VectorMatching != nil {
				grouped = append(grouped, v.VectorMatching.MatchingLabels...)
			}
		}
		return nil
	})
	for _, l := range append(matched, grouped...) {
		if !slices.Contains(known, l) {
			problems = append(problems, fmt.Sprintf("uses label %q, which none of %v carries", l, names))
		}
	}
	return names, problems
}

// TestCatalogCheckCatches: the check fails what it must (so that the tests below can fail).
func TestCatalogCheckCatches(t *testing.T) {
	c := catalog{"jes_x_total": {"outcome"}, "jes_d_seconds_bucket": {"le"}}
	for expr, want := range map[string]string{
		`rate(jes_x_total[5m])`:                                                 "",
		`sum by (outcome) (rate(jes_x_total{namespace="a"}[5m]))`:               "",
		`histogram_quantile(0.9, sum by (le) (rate(jes_d_seconds_bucket[5m])))`: "",
		`rate(jes_y_total[5m])`:                                                 "does not export",
		`rate(jes_d_seconds[5m])`:                                               "does not export",
		`sum by (outcme) (rate(jes_x_total[5m]))`:                               `label "outcme"`,
		`rate(jes_x_total{result="fail"}[5m])`:                                  `label "result"`,
		`rate({__name__=~"jes_.*"}[5m])`:                                        "pattern",
		`rate(jes_x_total[5m]`:                                                  "does not parse",
	} {
		_, problems := c.check(expr)
		got := strings.Join(problems, "; ")
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("%s: problems %q, want %q", expr, got, want)
		}
	}
}

// grafanaVars are the dashboard's variables with values PromQL parses: Grafana's interval
// variables and the namespace picker.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$namespace", ".*")

type panel struct {
	Type       string            `json:"type"`
	Title      string            `json:"title"`
	Datasource map[string]string `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestDashboard: every panel queries the dashboard's data source with PromQL that parses and
// names only the service's metrics and labels; together they show events by outcome, queue
// depth, action results, task durations, deliveries and retries.
func TestDashboard(t *testing.T) {
	c := loadCatalog(t)
	raw, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	used := map[string]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q: datasource %v, want the ${datasource} variable", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, target := range p.Targets {
				expr := grafanaVars.Replace(target.Expr)
				if strings.Contains(expr, "$") {
					t.Errorf("panel %q: unknown variable in %s", p.Title, target.Expr)
					continue
				}
				names, problems := c.check(expr)
				for _, p2 := range problems {
					t.Errorf("panel %q: %s: %s", p.Title, target.Expr, p2)
				}
				for _, n := range names {
					used[n] = true
				}
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((\w+), *(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		if _, problems := c.check(m[1] + `{` + m[2] + `!=""}`); len(problems) > 0 {
			t.Errorf("variable %s: %v", v.Name, problems)
		}
	}
	for _, want := range []string{"jes_events_received_total", "jes_events_in_flight", "jes_actions_total", "jes_task_duration_seconds_bucket",
		"jes_outgoing_events_total", "jes_outgoing_event_retries_total"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestAlertRules: rules.yaml loads as Prometheus loads rule files (strict fields, expressions
// and templates checked); every expression names only the service's metrics and labels; every
// alert has a severity, a summary and a description.
func TestAlertRules(t *testing.T) {
	c := loadCatalog(t)
	raw, err := os.ReadFile("rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(raw, false, model.UTF8Validation, promql, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, err := range errs {
		t.Errorf("rules.yaml: %v", err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatal("rules.yaml has no rule group")
	}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			_, problems := c.check(r.Expr)
			for _, p := range problems {
				t.Errorf("%s: %s", name, p)
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			if !slices.Contains([]string{"info", "warning", "critical"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want info, warning or critical", name, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", name)
			}
		}
	}
	if alerts == 0 {
		t.Error("no alert")
	}
}
