package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keptn-contrib/job-executor-service/config"
)

// lint parses and validates each job config file as the service would, printing
// "<file>: <problem>" lines; the exit code is 1 when any file has a problem.
func lint(files []string, out io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(out, "usage: job-executor-service lint FILE...")
		return 2
	}
	rc := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			_, err = config.Parse(data)
		}
		if err != nil {
			rc = 1
			for _, line := range strings.Split(err.Error(), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					fmt.Fprintf(out, "%s: %s\n", f, line)
				}
			}
			continue
		}
		fmt.Fprintf(out, "%s: ok\n", f)
	}
	return rc
}
