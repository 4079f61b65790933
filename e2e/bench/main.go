// Command bench measures the job-executor-service against the e2e cluster's real API server
// and etcd (make bench): the real service binary, the Keptn API stand-in (in this process),
// and next to every figure a baseline measured in the same run. It writes BENCHMARKS.md.
//
// Scale mode: Kubernetes' Job controller is turned off for the run (e2e/cluster.sh
// jobcontroller off; on again at the end), so Jobs make no pods; the driver completes each Job
// as the Job controller and a kubelet would (a terminated pod on an unschedulable virtual
// node, then the Job's status through the status subresource). So 1,000 concurrent actions
// fit on 2 cores, and "Job Complete" has an exact time: when its status was written.
//
// It owns measuring only; it must not change the cluster beyond its namespace, its virtual
// node and the Job controller switch, all undone at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

// size is how much each row does; smoke keeps the driver from rotting in seconds.
type size struct {
	acceptN, acceptConc, acceptRounds int
	lagActions                        []int
	scaleActions                      int
	unmatchedFor                      time.Duration
	unmatchedConc, unmatchedRounds    int
}

var (
	full  = size{100, 8, 3, []int{20, 200}, 1000, 5 * time.Second, 16, 2}
	smoke = size{10, 4, 1, []int{5}, 20, time.Second, 4, 1}
)

const jobConfig = `apiVersion: v2
actions:
  - name: bench
    events:
      - name: sh.keptn.event.bench.triggered
    tasks:
      - name: run
        image: busybox:1.35
        cmd: ["true"]
        maxPollDuration: 3600
`

const (
	apiToken   = "bench-token"
	signingKey = "bench-record-signing-key-0123456789abcdef"
	matched    = "sh.keptn.event.bench.triggered"
	unmatched  = "sh.keptn.event.unmatched.triggered"
)

func main() {
	bare := flag.String("serve-bare", "", "internal: serve the baseline receiver on this address")
	out := flag.String("out", "BENCHMARKS.md", "report to write")
	isSmoke := flag.Bool("smoke", false, "a few events per row: checks the bench works, measures nothing")
	goBench := flag.String("go-bench", "", "output of `go test -bench` to include in the report")
	flag.Parse()
	if *bare != "" {
		log.Fatal(serveBare(*bare))
	}
	sz := full
	if *isSmoke {
		sz = smoke
	}
	if err := run(sz, *isSmoke, *out, *goBench); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

type report struct {
	rows     [][]string // figure, measured, baseline, ratio, target, met
	requests []string
	profiles []string
	notes    []string
}

func (r *report) row(cells ...string) { r.rows = append(r.rows, cells) }

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func run(sz size, isSmoke bool, out, goBench string) error {
	started := time.Now()
	e2eDir := os.Getenv("JES_E2E_DIR")
	if e2eDir == "" {
		e2eDir = filepath.Join(os.Getenv("HOME"), ".cache/jes-e2e")
	}
	env, err := readEnvFile(filepath.Join(e2eDir, "e2e.env"))
	if err != nil {
		return fmt.Errorf("%w (run make e2e-cluster e2e-images first)", err)
	}
	work := filepath.Join(e2eDir, "bench")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(work, "job-executor-service")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/job-executor-service")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the service: %w", err)
	}
	ctx := context.Background()
	cl, err := newCluster(env["KUBECONFIG"])
	if err != nil {
		return err
	}
	machine := machineFacts(cl)
	if err := cl.setUp(ctx, fmt.Sprintf("jes-bench-%d", time.Now().Unix())); err != nil {
		return err
	}
	defer cl.tearDown()
	if err := jobController(false); err != nil {
		return err
	}
	defer func() {
		if err := jobController(true); err != nil {
			log.Printf("turning the Job controller back on: %v", err)
		}
	}()

	api := keptnapi.New(keptnapi.Options{Token: apiToken})
	scope := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	api.AddScope(keptnapi.Latest, scope)
	api.Put(keptnapi.Latest, scope, "job/config.yaml", []byte(jobConfig))
	if _, err := api.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer api.Close()

	svc, err := startService(bin, map[string]string{
		"KUBECONFIG": env["KUBECONFIG"], "KEPTN_API_ENDPOINT": api.URL(), "KEPTN_API_TOKEN": apiToken,
		"JOB_NAMESPACE": cl.ns, "INIT_CONTAINER_IMAGE": env["JES_IMAGE"], "RECORD_SIGNING_KEY": signingKey,
		"MAX_CONCURRENT_ACTIONS": "2000", "MAX_QUEUED_EVENTS": "4000", "PPROF_ENABLED": "true", "LOG_LEVEL": "info",
	}, filepath.Join(work, "service.log"))
	if err != nil {
		return err
	}
	defer svc.stop()
	// The smoke run (CI) keeps its own profiles: the full run's are what BENCHMARKS.md points to.
	profDir := filepath.Join(work, "profiles")
	if isSmoke {
		profDir += "-smoke"
	}
	if err := os.MkdirAll(profDir, 0o755); err != nil {
		return err
	}

	rep := &report{}
	snd := newSender(svc.url, 64)
	ids := &idGen{}
	// Warm up: the config is fetched once, then cached (CONFIG_CACHE_TTL_SECONDS).
	if code, err := snd.post(ids.next(), unmatched, ids.context(), eventData); err != nil || code/100 != 2 {
		return fmt.Errorf("warm-up event: %d %v", code, err)
	}
	idleRSS, _ := memory(svc.cmd.Process.Pid)
	before, err := svc.requests()
	if err != nil {
		return err
	}

	// 1. Accepting matched events vs bare ConfigMap creates, alternating.
	log.Printf("accept: %d rounds of %d events, %d senders", sz.acceptRounds, sz.acceptN, sz.acceptConc)
	acceptProf := make(chan string, 1)
	go func() {
		p, err := svc.profile(profDir, fmt.Sprintf("profile?seconds=%d", max(1, sz.acceptRounds)), "cpu-accept")
		if err != nil {
			p = "(" + err.Error() + ")"
		}
		acceptProf <- p
	}()
	var base, acc sample
	accepted := map[string]bool{}
	postSum0, postN0 := svc.histogram("jes_kube_api_request_duration_seconds", "verb", "POST")
	for r := range sz.acceptRounds {
		b := cl.createConfigMaps(ctx, r, sz.acceptN, sz.acceptConc)
		ctxs := make([]string, sz.acceptN)
		for i := range ctxs {
			ctxs[i] = ids.context()
			accepted[ctxs[i]] = true
		}
		a := closedLoop(sz.acceptN, sz.acceptConc, 0, func(i int) (int, error) {
			return snd.post(ids.next(), matched, ctxs[i], eventData)
		}, 200)
		if a.failed > 0 || b.failed > 0 {
			return fmt.Errorf("accept round %d: %d events failed %v, %d creates failed %v", r, a.failed, a.codes, b.failed, b.codes)
		}
		base, acc = merge(base, b), merge(acc, a)
	}
	postSum, postN := svc.histogram("jes_kube_api_request_duration_seconds", "verb", "POST")
	rep.profiles = append(rep.profiles, "accept (CPU): "+<-acceptProf)
	ratio := acc.rate() / base.rate()
	if n := postN - postN0; n > 0 {
		rep.notes = append(rep.notes, fmt.Sprintf("While the service accepted those events, its own creates (event records, Jobs: %d) took %s on average "+
			"(jes_kube_api_request_duration_seconds), against the bare creates' mean %s: the API server and etcd, on the same 2 cores, answer "+
			"every write slower while the accepted events' Jobs and records are written.", n, ms(time.Duration((postSum-postSum0)/float64(n)*float64(time.Second))), ms(mean(base.lat))))
	}
	rep.row(fmt.Sprintf("accepting matched events (POST → `.started` reply), %d × %d events, %d senders", sz.acceptRounds, sz.acceptN, sz.acceptConc),
		fmt.Sprintf("%.0f events/s, reply p50 %s, p99 %s", acc.rate(), ms(pct(acc.lat, 50)), ms(pct(acc.lat, 99))),
		fmt.Sprintf("bare client-go ConfigMap creates: %.0f/s, p50 %s, p99 %s", base.rate(), ms(pct(base.lat, 50)), ms(pct(base.lat, 99))),
		fmt.Sprintf("%.2f", ratio), "≥ 0.8 ×, p99 ≤ 50 ms", met(ratio >= 0.8 && pct(acc.lat, 99) <= 50*time.Millisecond))

	// Their Jobs end; the requests they cost are counted once every .finished arrived.
	tasks := len(accepted)
	if _, _, err := completeAll(ctx, cl, api, accepted, 16); err != nil {
		return err
	}
	after, err := svc.requests()
	if err != nil {
		return err
	}
	perTask, leases, lines := requestsPerTask(before, after, tasks)
	rep.requests = lines
	rep.row(fmt.Sprintf("API server requests per task (watches and their informer lists excluded), %d one-task events", tasks),
		fmt.Sprintf("%.2f (+ maintenance, lease renewals and record scans: %.0f in the run)", perTask, leases), "—", "—", "≤ 4", met(perTask <= 4))

	// 2. Job Complete → .finished at growing concurrency.
	for _, n := range sz.lagActions {
		log.Printf("lag: %d concurrent actions", n)
		ctxs := ids.contexts(n)
		if s := sendAll(snd, ids, ctxs, 16); s.failed > 0 {
			return fmt.Errorf("lag %d: %d events failed %v", n, s.failed, s.codes)
		}
		lag, base, err := completeAll(ctx, cl, api, ctxs, 16)
		if err != nil {
			return err
		}
		rep.row(fmt.Sprintf("Job Complete (status written) → `.finished` received by the Keptn API, %d concurrent actions", n),
			fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", ms(pct(lag, 50)), ms(pct(lag, 90)), ms(pct(lag, 99)), ms(pct(lag, 100))),
			baseLag(base), ratioP99(lag, base), "p99 ≤ 100 ms", met(pct(lag, 99) <= 100*time.Millisecond))
	}

	// 3. Scale: many actions in flight, then all complete at once.
	n := sz.scaleActions
	log.Printf("scale: %d actions in flight", n)
	ctxs := ids.contexts(n)
	if s := sendAll(snd, ids, ctxs, 16); s.failed > 0 {
		return fmt.Errorf("scale: %d events failed %v", s.failed, s.codes)
	}
	if _, err := cl.waitJobs(ctx, ctxs, 10*time.Minute); err != nil {
		return err
	}
	rss, _ := memory(svc.cmd.Process.Pid)
	goroutines := svc.gauge("go_goroutines")
	if p, err := svc.profile(profDir, "heap", "heap-inflight"); err == nil {
		rep.profiles = append(rep.profiles, fmt.Sprintf("%d in flight (heap): %s", n, p))
	}
	lag, floor, err := completeAll(ctx, cl, api, ctxs, 32)
	if err != nil {
		return err
	}
	rep.row(fmt.Sprintf("%d actions in flight (Jobs without pods), one replica", n),
		fmt.Sprintf("RSS %.0f MiB (idle %.0f MiB), %.0f goroutines; completion lag p50 %s, p99 %s, max %s", rss, idleRSS, goroutines,
			ms(pct(lag, 50)), ms(pct(lag, 99)), ms(pct(lag, 100))),
		baseLag(floor), ratioP99(lag, floor), "RSS ≤ 150 MiB, lag p99 ≤ 1 s", met(rss <= 150 && pct(lag, 99) <= time.Second))

	// 4. Unmatched events vs a bare chi + CloudEvents SDK receiver, alternating.
	log.Printf("unmatched: %d rounds of %s, %d senders", sz.unmatchedRounds, sz.unmatchedFor, sz.unmatchedConc)
	bareSvc, err := startBare()
	if err != nil {
		return err
	}
	defer bareSvc.stop()
	bareSnd, svcSnd := newSender(bareSvc.url, sz.unmatchedConc), newSender(svc.url, sz.unmatchedConc)
	var bareS, svcS sample
	unmatchedProf := make(chan string, 1)
	for r := range sz.unmatchedRounds {
		b := closedLoop(0, sz.unmatchedConc, sz.unmatchedFor, func(int) (int, error) {
			return bareSnd.post(ids.next(), unmatched, ids.context(), eventData)
		}, 200)
		if r == 0 {
			go func() {
				p, err := svc.profile(profDir, fmt.Sprintf("profile?seconds=%d", int(sz.unmatchedFor.Seconds())), "cpu-unmatched")
				if err != nil {
					p = "(" + err.Error() + ")"
				}
				unmatchedProf <- p
			}()
		}
		s := closedLoop(0, sz.unmatchedConc, sz.unmatchedFor, func(int) (int, error) {
			return svcSnd.post(ids.next(), unmatched, ids.context(), eventData)
		}, 200)
		if b.failed > 0 || s.failed > 0 {
			return fmt.Errorf("unmatched round %d: bare %d failed %v, service %d failed %v", r, b.failed, b.codes, s.failed, s.codes)
		}
		bareS, svcS = merge(bareS, b), merge(svcS, s)
	}
	rep.profiles = append(rep.profiles, "unmatched (CPU): "+<-unmatchedProf)
	ratio = svcS.rate() / bareS.rate()
	rep.row(fmt.Sprintf("unmatched events (config cached), %d senders, %d × %s", sz.unmatchedConc, sz.unmatchedRounds, sz.unmatchedFor),
		fmt.Sprintf("%.0f req/s, p50 %s, p99 %s", svcS.rate(), ms(pct(svcS.lat, 50)), ms(pct(svcS.lat, 99))),
		fmt.Sprintf("bare chi + CloudEvents SDK handler: %.0f req/s, p50 %s, p99 %s", bareS.rate(), ms(pct(bareS.lat, 50)), ms(pct(bareS.lat, 99))),
		fmt.Sprintf("%.2f", ratio), "≥ 0.85 ×", met(ratio >= 0.85))

	if isSmoke {
		rep.notes = append(rep.notes, "SMOKE RUN: a handful of events per row; the figures mean nothing.")
	}
	return os.WriteFile(out, []byte(rep.markdown(machine, started, goBench)), 0o644)
}

// completeAll completes the Jobs of the given Keptn contexts and waits for each .finished,
// returning each one's lag from its Job's status write to its arrival at the Keptn API.
// completeAll completes the Jobs of ctxs and returns, per action, the time from its Job's
// completion to its .finished at the stand-in, and the baseline: to the driver's own watch
// seeing it and reading the pod's log (observeCompletions), in the same moment.
func completeAll(ctx context.Context, cl *cluster, api *keptnapi.Server, ctxs map[string]bool, conc int) (lag, base []time.Duration, err error) {
	js, err := cl.waitJobs(ctx, ctxs, 10*time.Minute)
	if err != nil {
		return nil, nil, err
	}
	stop, err := cl.observeCompletions(ctx, ctxs)
	if err != nil {
		return nil, nil, err
	}
	done, err := cl.complete(ctx, js, conc)
	if err != nil {
		stop()
		return nil, nil, err
	}
	lag, err = awaitFinished(api, ctxs, done)
	read := stop()
	for c, at := range done {
		if r, ok := read[c]; ok {
			base = append(base, r.Sub(at))
		}
	}
	return lag, base, err
}

// awaitFinished waits for one .finished per context and returns each one's delay after done.
func awaitFinished(api *keptnapi.Server, ctxs map[string]bool, done map[string]time.Time) ([]time.Duration, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var lag []time.Duration
		for _, ev := range api.Events() {
			if ev.TypeName() != "sh.keptn.event.bench.finished" || !ctxs[ev.Shkeptncontext] {
				continue
			}
			if res, _ := ev.DataMap()["result"].(string); res != "pass" {
				return nil, fmt.Errorf(".finished of %s: result %q", ev.Shkeptncontext, res)
			}
			lag = append(lag, ev.Received.Sub(done[ev.Shkeptncontext]))
		}
		if len(lag) > len(ctxs) {
			return nil, fmt.Errorf("%d .finished for %d actions", len(lag), len(ctxs))
		}
		if len(lag) == len(ctxs) {
			return lag, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d .finished after 5 min", len(lag), len(ctxs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// baseLag describes the lag rows' baseline.
func baseLag(base []time.Duration) string {
	return fmt.Sprintf("the driver's own Job watch + pod log read: p50 %s, p99 %s (%d)", ms(pct(base, 50)), ms(pct(base, 99)), len(base))
}

// ratioP99 is the service's p99 over the baseline's.
func ratioP99(lag, base []time.Duration) string {
	if b := pct(base, 99); b > 0 {
		return fmt.Sprintf("%.2f (p99)", float64(pct(lag, 99))/float64(b))
	}
	return "—"
}

// sendAll posts one matched event per context.
func sendAll(snd *sender, ids *idGen, ctxs map[string]bool, conc int) sample {
	list := make([]string, 0, len(ctxs))
	for c := range ctxs {
		list = append(list, c)
	}
	return closedLoop(len(list), conc, 0, func(i int) (int, error) { return snd.post(ids.next(), matched, list[i], eventData) }, 200)
}

func mean(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t / time.Duration(len(d))
}

func merge(a, b sample) sample {
	a.lat = append(a.lat, b.lat...)
	a.wall += b.wall
	a.failed += b.failed
	return a
}

// requestsPerTask is the API requests between two scrapes per task, with one line per kind.
// Not per task, so not counted: watches, the list an informer starts each of its watches
// with (a list of a resource no more often than its watch), and the instance lease (renewed
// on a timer).
func requestsPerTask(before, after map[string]float64, tasks int) (perTask, leases float64, lines []string) {
	var total float64
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := after[k] - before[k]
		if d == 0 {
			continue
		}
		resource, isList := strings.CutPrefix(k, "list ")
		switch {
		case strings.HasPrefix(k, "watch "):
		case isList && d <= after["watch "+resource]-before["watch "+resource]:
		case strings.HasSuffix(k, " leases"), k == "list configmaps":
			// Maintenance every half lease (INSTANCE_LEASE_SECONDS): the lease renewed, the
			// event records scanned for orphans and pruning. Per minute, not per task.
			leases += d
		default:
			total += d
		}
		lines = append(lines, fmt.Sprintf("| `%s` | %.0f | %.2f |", k, d, d/float64(tasks)))
	}
	return total / float64(tasks), leases, lines
}

// idGen makes unique event ids and Keptn contexts (UUID-shaped, as Keptn's); the senders
// call it concurrently.
type idGen struct{ n, c atomic.Int64 }

func (g *idGen) next() string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().Unix()&0xffffffff, g.n.Add(1))
}

func (g *idGen) context() string {
	return fmt.Sprintf("%08x-1111-4000-8000-%012x", time.Now().Unix()&0xffffffff, g.c.Add(1))
}

func (g *idGen) contexts(n int) map[string]bool {
	m := map[string]bool{}
	for range n {
		m[g.context()] = true
	}
	return m
}

func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

func machineFacts(cl *cluster) []string {
	version := "?"
	if v, err := cl.kube.Discovery().ServerVersion(); err == nil {
		version = v.GitVersion
	}
	sh := func(name string, args ...string) string {
		b, _ := exec.Command(name, args...).Output()
		return strings.TrimSpace(string(b))
	}
	cpu := sh("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
	mem := sh("sh", "-c", "awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
	return []string{
		fmt.Sprintf("%d CPUs (%s), %s RAM, Linux %s, %s", runtime.NumCPU(), strings.TrimSpace(cpu), mem, sh("uname", "-r"), runtime.Version()),
		"Kubernetes " + version + " (e2e harness: one node, etcd, API server on this machine)",
		"load average at start: " + loadavg(),
	}
}

func (r *report) markdown(machine []string, started time.Time, goBench string) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Written by `make bench` (`e2e/bench`); do not edit by hand. Every figure is from the run below, each\n")
	b.WriteString("baseline measured in the same run against the same API server.\n\n")
	fmt.Fprintf(&b, "- date: %s, run took %s\n", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))
	for _, m := range machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	fmt.Fprintf(&b, "- load average at end: %s\n", loadavg())
	b.WriteString("- command: `make bench` (cluster up → images → `go test -bench` → `go run ./e2e/bench`)\n")
	b.WriteString("- setup: the service binary as a process on the node (KUBE_API_QPS/BURST defaults, MAX_CONCURRENT_ACTIONS=2000),\n")
	b.WriteString("  the Keptn API stand-in in the driver, one-task actions (busybox `true`). Scale mode: Kubernetes' Job controller off;\n")
	b.WriteString("  the driver completes each Job as the Job controller and kubelet would (a terminated pod on an unschedulable\n")
	b.WriteString("  virtual node whose address is the real kubelet's, then the Job's status) and times `.finished` from that write.\n\n")
	for _, n := range r.notes {
		fmt.Fprintf(&b, "**%s**\n\n", n)
	}
	b.WriteString("| figure | measured | baseline (same run) | ratio | target | met |\n|---|---|---|---|---|---|\n")
	for _, row := range r.rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	b.WriteString("\n## API requests by kind (accept rows, until every `.finished`)\n\n| request | count | per task |\n|---|---|---|\n")
	for _, l := range r.requests {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n## Profiles\n\nTaken from the service (`PPROF_ENABLED=true`) during the run, kept on the machine, not committed\n(`go tool pprof -top <file>`):\n\n")
	for _, p := range r.profiles {
		fmt.Fprintf(&b, "- %s\n", p)
	}
	if goBench != "" {
		b.WriteString("\n## Pure paths (`go test -run '^$' -bench . -benchmem ./...`)\n\n```\n")
		b.WriteString(strings.TrimSpace(readFile(goBench)))
		b.WriteString("\n```\n")
	}
	return b.String()
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
