#!/usr/bin/env bash
# bench/aio.sh: goqio against qemu-io with many requests in flight, side by
# side (bench/run.sh's style).
#
#   bench/aio.sh [-n RUNS] [-w A1,A2] [GOQIO]
#
#   A1  20,480 random 4 KiB aio_writes into a new 1 GiB qcow2, in batches
#       of 64 in flight, each batch ended by aio_flush
#   A2  the same with aio_reads of an allocated 1 GiB qcow2
# Target (issue 16): at most 0.5 of qemu-io's time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init 5 aiobench "$@"
bench_need qemu-io qemu-img

for k in write read; do
  python3 - "$k" > "aio-$k.txt" <<'PY'
import random, sys
r = random.Random(4)
for b in range(320):
    for i in range(64):
        print('aio_%s -q %s%d 4k' % (sys.argv[1], '-P 90 ' if sys.argv[1] == 'write' else '', r.randrange(0, 1 << 30, 4096)))
    print('aio_flush')
PY
done

declare -A prep cmd
prep[A1]='qemu-img create -q -f qcow2 img 1G'
cmd[A1]='$PROG -f qcow2 -t writeback img < aio-write.txt'
prep[A2]='[ -f a2.img ] || { qemu-img create -q -f qcow2 a2.img 1G; qemu-io -f qcow2 -t writeback -c "write -P 0xab 0 1G" a2.img >/dev/null; }'
cmd[A2]='$PROG -f qcow2 -r a2.img < aio-read.txt'

bench_header qemu-io
bench_workloads qemu-io "$goqio" A1 A2
