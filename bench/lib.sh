# bench/lib.sh: what the bench scripts share (sourced, not run). Their
# method: the two programs run alternately on images in /dev/shm (tmpfs,
# to keep the disk's noise out); each workload's row is the median wall
# time of the whole process for each, the ratio goqio/QEMU, and the median
# peak resident memory (GNU time's %M).

# bench_init RUNS NAME "$@": parses [-n RUNS] [-w W1,W2,...] [GOQIO] into
# $runs, $only and $goqio (a fresh build when not given), then makes the
# work directory $work in /dev/shm, removed on exit, and enters it.
bench_init() {
  runs=$1 name=$2
  shift 2
  only=""
  local o OPTIND=1
  while getopts "n:w:" o; do
    case $o in n) runs=$OPTARG ;; w) only=",$OPTARG," ;; *) exit 2 ;; esac
  done
  shift $((OPTIND - 1))
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  goqio=${1:-}
  if [ -z "$goqio" ]; then
    goqio=$(mktemp -d)/goqio
    (cd "$here/.." && go build -o "$goqio" ./cmd/goqio)
  fi
  work=$(mktemp -d "/dev/shm/goqio-$name.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cd "$work"
}

# bench_need TOOL...: stops with a message when a tool is missing.
bench_need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$t is not installed (qemu-utils, libnbd-bin, python3-libnbd)"; exit 1; }
  done
}

# bench_selected W: whether -w lets workload W run.
bench_selected() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }

# bench_header QEMU-TOOL: the table's header line.
bench_header() {
  printf "%-4s %12s %12s %8s %12s %12s\n" work "$1 ms" "goqio ms" ratio "$1 KB" "goqio KB"
}

# bench_reset: empties the samples of the next workload.
bench_reset() { : > t.qemu; : > t.goqio; : > m.qemu; : > m.goqio; }

# bench_run SIDE PROG CMD: runs the shell command CMD, in which $PROG is
# the program under test, and records its time and memory for SIDE (qemu
# or goqio).
bench_run() {
  printf '%s\n' "$3" > w.sh
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f "%M" -o tm env PROG="$2" bash w.sh >/dev/null 2>&1 || true
  t1=$(date +%s%N)
  bench_sample "$1" $(((t1 - t0) / 1000000))
}

# bench_sample SIDE MS: records a time measured otherwise, with the
# memory GNU time wrote in ./tm.
bench_sample() { echo "$2" >> "t.$1"; tail -1 tm >> "m.$1"; }

# qimg_retry ARGS...: qemu-img ARGS, run again (5 times in all) when
# QEMU's PBKDF2 benchmark fails on a busy machine ("Unable to get accurate
# CPU usage"): the oracle's flake would otherwise stop the script in a
# workload's preparation.
qimg_retry() {
  local out i
  for i in 1 2 3 4 5; do
    if out=$(qemu-img "$@" 2>&1); then
      [ -z "$out" ] || printf '%s\n' "$out"
      return 0
    fi
    case $out in *"Unable to get accurate CPU usage"*) ;; *) break ;; esac
  done
  printf '%s\n' "$out" >&2
  return 1
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# bench_row W: prints workload W's row from its samples.
bench_row() {
  local tq tg mq mg ratio
  tq=$(median < t.qemu); tg=$(median < t.goqio)
  mq=$(median < m.qemu); mg=$(median < m.goqio)
  ratio=$(awk -v a="$tg" -v b="$tq" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf "%-4s %12s %12s %8s %12s %12s\n" "$1" "$tq" "$tg" "$ratio" "$mq" "$mg"
}

# bench_workloads QEMU GOQIO W...: each workload W that -w selects, $runs
# times per program, the two alternating: ${prep[W]} is evaluated before
# every run, then ${cmd[W]} runs with $PROG the program under test (QEMU's
# tool, then GOQIO); its row is printed. prep and cmd are the script's
# associative arrays.
bench_workloads() {
  local qprog=$1 gprog=$2 w i p prog
  shift 2
  for w in "$@"; do
    bench_selected "$w" || continue
    bench_reset
    for ((i = 0; i < runs; i++)); do
      for p in qemu goqio; do
        eval "${prep[$w]}"
        if [ $p = qemu ]; then prog=$qprog; else prog=$gprog; fi
        bench_run $p "$prog" "${cmd[$w]}"
      done
    done
    bench_row "$w"
  done
}

# ksplit OFF LEN: qemu-io zero writes of [OFF, OFF+LEN) split as the
# kernel splits an O_DIRECT write from a 512-byte aligned buffer (1023,
# 8, 1016, 8, ... sectors).
ksplit() {
  python3 - "$1" "$2" <<'PY'
import sys
off = int(sys.argv[1]); end = off + int(sys.argv[2]); first = True
while off < end:
    n = min(1023 * 512 if first else 1016 * 512, end - off); first = False
    print("write -z %d %d" % (off, n)); off += n
    if off < end:
        n = min(8 * 512, end - off); print("write -z %d %d" % (off, n)); off += n
PY
}
