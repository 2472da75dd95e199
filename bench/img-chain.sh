#!/usr/bin/env bash
# bench/img-chain.sh: goqio against qemu-img on rebase and commit, side by
# side (the issue's speed targets: at most qemu-img's time).
#
#   bench/img-chain.sh [-n RUNS] [GOQIO]
#
# As bench/run.sh: each workload runs RUNS times per program, alternating,
# on images in /dev/shm, with fresh copies of the images before every run;
# it prints the median wall time (ms), the goqio/qemu-img ratio and the
# peak resident memory (KB). goqio runs as qemu-img (a symlink).
#   R1  rebase (safe) of a 1 GiB overlay (256 MiB of data, 64 MiB of zero
#       clusters over the old base) from a fully written old base onto a
#       new base that differs from it in half of its clusters
#   C1  commit of a 1 GiB overlay (1 GiB of data) into its base
#   C2  commit of a 1 GiB overlay holding 512 MiB of data and 512 MiB of
#       kernel-split zero writes over its base's data
set -euo pipefail
runs=3
while getopts "n:" o; do
  case $o in n) runs=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
here=$(cd "$(dirname "$0")" && pwd)
goqio=${1:-}
if [ -z "$goqio" ]; then
  goqio=$(mktemp -d)/goqio
  (cd "$here/.." && go build -o "$goqio" ./cmd/goqio)
fi
command -v qemu-img >/dev/null || { echo "qemu-img is not installed (apt-get install qemu-utils)"; exit 1; }
work=$(mktemp -d /dev/shm/goqio-bench-img.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir bin && ln -s "$goqio" bin/qemu-img

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

# templates, made once by QEMU's tools
qemu-img create -q -f qcow2 t-old.qcow2 1G
qemu-io -f qcow2 -c "write -P 1 0 1G" t-old.qcow2 >/dev/null
qemu-img create -q -f qcow2 t-new.qcow2 1G
python3 -c "
for i in range(0, 1 << 30, 128 << 10):
    print('write -q -P 1 %d 64k' % i); print('write -q -P 2 %d 64k' % (i + 65536))" | qemu-io -f qcow2 t-new.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b t-old.qcow2 -F qcow2 t-ov.qcow2
qemu-io -f qcow2 -c "write -P 3 0 256M" t-ov.qcow2 >/dev/null
ksplit $((512 << 20)) $((64 << 20)) | qemu-io -f qcow2 t-ov.qcow2 >/dev/null
qemu-img create -q -f qcow2 t-cb.qcow2 1G
qemu-io -f qcow2 -c "write -P 1 0 1G" t-cb.qcow2 >/dev/null
cp t-cb.qcow2 cb.qcow2
qemu-img create -q -f qcow2 -b cb.qcow2 -F qcow2 t-ct.qcow2
qemu-io -f qcow2 -c "write -P 5 0 1G" t-ct.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b cb.qcow2 -F qcow2 t-cz.qcow2
qemu-io -f qcow2 -c "write -P 5 0 512M" t-cz.qcow2 >/dev/null
ksplit $((512 << 20)) $((512 << 20)) | qemu-io -f qcow2 t-cz.qcow2 >/dev/null

declare -A prep cmd
prep[R1]='cp t-old.qcow2 old.qcow2; cp t-new.qcow2 new.qcow2; cp t-ov.qcow2 ov.qcow2; qemu-img rebase -u -b old.qcow2 -F qcow2 ov.qcow2'
cmd[R1]='"$PROG" rebase -b new.qcow2 -F qcow2 ov.qcow2'
prep[C1]='cp t-cb.qcow2 cb.qcow2; cp t-ct.qcow2 ct.qcow2'
cmd[C1]='"$PROG" commit ct.qcow2'
prep[C2]='cp t-cb.qcow2 cb.qcow2; cp t-cz.qcow2 cz.qcow2'
cmd[C2]='"$PROG" commit cz.qcow2'

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf "%-4s %12s %12s %8s %12s %12s\n" work "qemu-img ms" "goqio ms" ratio "qemu-img KB" "goqio KB"
for w in R1 C1 C2; do
  : > t.qemu; : > t.goqio; : > m.qemu; : > m.goqio
  for ((i = 0; i < runs; i++)); do
    for p in qemu goqio; do
      eval "${prep[$w]}"
      if [ $p = qemu ]; then prog=$(command -v qemu-img); else prog=$work/bin/qemu-img; fi
      printf '%s\n' "${cmd[$w]}" > w.sh
      t0=$(date +%s%N)
      /usr/bin/time -f "%M" -o tm env PROG="$prog" bash w.sh >/dev/null 2>&1 || true
      t1=$(date +%s%N)
      echo "$(( (t1 - t0) / 1000000 ))" >> t.$p; tail -1 tm >> m.$p
    done
  done
  tq=$(median < t.qemu); tg=$(median < t.goqio)
  mq=$(median < m.qemu); mg=$(median < m.goqio)
  ratio=$(awk -v a="$tg" -v b="$tq" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf "%-4s %12s %12s %8s %12s %12s\n" "$w" "$tq" "$tg" "$ratio" "$mq" "$mg"
done
