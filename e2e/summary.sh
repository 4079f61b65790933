#!/bin/bash
# e2e/summary.sh LOG - a readable table (scenario, result, seconds) from `go test -v` output.
set -euo pipefail
awk '
  /^ *--- (PASS|FAIL|SKIP): / && !/\/seed#/ {
    indent = match($0, /[^ ]/) - 1
    name = $3; secs = $4; gsub(/[()s]/, "", secs)
    res = $2; sub(/:$/, "", res)
    n++; rows[n] = sprintf("%-*s%-*s %-5s %8.1f", indent, "", 60 - indent, name, res, secs)
    if (indent == 0) { top[res]++ }
  }
  /^(ok|FAIL|---) / && /github.com/ { pkgs = pkgs "\n  " $0 }
  END {
    printf "\n%-60s %-5s %8s\n", "SCENARIO", "RESULT", "SECONDS"
    for (i = 1; i <= n; i++) print rows[i]
    printf "\ntop-level: %d passed, %d failed, %d skipped%s\n", top["PASS"], top["FAIL"], top["SKIP"], pkgs
  }' "$1"
