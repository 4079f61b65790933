package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/go-chi/chi/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// service is the real service binary, run as a process next to the driver.
type service struct {
	url, monitoring string
	cmd             *exec.Cmd
	done            chan struct{}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startService(bin string, env map[string]string, logPath string) (*service, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	env["RCV_PORT"], env["MONITORING_PORT"] = strconv.Itoa(port), strconv.Itoa(mport)
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &service{url: fmt.Sprintf("http://127.0.0.1:%d/", port), monitoring: fmt.Sprintf("http://127.0.0.1:%d", mport), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(s.done) }()
	if err := waitHealthy(s.monitoring+"/healthz", s.done); err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	return s, nil
}

func waitHealthy(url string, died <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-died:
			return fmt.Errorf("process exited at start")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy after 30 s", url)
}

func (s *service) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// metrics scrapes the service's /metrics.
func (s *service) metrics() (map[string]*dto.MetricFamily, error) {
	res, err := http.Get(s.monitoring + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(res.Body)
}

// requests reads jes_kube_api_requests_total by "verb resource".
func (s *service) requests() (map[string]float64, error) {
	mf, err := s.metrics()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	if f := mf["jes_kube_api_requests_total"]; f != nil {
		for _, m := range f.Metric {
			var verb, res string
			for _, l := range m.Label {
				switch l.GetName() {
				case "verb":
					verb = l.GetValue()
				case "resource":
					res = l.GetValue()
				}
			}
			out[verb+" "+res] = m.GetCounter().GetValue()
		}
	}
	return out, nil
}

// histogram is the sum and count of a histogram's series whose label has the given value.
func (s *service) histogram(name, label, value string) (sum float64, count uint64) {
	mf, err := s.metrics()
	if err != nil || mf[name] == nil {
		return 0, 0
	}
	for _, m := range mf[name].Metric {
		for _, l := range m.Label {
			if l.GetName() == label && l.GetValue() == value {
				sum += m.GetHistogram().GetSampleSum()
				count += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return sum, count
}

func (s *service) gauge(name string) float64 {
	mf, err := s.metrics()
	if err != nil || mf[name] == nil || len(mf[name].Metric) == 0 {
		return -1
	}
	return mf[name].Metric[0].GetGauge().GetValue()
}

// memory is the process's resident set now and at its peak, in MiB (from /proc).
func memory(pid int) (rss, hwm float64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// profile fetches a pprof profile (e.g. "profile?seconds=10", "heap") into dir/name.pb.gz
// and returns the file.
func (s *service) profile(dir, query, name string) (string, error) {
	res, err := http.Get(s.monitoring + "/debug/pprof/" + query)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("pprof %s: %s", query, res.Status)
	}
	path := filepath.Join(dir, name+".pb.gz")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = io.Copy(f, res.Body)
	return path, err
}

// serveBare is the baseline receiver: chi and the CloudEvents SDK decoding each request,
// answering 200 with nothing, as the service does for an event no action matches.
func serveBare(addr string) error {
	r := chi.NewRouter()
	r.Post("/", func(w http.ResponseWriter, req *http.Request) {
		if _, err := cehttp.NewEventFromHTTPRequest(req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Addr: addr, Handler: r, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// startBare runs serveBare in a child process (this binary with -serve-bare), so that it
// gets a process of its own as the service does.
func startBare() (*service, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(context.Background(), self, "-serve-bare", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &service{url: "http://" + addr + "/", monitoring: "http://" + addr, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	return s, waitHealthy(s.monitoring+"/healthz", s.done)
}
