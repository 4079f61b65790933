package handler

import (
	"fmt"
	"strings"
	"time"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// summarize folds action results into the .finished status, message and time span. Logs are
// shortened (keeping their tails) until the whole message fits in maxBytes.
func summarize(results []actionResult, maxBytes int) (ok bool, msg string, start, end time.Time) {
	ok = true
	ntasks := 0
	var actionsEnd time.Time
	for i, r := range results {
		ok = ok && r.ok
		ntasks += len(r.tasks)
		if i == 0 || r.start.Before(start) {
			start = r.start
		}
		if r.end.After(actionsEnd) {
			actionsEnd = r.end
		}
		for _, t := range r.tasks {
			if !t.result.Start.IsZero() && t.result.Start.Before(start) {
				start = t.result.Start
			}
			if t.result.End.After(end) {
				end = t.result.End
			}
		}
	}
	// The span ends when the last Job did; without any Job (refused or invalid tasks) it
	// ends when the actions gave up.
	if end.IsZero() {
		end = actionsEnd
	}
	msg = render(results, -1)
	if len(msg) > maxBytes {
		// Share what the text around the logs leaves over equally between the tasks.
		overhead := len(render(results, 0))
		msg = render(results, max(0, (maxBytes-overhead)/max(1, ntasks)))
	}
	if len(msg) > maxBytes { // pathological: huge failure reasons or very many tasks
		msg = boundTotal(msg, maxBytes)
	}
	return ok, msg, start, end
}

// boundTotal is jobs.BoundLogs with the truncation marker counted in max.
func boundTotal(s string, max int) string {
	out := jobs.BoundLogs(s, max)
	if over := len(out) - max; over > 0 {
		out = jobs.BoundLogs(s, max-over)
	}
	return out
}

func render(results []actionResult, logBudget int) string {
	var b strings.Builder
	for _, r := range results {
		if r.err != "" {
			b.WriteString(r.err + "\n\n")
		}
		for _, t := range r.tasks {
			if t.result.Succeeded {
				fmt.Fprintf(&b, "Task '%s' finished successfully!\n", t.name)
			} else {
				fmt.Fprintf(&b, "Task '%s' failed: %s", t.name, t.result.Reason)
				// Runner messages name the task themselves; don't say it twice.
				m := strings.TrimPrefix(t.result.Message, fmt.Sprintf("task '%s' failed: ", t.name))
				m = strings.TrimPrefix(m, fmt.Sprintf("task '%s': ", t.name))
				m = strings.TrimPrefix(m, t.result.Reason+": ")
				if m != "" && m != t.result.Reason {
					b.WriteString(": " + m)
				}
				b.WriteString("\n")
			}
			if logs := cut(t.result.Logs, logBudget); logs != "" {
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

func cut(logs string, budget int) string {
	if budget < 0 {
		return logs
	}
	return jobs.BoundLogs(logs, budget)
}
