#!/usr/bin/env bash
# bench/img-chain.sh: goqio against qemu-img on rebase and commit, side by
# side (the issue's speed targets: at most qemu-img's time).
#
#   bench/img-chain.sh [-n RUNS] [-w R1,C1,...] [GOQIO]
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
. "$(dirname "$0")/lib.sh"
bench_init 3 bench-img "$@"
bench_need qemu-img qemu-io
mkdir bin && ln -s "$goqio" bin/qemu-img

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

bench_header qemu-img
bench_workloads "$(command -v qemu-img)" "$work/bin/qemu-img" R1 C1 C2
