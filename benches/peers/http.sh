#!/usr/bin/env bash
# HTTP/1.1 plaintext (TechEmpower's "Hello, World!") on 127.0.0.1: sigcoro's examples/http_server.rs
# against tokio running the same httparse loop ("tokio-raw"), may_minihttp and hyper 1.x on tokio.
# Each server runs alone in its own process with 2 worker threads; wrk drives it at 16, 256 and
# 1,024 connections and at 256 connections pipelining 16 requests deep. Peers alternate run by
# run (round 1: every peer at every level, then round 2 ...) and the median of the rounds is
# printed with the server's CPU time per request (utime+stime of its process, from
# /proc/PID/stat before and after the run) and wrk's own CPU time per request.
#
# Usage: benches/peers/http.sh [ROUNDS] [SECS]      (default 3 rounds of 3 s runs)
# Environment: PEERS (default "sigcoro tokio-raw may_minihttp hyper"; an entry PEER@PATH runs
# PEER from another build of this binary, to compare builds in one run), LEVELS (default
# "16 256 1024 256x16": connections, xDEPTH to pipeline), THREADS (default 2), PORT.
# Needs wrk (apt-get install wrk). Everything stays on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${1:-3}
SECS=${2:-3}
PEERS=${PEERS:-"sigcoro tokio-raw may_minihttp hyper"}
LEVELS=${LEVELS:-"16 256 1024 256x16"}
PORT=${PORT:-18181}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "http.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
BIN=./target/release/sigcoro-peers
TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d)
spid=
trap 'rm -rf "$WORK"; [[ -n $spid ]] && kill "$spid" 2>/dev/null; true' EXIT
cat > "$WORK/pipeline.lua" <<'LUA'
-- wrk -s pipeline.lua URL -- DEPTH: every request is DEPTH pipelined GETs of URL's path
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil) end
  req = table.concat(r)
end
request = function()
  return req
end
LUA
ulimit -n 65536 2>/dev/null || true
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
RESULTS="$WORK/results.tsv"
run=0
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; server threads: $THREADS; wrk -t$THREADS; $SECS s per run, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  for level in $LEVELS; do
    for entry in $PEERS; do
      peer=${entry%%@*}
      # A port per run: a server killed with connections open leaves them in TIME_WAIT.
      port=$((PORT + run % 200)); run=$((run + 1))
      bin=$BIN
      [[ $entry == *@* ]] && bin=${entry#*@}
      conns=${level%x*}
      extra=()
      [[ $level == *x* ]] && extra=(-s "$WORK/pipeline.lua" -- "${level#*x}")
      # The server exits by itself after SECS + 30 s should this script die.
      "$bin" http-serve "$peer" "$port" "$THREADS" $((SECS + 30)) > "$WORK/server.out" 2>&1 &
      spid=$!
      for _ in $(seq 400); do grep -q READY "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
      if ! grep -q READY "$WORK/server.out"; then
        state=running; kill -0 "$spid" 2>/dev/null || state=exited
        echo "round $round $level $entry: the server ($state) did not say READY in 20 s: $(head -c 300 "$WORK/server.out")" >&2
        kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
        continue
      fi
      before=$(cpu_ticks "$spid")
      # wrk's own CPU: the shell that waited for it reads its children's times (cutime+cstime).
      wrk_ticks=$(sh -c 'wrk "$@" > "$0" 2>&1; awk "{print \$16 + \$17}" /proc/$$/stat' \
        "$WORK/wrk.out" -t"$THREADS" -c"$conns" -d"${SECS}s" --latency "http://127.0.0.1:$port/plaintext" "${extra[@]}")
      after=$(cpu_ticks "$spid")
      kill "$spid"; wait "$spid" 2>/dev/null || true
      reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
      [[ -z $reqs ]] && echo "round $round $level $entry: wrk said: $(head -c 300 "$WORK/wrk.out")" >&2
      rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
      errs=$(awk '/Socket errors|Non-2xx/ {printf "%s ", $0}' "$WORK/wrk.out")
      p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$level" "$entry" "${rps:-0}" "${reqs:-0}" \
        $((after - before)) "$wrk_ticks" "${p99:--}" "$errs" >> "$RESULTS"
      printf 'round %s  %-7s %-13s %10s req/s  server %4s ticks  wrk %4s ticks  p99 %s %s (load %s)\n' \
        "$round" "$level" "$entry" "${rps:-0}" $((after - before)) "$wrk_ticks" "${p99:--}" "$errs" \
        "$(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" "$TICK" "$LEVELS" "$PEERS" <<'PY'
import sys, statistics
path, tick, levels, peers = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
rows = [l.rstrip("\n").split("\t") for l in open(path)]
print()
w = max([13] + [len(p) for p in peers])
print(f"{'conns':<8} {'server':<{w}} {'k req/s':>8} {'runs (k req/s)':<24} {'server CPU us/req':>17} {'req/server CPU-s':>16} {'wrk CPU us/req':>14}")
for level in levels:
    for peer in peers:
        rs = [r for r in rows if r[0] == level and r[1] == peer]
        if not rs:
            continue
        rps = [float(r[2]) for r in rs]
        cpu = [int(r[4]) / tick * 1e6 / max(int(r[3]), 1) for r in rs]
        wrk = [int(r[5]) / tick * 1e6 / max(int(r[3]), 1) for r in rs]
        med = statistics.median
        runs = ", ".join(f"{x/1000:.0f}" for x in rps)
        c = med(cpu)
        print(f"{level:<8} {peer:<{w}} {med(rps)/1000:>8.1f} {runs:<24} {c:>17.2f} {1e6/c if c else 0:>16,.0f} {med(wrk):>14.2f}")
PY
