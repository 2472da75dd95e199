#!/usr/bin/env bash
# bench/nbd.sh: goqio's NBD server against qemu-nbd on the same workloads,
# side by side (bench/run.sh's style).
#
#   bench/nbd.sh [-n RUNS] [-w N1,N4,NW] [GOQIO]
#
# The server exports an image in /dev/shm on a unix socket; the client's
# wall time is measured (ms, median of RUNS, the two servers alternating),
# with the server's peak resident memory (GNU time's %M, KB):
#   N1  nbdcopy -C 1 of a 1 GiB allocated qcow2 export to null:
#   N4  the same with 4 connections (the server run with -e 4: multi-conn)
#   NW  20,000 random 4 KiB writes, 64 in flight, into a 1 GiB qcow2 export
#       (a libnbd Python script)
# Targets: N1 at most qemu-nbd's time, N4 at most half of it, NW at most.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init 5 nbdbench "$@"
# libnbd's Python binding (python3-libnbd) is the system python's
PY=/usr/bin/python3
$PY -c 'import nbd' 2>/dev/null || { echo "python3-libnbd is not installed"; exit 1; }
export PY
bench_need qemu-nbd qemu-img qemu-io nbdcopy
ln -s "$goqio" "$work/qemu-nbd"

qemu-img create -q -f qcow2 full.qcow2 1G
qemu-io -f qcow2 -t writeback -c "write -P 0xab 0 1G" full.qcow2 >/dev/null
cat > rand.py <<'PY'
import random, sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
r = random.Random(3)
buf = nbd.Buffer.from_bytearray(bytearray(b"\x5a" * 4096))
size = h.get_size()
n = 20000
done = lambda *a: 1
while n > 0 or h.aio_in_flight() > 0:
    while n > 0 and h.aio_in_flight() < 64:
        h.aio_pwrite(buf, r.randrange(0, size, 4096), completion=done)
        n -= 1
    h.poll(-1)
h.flush()
h.shutdown()
PY

declare -A prep sargs cmd
prep[N1]=':'
sargs[N1]='-f qcow2 -r full.qcow2'
cmd[N1]='nbdcopy -C 1 "$URI" null:'
prep[N4]=':'
sargs[N4]='-f qcow2 -r -e 4 full.qcow2'
cmd[N4]='nbdcopy -C 4 "$URI" null:'
prep[NW]='qemu-img create -q -f qcow2 w.qcow2 1G'
sargs[NW]='-f qcow2 w.qcow2'
cmd[NW]='$PY rand.py "$URI"'

bench_header qemu-nbd
for w in N1 N4 NW; do
  bench_selected $w || continue
  bench_reset
  for ((i = 0; i < runs; i++)); do
    for p in qemu goqio; do
      eval "${prep[$w]}"
      if [ $p = qemu ]; then prog=qemu-nbd; else prog=./qemu-nbd; fi
      rm -f s.sock
      # the server ends by itself when the (last) client leaves
      /usr/bin/time -f "%M" -o tm $prog -k "$work/s.sock" ${sargs[$w]} >/dev/null 2>&1 &
      spid=$!
      until grep -q " $work/s.sock\$" /proc/net/unix 2>/dev/null && grep " $work/s.sock\$" /proc/net/unix | grep -q " 00010000 "; do sleep 0.01; done
      t0=$(date +%s%N)
      URI="nbd+unix:///?socket=$work/s.sock" bash -c "${cmd[$w]}" >/dev/null 2>&1 || { echo "$w $p: client failed" >&2; kill $spid; }
      t1=$(date +%s%N)
      wait $spid || true
      bench_sample $p $(((t1 - t0) / 1000000))
    done
  done
  bench_row $w
done
