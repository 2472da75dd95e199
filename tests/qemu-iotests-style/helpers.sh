# Helper sourced by transcripts: the commands a 512-byte-aligned O_DIRECT write
# of LEN bytes at OFF becomes after the Linux block layer splits it (pieces of
# 1023, 8, 1016, 8, 1016, ... sectors), each sent as a zero write.
ksplit() {
  local off=$1 len=$2 end=$(( $1 + $2 )) n first=1
  while [ "$off" -lt "$end" ]; do
    if [ $first = 1 ]; then n=$((1023 * 512)); first=0; else n=$((1016 * 512)); fi
    [ $((off + n)) -gt "$end" ] && n=$((end - off))
    echo "write -z $off $n"; off=$((off + n))
    if [ "$off" -lt "$end" ]; then
      n=$((8 * 512)); [ $((off + n)) -gt "$end" ] && n=$((end - off))
      echo "write -z $off $n"; off=$((off + n))
    fi
  done
}
# detach FILE: forget the backing file of a qcow2 image (backing file offset
# and size set to 0), as qemu-img rebase -u -b '' does.
detach() {
  printf '\000\000\000\000\000\000\000\000\000\000\000\000' | dd of="$1" bs=1 seek=8 conv=notrunc 2>/dev/null
}
# imgmap FILE [human]: the image's map as qemu-img map prints it (goqio's
# identical map when QEMU is not installed).
imgmap() {
  local out=json; [ "$2" = human ] && out=human
  if command -v qemu-img >/dev/null 2>&1; then
    qemu-img map --output=$out "$1"
  else
    goqio -r -c "map --output=$out" "$1"
  fi
}
