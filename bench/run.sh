#!/usr/bin/env bash
# bench/run.sh: goqio against qemu-io on the same workloads, side by side.
#
#   bench/run.sh [-n RUNS] [-w W3,W4,...] [GOQIO]
#
# Each workload runs RUNS times per program, alternating the two programs,
# on images in /dev/shm (tmpfs, to keep the machine's disk noise out). It
# prints the median wall time (ms, whole process) of each, the goqio/qemu-io ratio, and the peak
# resident memory (GNU time's %M). GOQIO defaults to a fresh build.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init 5 bench "$@"
bench_need qemu-io qemu-img

ksplit 0 $((256 << 20)) > ksplit.txt
python3 -c "
import random
r = random.Random(1)
for i in range(5000):
    o = r.randrange(0, 1 << 30, 4096)
    print('write -q -P %d %d 4k' % (i % 256, o))
    print('read -q %d 4k' % o)
" > small.txt
python3 -c "
import random
r = random.Random(2)
for i in range(20000):
    print('write -q %d 4k' % (r.randrange(0, 1 << 30, 4096)))
" > rand4k.txt

# workload NAME: prepare (run before every measurement) and the command
# ($PROG stands for the program under test).
declare -A prep cmd
prep[W1]='qemu-img create -q -f qcow2 img 1G'
cmd[W1]='$PROG -f qcow2 -t writeback -c "write -P 0xab 0 1G" img'
prep[W2]='[ -f w2.img ] || { qemu-img create -q -f qcow2 w2.img 1G; qemu-io -f qcow2 -t writeback -c "write -P 0xab 0 1G" w2.img >/dev/null; }'
cmd[W2]='$PROG -f qcow2 -c "read 0 1G" w2.img'
prep[W3]='qemu-img create -q -f qcow2 img 1G'
cmd[W3]='$PROG -f qcow2 img < ksplit.txt'
prep[W4]='qemu-img create -q -f qcow2 img 64G'
cmd[W4]='$PROG -f qcow2 -c "write -zn 0 64G" img'
prep[W5]='[ -f w5.img ] || { qemu-img create -q -f qcow2 w5.img 1T; python3 -c "
import random
r = random.Random(5)
print(\"\\n\".join(\"write -q %d 4k\" % (r.randrange(0, 1 << 40, 65536)) for i in range(50000)))" | qemu-io -f qcow2 -t unsafe w5.img >/dev/null; }'
cmd[W5]='$PROG -f qcow2 -r -c map w5.img'
prep[W7]='[ -f w7.img ] || { qemu-img create -q -f qcow2 w7s.img 256M; qemu-io -f qcow2 -c "write -P 0x5a 0 128M" -c "write -P 0xa5 128M 64M" w7s.img >/dev/null; qemu-img convert -c -O qcow2 w7s.img w7.img; }'
cmd[W7]='$PROG -f qcow2 -r -c "read 0 256M" w7.img'
prep[W7Z]='[ -f w7z.img ] || { qemu-img create -q -f qcow2 w7s.img 256M; qemu-io -f qcow2 -c "write -P 0x5a 0 128M" -c "write -P 0xa5 128M 64M" w7s.img >/dev/null; qemu-img convert -c -O qcow2 -o compression_type=zstd w7s.img w7z.img; }'
cmd[W7Z]='$PROG -f qcow2 -r -c "read 0 256M" w7z.img'
prep[W6]='qemu-img create -q -f qcow2 img 1G'
cmd[W6]='$PROG -f qcow2 -t writeback img < small.txt'
prep[W8]='qemu-img create -q -f qcow2 img 1G'
cmd[W8]='$PROG -f qcow2 -t writeback img < rand4k.txt'
# encrypted qcow2 (LUKS, aes-256-xts-plain64): W9 writes, W10 reads 256 MiB
# (iter-time=10: the data dominates), W11 opens an image made with QEMU's
# default iter-time (2000 ms: the open is one slot's PBKDF2, as in QEMU)
encobj='--object secret,id=s0,data=benchpw'
encimg='--image-opts driver=qcow2,encrypt.key-secret=s0,file.filename'
prep[W9]="qimg_retry create -q -f qcow2 $encobj -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 img 256M"
cmd[W9]="\$PROG $encobj -t writeback -c 'write -P 0xab 0 256M' $encimg=img"
prep[W10]="[ -f w10.img ] || { qimg_retry create -q -f qcow2 $encobj -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 w10.img 256M; qemu-io $encobj -c 'write -P 0xab 0 256M' $encimg=w10.img >/dev/null; }"
cmd[W10]="\$PROG $encobj -r -c 'read 0 256M' $encimg=w10.img"
prep[W11]="[ -f w11.img ] || qimg_retry create -q -f qcow2 $encobj -o encrypt.format=luks,encrypt.key-secret=s0 w11.img 64M"
cmd[W11]="\$PROG $encobj -r -c 'read 0 512' $encimg=w11.img"
# one zero write over 128 L2 tables of 2 MiB (64 TiB): time and peak memory
# of a request that walks more tables than the L2 cache holds (32 MiB)
prep[W12]='qemu-img create -q -f qcow2 -o cluster_size=2M img 64T'
cmd[W12]='$PROG -f qcow2 -c "write -zn 0 64T" img'

bench_header qemu-io
bench_workloads qemu-io "$goqio" W1 W2 W3 W4 W5 W6 W7 W7Z W8 W9 W10 W11 W12
