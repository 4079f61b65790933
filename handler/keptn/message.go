package keptn

import (
	"fmt"
	"strings"
	"time"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// DefaultMaxMessageBytes bounds a .finished message with all task logs in bytes as read: Keptn's
// event bus rejects large payloads, which the original hit with unbounded logs. The event as
// encoded is bounded too (DefaultMaxEventBytes), which escapes make the tighter bound.
const DefaultMaxMessageBytes = 96 << 10

// ActionResult is how one action ended: the part of .finished it contributes.
type ActionResult struct {
	Name string
	OK   bool
	// Refused says why the action could not run at all (checks, shutdown); empty otherwise.
	Refused string
	Tasks   []TaskResult
	// Start and End bound the action, including time spent before its first Job.
	Start, End time.Time
}

// TaskResult is one task's part of the .finished message.
type TaskResult struct {
	Name   string
	Result jobs.Result
}

// Summary is what a .finished event says about the actions of one event.
type Summary struct {
	OK      bool
	Message string
	// Start and End are the window the tasks ran in (test.finished's data.test.start/end).
	Start, End time.Time

	// results and maxBytes let Finished render the message again, smaller, when the encoded
	// event must shrink; a Summary made by hand has none and its Message is cut instead.
	results  []ActionResult
	maxBytes int
}

// fit is the message within the raw bound and encoded bytes as a JSON string.
func (s Summary) fit(encoded int) string {
	if s.results == nil {
		return boundTotal(s.Message, budget{raw: -1, encoded: encoded})
	}
	return fitMessage(s.results, budget{raw: s.maxBytes, encoded: encoded})
}

// Summarize folds action results into the .finished status, message and time span. Logs are
// shortened (keeping their tails) until the whole message fits in maxBytes.
//
// The span is the window the task containers ran in: from the first start to the last finish
// of any task, as the kubelet recorded them (the Job's creation and end for a task whose
// container never ran). Keptn's lighthouse queries metrics for exactly that window, so time an
// action spent waiting for a concurrency slot, checks or files must stay out of it. Without any
// Job (refused or invalid tasks) the span is the actions' own.
func Summarize(results []ActionResult, maxBytes int) Summary {
	s := Summary{OK: true}
	var actionsStart, actionsEnd time.Time
	for i, r := range results {
		s.OK = s.OK && r.OK
		if i == 0 || r.Start.Before(actionsStart) {
			actionsStart = r.Start
		}
		if r.End.After(actionsEnd) {
			actionsEnd = r.End
		}
		for _, t := range r.Tasks {
			from, to, ok := ran(t.Result)
			if !ok {
				continue
			}
			if s.Start.IsZero() || from.Before(s.Start) {
				s.Start = from
			}
			if to.After(s.End) {
				s.End = to
			}
		}
	}
	if s.Start.IsZero() {
		s.Start, s.End = actionsStart, actionsEnd
	}
	if s.End.Before(s.Start) { // clocks of the kubelet and of this service disagree
		s.End = s.Start
	}
	s.results, s.maxBytes = results, maxBytes
	s.Message = fitMessage(results, budget{raw: maxBytes, encoded: -1})
	return s
}

// fitMessage renders the message within b, shortening logs (keeping their tails) as needed.
func fitMessage(results []ActionResult, b budget) string {
	msg := render(results, unbounded)
	if b.fits(msg) {
		return msg
	}
	// Share what the text around the logs leaves over equally between the tasks.
	ntasks := 0
	for _, r := range results {
		ntasks += len(r.Tasks)
	}
	overhead := render(results, budget{0, 0})
	share := unbounded
	if b.raw >= 0 {
		share.raw = max(0, (b.raw-len(overhead))/max(1, ntasks))
	}
	if b.encoded >= 0 {
		share.encoded = max(0, (b.encoded-encodedLen(overhead))/max(1, ntasks))
	}
	msg = render(results, share)
	if !b.fits(msg) { // pathological: huge failure reasons or very many tasks
		msg = boundTotal(msg, b)
	}
	return msg
}

// ran is when a task ran: its container's run, else its Job's life; ok is false without a Job.
func ran(r jobs.Result) (from, to time.Time, ok bool) {
	if r.Start.IsZero() {
		return from, to, false
	}
	from, to = r.RanFrom, r.RanTo
	if from.IsZero() {
		from = r.Start
	}
	if to.IsZero() {
		to = r.End
	}
	return from, to, true
}

// attempts says how often a task was tried, when more than once (backoffLimit).
func attempts(r jobs.Result) string {
	if r.Attempts <= 1 {
		return ""
	}
	return fmt.Sprintf(" (%d attempts)", r.Attempts)
}

func render(results []ActionResult, logBudget budget) string {
	var b strings.Builder
	for _, r := range results {
		if r.Refused != "" {
			b.WriteString(r.Refused + "\n\n")
		}
		for _, t := range r.Tasks {
			if t.Result.Succeeded {
				fmt.Fprintf(&b, "Task '%s' finished successfully!%s\n", t.Name, attempts(t.Result))
			} else {
				fmt.Fprintf(&b, "Task '%s' failed: %s", t.Name, t.Result.Reason)
				// Runner messages name the task themselves; don't say it twice.
				m := strings.TrimPrefix(t.Result.Message, fmt.Sprintf("task '%s' failed: ", t.Name))
				m = strings.TrimPrefix(m, fmt.Sprintf("task '%s': ", t.Name))
				m = strings.TrimPrefix(m, t.Result.Reason+": ")
				if m != "" && m != t.Result.Reason {
					b.WriteString(": " + m)
				}
				b.WriteString(attempts(t.Result) + "\n")
			}
			if t.Result.ResultsError != "" {
				b.WriteString("Results not used: " + t.Result.ResultsError + "\n")
			}
			if logs := tail(t.Result.Logs, logBudget); logs != "" {
				b.WriteString("\nLogs:\n" + logs)
				if !strings.HasSuffix(logs, "\n") {
					b.WriteString("\n")
				}
			}
			b.WriteString("\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
