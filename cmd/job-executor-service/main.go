// Command job-executor-service runs Keptn tasks as Kubernetes Jobs. main.go only wires the
// packages together from the environment (env.go; README.md lists every variable); lint.go,
// render.go, send.go and copyfiles.go are its subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	"github.com/keptn-contrib/job-executor-service/handler/sink"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
	"github.com/keptn-contrib/job-executor-service/jobs/run"
)

func main() {
	// The same image is the Jobs' init container, which copies task files into /keptn.
	if len(os.Args) == 4 && os.Args[1] == "copy-files" {
		if err := copyTree(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "copy-files:", err)
			os.Exit(1)
		}
		return
	}
	// Check job configs before uploading them: job-executor-service lint job/config.yaml ...
	if len(os.Args) >= 2 && os.Args[1] == "lint" {
		os.Exit(lint(os.Args[2:], osGet, os.Stdout))
	}
	// Print the objects the service would create for an event: job-executor-service render ...
	if len(os.Args) >= 2 && os.Args[1] == "render" {
		os.Exit(render(os.Args[2:], osGet, os.Stdout, os.Stderr))
	}
	// Post one CloudEvent to a receiver: job-executor-service send --to URL ...
	if len(os.Args) >= 2 && os.Args[1] == "send" {
		os.Exit(send(os.Args[2:], osGet, os.Stdout, os.Stderr))
	}
	if err := serve(); err != nil {
		fmt.Fprintln(os.Stderr, "job-executor-service:", err)
		os.Exit(1)
	}
}

func serve() error {
	e, err := readEnv(osGet)
	if err != nil {
		return err
	}
	log, err := newLogger(e.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	reg := prometheus.NewRegistry()
	m := newServiceMetrics(reg, log)
	kube, kubeMeta, err := kubeClients(e, m)
	if err != nil {
		return err
	}
	keptnTr, err := keptnTransport(e)
	if err != nil {
		return err
	}
	src, err := configSource(e, keptnTr)
	if err != nil {
		return err
	}
	sender, startedViaSink, err := eventSender(e, keptnTr, log, m.sink)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runner := run.New(kube, log, run.Options{MaxLogBytes: e.MaxTaskLogBytes, FailFastAfter: e.FailFastAfter})
	defer runner.Watcher().Stop()
	store := records.New(kube, kubeMeta, e.Settings.Namespace, e.Instance, e.RecordSigningKey).WithLeaseDuration(e.InstanceLease)
	if !store.Signed() {
		log.Warn("RECORD_SIGNING_KEY is not set: event records are unsigned and crash recovery resumes any record in the job namespace, "+
			"so whoever can create ConfigMaps there can make this service run containers; the Helm chart and the Knative manifests set a key",
			zap.String("jobNamespace", e.Settings.Namespace))
	}
	deps := lifecycle.Deps{
		Loader: config.NewLoader(src, config.WithCommitlessTTL(e.ConfigCacheTTL)),
		Files: func(ctx context.Context, ref config.Ref, level config.Level, paths []string) (map[string][]byte, error) {
			return config.CollectFiles(ctx, src, ref, level, paths, e.MaxFileBytes)
		},
		Runner:  runner,
		Sender:  sender,
		Records: store,
		Log:     log,
		Metrics: m.lifecycle,
	}
	// The status shows task data: only behind the receiver's token, and only from records
	// whose signature tells this service's from planted ones.
	statusOn := e.Token != "" && store.Signed()
	if statusOn {
		index := store.NewIndex()
		index.Start(ctx)
		deps.Index, deps.Tasks = index, runner.Watcher()
	}
	proc := lifecycle.New(ctx, deps, lifecycle.Options{
		Instance:             e.Instance,
		Settings:             e.Settings,
		AlwaysSendFinished:   e.AlwaysSendFinished,
		StartedViaSink:       startedViaSink,
		MaxConcurrentActions: e.MaxConcurrentActions,
		MaxQueuedEvents:      e.MaxQueuedEvents,
		MaxQueuedBytes:       e.MaxQueuedBytes,
		MaxMessageBytes:      e.MaxMessageBytes,
		MaxEventBytes:        e.MaxEventBytes,
		DedupRetention:       e.DedupRetention,
		MaxFinishedRecords:   e.MaxFinishedRecords,
		ConfigPendingTimeout: e.ConfigPendingTimeout,
	})
	// Prove this instance alive to the others, then resume what a previous process of this
	// pod (or a dead instance) left unfinished, before taking new events; keep looking for
	// orphans while running.
	go store.Heartbeat(ctx, func(err error) { log.Warn("renewing the instance lease failed", zap.Error(err)) })
	if n, err := proc.Recover(ctx); err != nil {
		log.Error("recovering unfinished events failed; retrying in the background", zap.Error(err))
	} else if n > 0 {
		log.Info("resumed unfinished events", zap.Int("count", n))
	}
	// Maintain stops before draining waits for the workers: it may start new ones, and a
	// WaitGroup must not gain work while someone waits on it.
	maintainCtx, stopMaintain := context.WithCancel(ctx)
	defer stopMaintain()
	maintained := make(chan struct{})
	go func() { defer close(maintained); proc.Maintain(maintainCtx, e.InstanceLease/2) }()
	opts := handler.ServerOptions{
		Path: e.Path, MaxBodyBytes: e.MaxBodyBytes, Gatherer: reg, Token: e.Token, Profiling: e.Profiling,
		Ready: func(ctx context.Context) error {
			_, err := kube.Discovery().ServerVersion()
			return err
		},
	}
	if statusOn {
		opts.Status = proc
	}
	srv := handler.NewServer(proc, log, opts)
	httpSrvs := httpServers(e, srv)
	errc := make(chan error, len(httpSrvs))
	for _, h := range httpSrvs {
		go func() { errc <- h.ListenAndServe() }()
	}
	log.Info("listening", zap.String("receiver", httpSrvs[0].Addr), zap.Int("monitoringPort", e.MonitoringPort),
		zap.String("path", e.Path), zap.String("jobNamespace", e.Settings.Namespace), zap.Bool("statusRoute", statusOn))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return err
	case s := <-sig:
		log.Info("shutting down", zap.String("signal", s.String()))
	}
	// Drain: let running actions finish within the grace period while the server keeps
	// answering, so that new events get 503 with Retry-After (and /readyz 503) instead of a
	// refused connection. Jobs keep running in the cluster either way.
	srv.Drain()
	stopMaintain()
	<-maintained
	graceCtx, stop := context.WithTimeout(context.Background(), e.ShutdownGrace)
	defer stop()
	delay := time.NewTimer(e.ShutdownDelay)
	defer delay.Stop()
	done := make(chan struct{})
	go func() { proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-graceCtx.Done():
		log.Warn("actions still running at shutdown", zap.Duration("grace", e.ShutdownGrace))
	}
	// In a pod, Service endpoints drop this pod only a few seconds after SIGTERM: stay and
	// answer 503 until then, or new connections would go to a process that is gone.
	select {
	case <-delay.C:
	case <-graceCtx.Done():
	}
	// Requests still open (redeliveries waiting for their first answer) get a moment.
	httpCtx, stopHTTP := context.WithTimeout(context.Background(), 2*time.Second)
	defer stopHTTP()
	for _, h := range httpSrvs {
		_ = h.Shutdown(httpCtx)
	}
	return nil
}

// httpServers are the receiver on RCV_HOST:RCV_PORT and, with MONITORING_PORT, the monitoring
// listener (probes, metrics, no events) on every interface.
func httpServers(e *env, srv *handler.Server) []*http.Server {
	newServer := func(addr string, h http.Handler) *http.Server {
		return &http.Server{
			Addr: addr, Handler: h,
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		}
	}
	out := []*http.Server{newServer(net.JoinHostPort(e.Host, strconv.Itoa(e.Port)), srv.Router())}
	if e.MonitoringPort > 0 {
		out = append(out, newServer(":"+strconv.Itoa(e.MonitoringPort), srv.MonitoringRouter()))
	}
	return out
}

// serviceMetrics are every metric the service exports (/metrics), registered on one registry: the
// Go runtime's and the process's, the lifecycle's, the deliveries' and the Kubernetes clients'.
// chart/monitoring's dashboard and alerts may name only these (TestMetricsCatalog).
type serviceMetrics struct {
	lifecycle *lifecycle.Metrics
	sink      *sink.Metrics
	throttle  *throttleObserver
	latency   *requestLatency
	requests  *requestCounter
}

func newServiceMetrics(reg prometheus.Registerer, log *zap.Logger) *serviceMetrics {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &serviceMetrics{
		lifecycle: lifecycle.NewMetrics(reg), sink: sink.NewMetrics(reg),
		throttle: newThrottleObserver(log, reg), latency: newRequestLatency(reg), requests: newRequestCounter(reg),
	}
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return cfg.Build()
}

func configSource(e *env, keptnTr http.RoundTripper) (config.Source, error) {
	switch {
	case e.ConfigDir != "":
		return config.DirSource{Root: e.ConfigDir}, nil
	case e.ConfigurationService != "":
		return config.NewKeptnSource(e.ConfigurationService, keptnTr)
	}
	return nil, errors.New("no job config source: set JOB_CONFIG_DIR, KEPTN_API_ENDPOINT or CONFIGURATION_SERVICE")
}

// keptnTransport is the one authenticated transport for the resource-service and the Keptn
// API's /v1/event, so that both use the same token or OAuth client; nil without Keptn.
func keptnTransport(e *env) (http.RoundTripper, error) {
	if e.KeptnAPIEndpoint == "" && e.ConfigurationService == "" {
		return nil, nil
	}
	return config.NewKeptnTransport(keptnAuth(e)...)
}

func keptnAuth(e *env) []config.TransportOption {
	opts := keptnTLS(e)
	if e.KeptnAPIToken != "" {
		opts = append(opts, config.WithToken(e.KeptnAPIToken))
	}
	if e.OAuthClientID != "" {
		opts = append(opts, config.WithOAuth(e.OAuthClientID, e.OAuthClientSecret, e.OAuthDiscovery, e.OAuthScopes))
	}
	return opts
}

// keptnTLS is HTTP_SSL_VERIFY alone, for the transports that carry no credentials.
func keptnTLS(e *env) []config.TransportOption {
	if !e.SSLVerify {
		return []config.TransportOption{config.WithInsecureSkipVerify()}
	}
	return nil
}

// eventSender picks where outgoing events go. Knative (K_SINK) gets .started in the HTTP reply,
// so only the others also send it through the sender.
func eventSender(e *env, keptnTr http.RoundTripper, log *zap.Logger, m *sink.Metrics) (sink.Sender, bool, error) {
	// A Knative broker or the distributor must never see the Keptn token: they get a transport
	// with our TLS settings only.
	plain, err := config.NewKeptnTransport(keptnTLS(e)...)
	if err != nil {
		return nil, false, err
	}
	opts := sink.HTTPOptions{Transport: plain, Log: log, Metrics: m}
	switch {
	case e.Sink != "":
		s, err := sink.NewHTTP(e.Sink, opts)
		return s, false, err
	case e.EventBroker != "":
		s, err := sink.NewHTTP(e.EventBroker, opts)
		return s, true, err
	case e.KeptnAPIEndpoint != "":
		opts.Transport = keptnTr // same token or OAuth client as for resources
		s, err := sink.NewHTTP(e.KeptnAPIEndpoint+"/v1/event", opts)
		return s, true, err
	}
	log.Info("no Keptn endpoint configured: outgoing events are logged")
	return sink.LogSender{Log: log}, true, nil
}
