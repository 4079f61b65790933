package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
)

const sendUsage = `usage: job-executor-service send --to URL (--file EVENT.json | --type TYPE --data JSON [flags]) [--structured]

Posts one CloudEvent to the service's receiver (or any Keptn event receiver) and prints the
HTTP status and the reply: the .started event, or the error the receiver gives. The event is
checked first as the receiver checks it, and as Keptn sends them: required CloudEvents
attributes, data.project/stage/service, a Keptn type (sh.keptn.event.<task>.<kind>) and
shkeptncontext on .triggered events. Binary content mode by default, structured with
--structured. The token (--rcv-token, else the variable RCV_TOKEN) goes in x-token, the
header the receiver checks.
Without --file, --id and --context default to new UUIDs and --source to
job-executor-service-send.

Exits 0 on a 2xx answer, 1 on an event that fails the checks, an error answer or no answer,
2 on bad usage.

flags:
`

// sendSource is the CloudEvents source of events send builds from flags.
const sendSource = "job-executor-service-send"

// send posts one CloudEvent; see sendUsage.
func send(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	pal := paletteFor(stderr, getenv)
	problem := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s %s\n", pal.red("send:"), fmt.Sprintf(format, a...))
	}
	fs := subcommandFlags("send", sendUsage, stderr)
	to := fs.String("to", "", "the receiver's URL, e.g. http://localhost:8080/")
	file := fs.String("file", "", "the event, a CloudEvent in structured JSON")
	eventType := fs.String("type", "", "the event type, e.g. sh.keptn.event.test.triggered")
	data := fs.String("data", "", `the event's data, JSON, e.g. {"project":"p","stage":"s","service":"x"}`)
	source := fs.String("source", sendSource, "the event's source")
	id := fs.String("id", "", "the event's id (default: a new UUID)")
	keptnContext := fs.String("context", "", "the shkeptncontext extension (default: a new UUID)")
	var exts []string
	fs.Func("ext", "another extension, name=value (repeatable), e.g. gitcommitid=abc123", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want name=value")
		}
		exts = append(exts, v)
		return nil
	})
	structured := fs.Bool("structured", false, "structured content mode (application/cloudevents+json)")
	given := settingFlags(fs, []setting{{name: "RCV_TOKEN"}})
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fromFlags := *eventType != "" || *data != ""
	if *to == "" || fs.NArg() > 0 || (*file == "") == !fromFlags || (fromFlags && (*eventType == "" || *data == "")) {
		fs.Usage()
		return 2
	}
	token := flagReader(given, getenv).str("RCV_TOKEN", "")

	var ev cloudevents.Event
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			problem("%v", err)
			return 2
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			problem("%s: not a CloudEvent in structured JSON: %v", *file, err)
			return 1
		}
	} else {
		var err error
		if ev, err = eventFromFlags(*eventType, *data, *source, *id, *keptnContext, exts); err != nil {
			problem("%v", err)
			return 1
		}
	}
	if err := keptn.CheckEvent(ev); err != nil {
		problem("the event is not sent:")
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
		return 1
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *to, nil)
	if err != nil {
		problem("--to %q: %v", *to, err)
		return 2
	}
	if token != "" {
		req.Header.Set("x-token", token)
	}
	wctx := binding.WithForceBinary(ctx)
	if *structured {
		wctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteRequest(wctx, binding.ToMessage(&ev), req); err != nil {
		problem("encoding the event: %v", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		problem("%v", err)
		fmt.Fprintf(stderr, "send: is the service listening at %s? (RCV_HOST, RCV_PORT, RCV_PATH)\n", *to)
		return 1
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	status := fmt.Sprintf("%s %s", resp.Proto, resp.Status)
	out := paletteFor(stdout, getenv)
	if ok {
		fmt.Fprintln(stdout, out.green(status))
	} else {
		fmt.Fprintln(stdout, out.red(status))
	}
	if err := printReply(stdout, resp); err != nil {
		problem("reading the answer: %v", err)
		return 1
	}
	if !ok {
		fmt.Fprintf(stderr, "send: %s\n", nextStep(resp))
		return 1
	}
	return 0
}

// eventFromFlags builds the event send's flags describe.
func eventFromFlags(eventType, data, source, id, keptnContext string, exts []string) (cloudevents.Event, error) {
	ev := cloudevents.NewEvent()
	ev.SetType(eventType)
	ev.SetSource(source)
	ev.SetID(firstSet(id, uuid.NewString()))
	ev.SetExtension("shkeptncontext", firstSet(keptnContext, uuid.NewString()))
	for _, x := range exts {
		name, value, _ := strings.Cut(x, "=")
		if err := ev.Context.SetExtension(name, value); err != nil {
			return ev, fmt.Errorf("--ext %s: %v", x, err)
		}
	}
	if !json.Valid([]byte(data)) {
		return ev, errors.New(`--data is not JSON: give the data object, e.g. {"project":"p","stage":"s","service":"x"}`)
	}
	if err := ev.SetData(cloudevents.ApplicationJSON, json.RawMessage(data)); err != nil {
		return ev, fmt.Errorf("--data: %v", err)
	}
	return ev, nil
}

func firstSet(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// printReply prints the answer: a CloudEvent as structured JSON, anything else as it came.
func printReply(w io.Writer, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.Header.Get("Ce-Type") != "" || strings.HasPrefix(resp.Header.Get("Content-Type"), cloudevents.ApplicationCloudEventsJSON) {
		msg := cehttp.NewMessage(resp.Header, io.NopCloser(bytes.NewReader(body)))
		if e, err := binding.ToEvent(context.Background(), msg); err == nil {
			b, err := json.MarshalIndent(e, "", "  ")
			if err == nil {
				_, err = fmt.Fprintf(w, "%s\n", b)
			}
			return err
		}
	}
	if len(body) > 0 {
		_, err = fmt.Fprintf(w, "%s\n", bytes.TrimRight(body, "\n"))
	}
	return err
}

// nextStep says what to do about an error answer of the receiver.
func nextStep(resp *http.Response) string {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return "give the receiver's token: --rcv-token or RCV_TOKEN (the service's RCV_TOKEN)"
	case http.StatusBadRequest:
		return "the receiver refused the event: fix what the message names and send it again"
	case http.StatusRequestEntityTooLarge:
		return "the event is larger than the service takes (MAX_REQUEST_BYTES): send a smaller one"
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return fmt.Sprintf("the service cannot take it now: send it again later (Retry-After: %s)", firstSet(resp.Header.Get("Retry-After"), "not given"))
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "nothing receives events at this URL: check --to against the service's RCV_PATH"
	}
	return "see the service's log for this event"
}
