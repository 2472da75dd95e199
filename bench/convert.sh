#!/usr/bin/env bash
# bench/convert.sh: goqio's qemu-img convert against qemu-img's, side by
# side (bench/run.sh's method: alternating runs on tmpfs, median wall time
# of the whole process, the ratio goqio/qemu-img, peak resident memory).
#
#   bench/convert.sh [-n RUNS] [-w C1,C3,...] [GOQIO]
#
# C1  1 GiB fully allocated qcow2 -> raw            (default options)
# C2  1 GiB raw -> qcow2                             (default options)
# C3  C1 with -m 8 -W                  C4  C2 with -m 8 -W
# C5  convert -c of 256 MiB of compressible data to qcow2 (zlib), -m 8 -W
# C6  1 TiB qcow2 with 50,000 scattered 4 KiB clusters -> sparse raw
#
# After the table, the floor of C1..C4 on this machine: the median time of
# writing 1 GiB into a new file (dd bs=2M from /dev/zero), which every one
# of them must at least do (on tmpfs one writer at a time holds the inode's
# lock, so more threads do not make it shorter), as a fraction of
# qemu-img's C1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init 3 cbench "$@"
bench_need qemu-img qemu-io
mkdir bin
ln -s "$goqio" bin/qemu-img
gimg=$work/bin/qemu-img

qemu-img create -q -f qcow2 full.qcow2 1G
qemu-io -f qcow2 -t unsafe -c "write -P 0xab 0 1G" full.qcow2 >/dev/null
qemu-img convert -O raw full.qcow2 full.raw
python3 -c "
import os
with open('comp.raw', 'wb') as f:
    line = b''.join(b'%08d the quick brown fox jumps over the lazy dog\n' % i for i in range(100))
    while f.tell() < 256 << 20:
        f.write(line)
    f.truncate(256 << 20)
"
qemu-img create -q -f qcow2 sparse.qcow2 1T
python3 -c "
import random
r = random.Random(5)
print('\n'.join('write -q %d 4k' % (r.randrange(0, 1 << 40, 65536)) for i in range(50000)))" | qemu-io -f qcow2 -t unsafe sparse.qcow2 >/dev/null

declare -A prep cmd
cmd[C1]='$PROG convert -O raw full.qcow2 out.img'
cmd[C2]='$PROG convert -O qcow2 full.raw out.img'
cmd[C3]='$PROG convert -m 8 -W -O raw full.qcow2 out.img'
cmd[C4]='$PROG convert -m 8 -W -O qcow2 full.raw out.img'
cmd[C5]='$PROG convert -c -m 8 -W -O qcow2 comp.raw out.img'
cmd[C6]='$PROG convert -O raw sparse.qcow2 out.img'
for w in C1 C2 C3 C4 C5 C6; do prep[$w]='rm -f out.img'; done

bench_header qemu-img
bench_workloads qemu-img "$gimg" C1
! bench_selected C1 || cp t.qemu t.c1
bench_workloads qemu-img "$gimg" C2 C3 C4 C5 C6
if bench_selected C1; then
  : > t.floor
  for ((i = 0; i < runs; i++)); do
    rm -f out.img
    bench_run floor dd 'dd if=/dev/zero of=out.img bs=2M count=512 status=none'
  done
  awk -v f="$(median < t.floor)" -v q="$(median < t.c1)" 'BEGIN { printf "floor of C1..C4 (dd of 1 GiB into a new file): %s ms, %.2f of qemu-img C1 (%s ms)\n", f, f / q, q }'
fi
