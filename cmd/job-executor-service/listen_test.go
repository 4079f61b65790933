package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler"
)

type acceptAll struct{ got chan string }

func (a acceptAll) Accept(_ context.Context, e cloudevents.Event) (*cloudevents.Event, error) {
	a.got <- e.ID()
	return nil, nil
}

// With RCV_HOST=127.0.0.1 (the chart's distributor mode) events can only come from inside the
// pod; probes and scrapes still reach MONITORING_PORT on every interface.
func TestReceiverOnLoopbackOnly(t *testing.T) {
	external := nonLoopbackIPv4(t)
	// The monitoring listener is opened here (any free port) and handed to its server.
	mon, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	monPort := mon.Addr().(*net.TCPAddr).Port
	e, err := readEnv(getter(map[string]string{
		"RCV_HOST": "127.0.0.1", "RCV_PORT": "0", "MONITORING_PORT": strconv.Itoa(monPort),
	}))
	require.NoError(t, err)
	a := acceptAll{got: make(chan string, 1)}
	srvs := httpServers(e, handler.NewServer(a, zap.NewNop(), handler.ServerOptions{}))
	require.Len(t, srvs, 2)
	assert.Equal(t, ":"+strconv.Itoa(monPort), srvs[1].Addr)
	recv, err := net.Listen("tcp", srvs[0].Addr)
	require.NoError(t, err)
	rcvPort := recv.Addr().(*net.TCPAddr).Port
	for i, l := range []net.Listener{recv, mon} {
		go func() { _ = srvs[i].Serve(l) }()
		t.Cleanup(func() { _ = srvs[i].Close() })
	}

	post := func(host string, port int) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/", net.JoinHostPort(host, strconv.Itoa(port))), strings.NewReader(`{}`))
		req.Header.Set("Ce-Id", "loop-1")
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Type", "sh.keptn.event.test.triggered")
		req.Header.Set("Ce-Source", "test")
		req.Header.Set("Content-Type", "application/json")
		return http.DefaultClient.Do(req)
	}
	res, err := post("127.0.0.1", rcvPort)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusAccepted, res.StatusCode)
	assert.Equal(t, "loop-1", <-a.got)

	_, err = post(external, rcvPort)
	require.Error(t, err, "the receiver must not answer on %s", external)

	res, err = http.Get(fmt.Sprintf("http://%s/healthz", net.JoinHostPort(external, strconv.Itoa(monPort))))
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
}

func TestMonitoringPortNotTheReceiverPort(t *testing.T) {
	_, err := readEnv(getter(map[string]string{"RCV_PORT": "8080", "MONITORING_PORT": "8080"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MONITORING_PORT=8080")
}

// nonLoopbackIPv4 is an address of this machine other than loopback; the test needs one.
func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}
