#!/usr/bin/env bash
# Runs QEMU's own test suite (qemu-iotests) with goqio as qemu-io and compares
# the results with the lists of expected passes kept next to this script.
#
# The suite is taken from the Debian source package of the installed
# qemu-utils (apt-get source, through deb-src entries made from the machine's
# own apt sources) and cached outside the repository; nothing of it is
# committed. See the README's "QEMU's qemu-iotests" section.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() {
  cat <<'EOF'
Usage: tests/iotests/run.sh [OPTION...] [TEST...]

Runs QEMU 7.2's qemu-iotests with goqio as qemu-io, once per format, and
compares the results with tests/iotests/pass-FMT.txt. A failing test is run
a second time; a listed test that fails twice is a regression (one that
failed on QEMU's own PBKDF2 benchmark, "Unable to get accurate CPU usage",
runs up to 3 more times). A test the
suite skips ("not run") is none. Exits 1 on a regression (or when a pass
list lost an entry), 2 when the suite cannot be set up, 0 otherwise.

Options:
  -f, --formats LIST  formats, comma-separated (default: qcow2,raw); FMT-nbd
                      runs FMT over the nbd protocol (raw-nbd: qemu-nbd
                      serving the test images; with --as io,nbd, goqio's)
  -j N                tests the suite runs in parallel (default: 2)
  --update            add the tests that passed to the pass lists (an entry
                      is never removed)
  --as LIST           the QEMU programs goqio stands in for: io (default),
                      io,img or io,img,nbd; the others stay QEMU's own
  --stock             QEMU's own programs only; compares with
                      candidates-FMT.txt instead (to check the machine)
  --no-retry          a failure counts at once
  --cache DIR         where the suite is kept (default: $GOQIO_IOTESTS_CACHE,
                      else $XDG_CACHE_HOME/goqio-iotests, else
                      /tmp/goqio-iotests)
  --keep              keep the scratch directory (the images the tests left)
  -h, --help          this text

TEST...  run only these tests (default: the tests of candidates-FMT.txt and
         pass-FMT.txt)

Environment: GOQIO_IOTESTS_TIMEOUT, seconds one run of the suite may take
(default 900). The last run's TAP output, diffs and .out.bad files are left
in CACHE/last-run.
EOF
}

formats=qcow2,raw jobs=2 update=0 as=io stock=0 retry=1 keep=0
cache=${GOQIO_IOTESTS_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/goqio-iotests}}
cache=${cache:-/tmp/goqio-iotests}
timeout_s=${GOQIO_IOTESTS_TIMEOUT:-900}
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0;;
    -f|--formats) formats=${2:?}; shift 2;;
    -j) jobs=${2:?}; shift 2;;
    --update) update=1; shift;;
    --as) as=${2:?}; shift 2;;
    --stock) stock=1; shift;;
    --no-retry) retry=0; shift;;
    --cache) cache=${2:?}; shift 2;;
    --keep) keep=1; shift;;
    --) shift; break;;
    -*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2;;
    *) break;;
  esac
done
only=("$@")
((stock && update)) && { echo "run.sh: --update records goqio's passes; not with --stock" >&2; exit 2; }
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -j wants a number" >&2; exit 2; }

die() { echo "iotests: $*" >&2; exit 2; }

# names FILE: the test names of a list (one a line; '#' starts a comment).
names() { [[ -f $1 ]] && sed 's/#.*//' "$1" | awk 'NF {print $1}'; }

# --- what the suite needs ---------------------------------------------------

missing=()
for p in qemu-io:qemu-utils qemu-img:qemu-utils qemu-nbd:qemu-utils \
         dpkg-source:dpkg-dev apt-get:apt python3:python3 flock:util-linux; do
  command -v "${p%%:*}" >/dev/null 2>&1 || missing+=("${p#*:}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  ((EUID == 0)) || die "needs ${missing[*]} (apt-get install ${missing[*]}, as root)"
  echo "iotests: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "could not install ${missing[*]}"
fi
python=$(command -v /usr/bin/python3 python3 | head -1)
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 6))' || die "$python is older than the suite's 3.6"

# --- the suite, from the source package of the installed qemu-utils ---------

src_pkg=$(dpkg-query -W -f='${source:Package}' qemu-utils 2>/dev/null)
src_ver=$(dpkg-query -W -f='${source:Version}' qemu-utils 2>/dev/null)
[[ -n $src_pkg && -n $src_ver ]] || die "qemu-utils is not a Debian package here"
suite=$cache/${src_pkg}_${src_ver#*:}    # the epoch's colon stays out of paths

fetch_suite() {
  local apt=$cache/apt tmp aptopt dsc
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache" || return 1
  # deb-src twins of Debian's own entries (deb822 and one-line styles)
  rm -f "$apt/sources.list.d/"*
  [[ -f /etc/apt/sources.list.d/debian.sources ]] &&
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$apt/sources.list.d/debian.sources"
  [[ -f /etc/apt/sources.list ]] &&
    sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list >"$apt/sources.list.d/debian.list"
  aptopt=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources.list.d"
          -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  apt-get "${aptopt[@]}" update || return 1
  tmp=$(mktemp -d "$cache/fetch.XXXXXX") || return 1
  if ! (cd "$tmp" && apt-get "${aptopt[@]}" source --download-only "$src_pkg=$src_ver"); then
    rm -rf "$tmp"; echo "$src_pkg $src_ver is not in the archive's sources" >&2; return 1
  fi
  dsc=$(ls "$tmp"/*.dsc | head -1)
  # dpkg-source checks the files against the .dsc (whose own hash apt checked
  # against the signed archive index) and applies Debian's patches.
  dpkg-source -x "$dsc" "$tmp/x" || { rm -rf "$tmp"; return 1; }
  mkdir -p "$tmp/suite/tests" &&
    mv "$tmp/x/tests/qemu-iotests" "$tmp/suite/tests/" && mv "$tmp/x/python" "$tmp/suite/" &&
    rm -rf "$suite" && mv "$tmp/suite" "$suite" || { rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
}

mkdir -p "$cache" || die "cannot create $cache"
if [[ ! -x $suite/tests/qemu-iotests/check ]]; then
  exec 9>"$cache/.lock" && flock 9 || die "cannot lock $cache/.lock"
  if [[ ! -x $suite/tests/qemu-iotests/check ]]; then
    echo "iotests: fetching the source of $src_pkg $src_ver (once; kept in $cache)"
    fetch_suite >"$cache/fetch.log" 2>&1 || { tail -20 "$cache/fetch.log" >&2; die "could not get the suite (log: $cache/fetch.log)"; }
  fi
  exec 9>&-
fi
iot=$suite/tests/qemu-iotests

# --- this run's directory: programs, the suite's build tree, scratch ---------

# (some tests refuse a TEST_DIR with characters other than [-_a-zA-Z0-9/])
tmpdir=${TMPDIR:-/tmp}; [[ $tmpdir == *[^-_a-zA-Z0-9/]* ]] && tmpdir=/tmp
work=$(mktemp -d "$tmpdir/goqio-iotests-XXXXXX") || die "no scratch directory"
cleanup() { ((keep)) && echo "iotests: scratch kept in $work" || rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/bin" "$work/as" "$work/logs" "$work/build/tests/qemu-iotests"

# No qemu-system here: the suite only asks it for its machine types. Tests
# that start a VM are not in the lists.
cat >"$work/bin/qemu-system" <<'EOF'
#!/bin/sh
if [ "$1 $2" = "-machine help" ]; then
  echo "Supported machines are:"
  echo "pc                   Standard PC (default)"
  exit 0
fi
echo "qemu-system is not installed (goqio's qemu-iotests run)" >&2
exit 1
EOF
chmod +x "$work/bin/qemu-system"

io=$(command -v qemu-io) img=$(command -v qemu-img) nbd=$(command -v qemu-nbd)
if ((stock)); then
  label="QEMU's own programs"
else
  (cd "$root" && go build -o "$work/bin/goqio" ./cmd/goqio) || die "goqio does not build"
  # goqio takes its name, and so its behaviour, from argv[0]
  for p in ${as//,/ }; do
    case $p in
      io) ln -s "$work/bin/goqio" "$work/as/qemu-io"; io=$work/as/qemu-io;;
      img) ln -s "$work/bin/goqio" "$work/as/qemu-img"; img=$work/as/qemu-img;;
      nbd) ln -s "$work/bin/goqio" "$work/as/qemu-nbd"; nbd=$work/as/qemu-nbd;;
      *) die "--as takes io, img and nbd";;
    esac
  done
  label="goqio as qemu-$as"; label=${label//,/, qemu-}
fi

# check, called through a symlink, treats the link's directory as its build
# tree: its .last-elapsed-cache goes there, and the cached suite stays as
# fetched.
ln -s "$iot/check" "$work/build/tests/qemu-iotests/check"

# run_suite FMT ATTEMPT TEST...: one run of check, TAP output to the logs
# (FMT-nbd: FMT over the nbd protocol)
run_suite() {
  local fmt=$1 n=$2 rc t0=$SECONDS proto=file; shift 2
  [[ $fmt == *-nbd ]] && proto=nbd
  mkdir -p "$work/scratch/$fmt-$n" "$work/sock/$fmt-$n"
  (cd "$work/build/tests/qemu-iotests" &&
   env -u IMGOPTS -u QEMU_IO_OPTIONS -u QEMU_IMG_OPTIONS -u QEMU_NBD_OPTIONS -u QEMU_OPTIONS -u GDB_OPTIONS \
     QEMU_PROG="$work/bin/qemu-system" QSD_PROG="$work/bin/qemu-system" \
     QEMU_IO_PROG="$io" QEMU_IMG_PROG="$img" QEMU_NBD_PROG="$nbd" \
     TEST_DIR="$work/scratch/$fmt-$n" SOCK_DIR="$work/sock/$fmt-$n" \
     timeout -k 10 "$timeout_s" "$python" ./check -tap -j "$jobs" "-${fmt%-nbd}" "-$proto" "$@") \
    </dev/null >"$work/logs/$fmt-$n.tap" 2>"$work/logs/$fmt-$n.diff"
  rc=$?
  ((rc == 124 || rc == 137)) && echo "iotests $fmt: the suite's run $n timed out after ${timeout_s}s" >&2
  took[$n]=$((SECONDS - t0))
  # keep the failures' outputs and the skips' reasons with the logs
  mkdir -p "$work/logs/$fmt-$n"
  find "$work/scratch/$fmt-$n" \( -name '*.out.bad' -o -name '*.notrun' \) -exec mv {} "$work/logs/$fmt-$n/" \;
  ((keep)) || rm -rf "$work/scratch/$fmt-$n"
  return 0
}

# tap_results FILE: "NAME pass|fail|skip" for each test the TAP output reports
tap_results() {
  awk '$1 == "ok" && $NF == "SKIP" {print $3, "skip"; next}
       $1 == "ok" {print $3, "pass"; next}
       $1 == "not" && $2 == "ok" {print $4, "fail"}' "$1"
}

# rerun ATTEMPT TEST...: runs the tests of $fmt again and takes their
# results (res, why, at: the run whose logs tell of them)
rerun() {
  local n=$1 t s
  shift
  run_suite "$fmt" "$n" "$@"
  local -A second=()
  while read -r t s; do second[$t]=$s; done < <(tap_results "$work/logs/$fmt-$n.tap")
  for t in "$@"; do
    s=${second[$t]:-fail}
    res[$t]=$s at[$t]=$n
    [[ $s == skip ]] && why[$t]=$(notrun_reason "$fmt" "$n" "$t")
  done
}

# notrun_reason FMT ATTEMPT NAME: why the suite skipped a test
notrun_reason() {
  local f=$work/logs/$1-$2/$3.notrun
  [[ -f $f ]] && tr '\n' ' ' <"$f" | sed 's/ *$//'
}

# reference NAME FMT: the expected output the suite compares a test with
reference() {
  local d=$iot f
  [[ -f $iot/$1 ]] || d=$iot/tests
  for f in "$d/$1.out.$2" "$d/$1.pc.out" "$d/$1.out"; do
    [[ -f $f ]] && { echo "$f"; return; }
  done
}

# grows FILE: every test the list ever held (by git history) is still in it
grows() {
  local rel=${1#"$root"/} hist lost
  hist=$(git -C "$root" log --format= -p -- "$rel" 2>/dev/null) || { echo "iotests: no git history for $rel, not checked that it only grows"; return 0; }
  lost=$(sed -n 's/^+\([0-9A-Za-z][^[:space:]#]*\).*/\1/p' <<<"$hist" | LC_ALL=C sort -u |
         LC_ALL=C comm -23 - <(names "$1" | LC_ALL=C sort -u))
  [[ -z $lost ]] && return 0
  echo "iotests: $rel lost tests it once listed: $(echo $lost) (the list only grows)"
  return 1
}

# --- run each format ----------------------------------------------------------

echo "iotests: suite of $src_pkg $src_ver ($suite), $label, -j $jobs"
status=0
declare -A took=()
for fmt in ${formats//,/ }; do
  cand=$here/candidates-$fmt.txt pass=$here/pass-$fmt.txt
  [[ -f $cand || -f $pass ]] || { echo "iotests $fmt: no $cand"; status=1; continue; }
  if ((stock)); then expected=$cand; else expected=$pass; fi

  declare -A res=() why=() exp=() retried=() at=()
  for t in $(names "$expected"); do exp[$t]=1; done
  if ((${#only[@]})); then
    tests=("${only[@]}")
  else
    mapfile -t tests < <({ names "$cand"; names "$pass"; } | LC_ALL=C sort -u)
  fi
  # check stops at a name it does not know: such names are left out
  run=() absent=()
  for t in "${tests[@]}"; do
    if [[ -f $iot/$t || -f $iot/tests/$t ]]; then run+=("$t"); else absent+=("$t"); fi
  done
  ((${#run[@]})) || { echo "iotests $fmt: no test to run"; continue; }

  run_suite "$fmt" 1 "${run[@]}"
  while read -r t s; do res[$t]=$s; done < <(tap_results "$work/logs/$fmt-1.tap")
  again=()
  for t in "${run[@]}"; do
    [[ -n ${res[$t]:-} ]] || { res[$t]=fail; why[$t]="no result (see $fmt-1.diff)"; }
    [[ ${res[$t]} == skip ]] && why[$t]=$(notrun_reason "$fmt" 1 "$t")
    [[ ${res[$t]} == fail ]] && again+=("$t")
  done
  attempt=1
  if ((retry && ${#again[@]})); then
    attempt=2
    rerun 2 "${again[@]}"
    for t in "${again[@]}"; do retried[$t]=1; done
    # QEMU's own PBKDF2 benchmark fails now and then on a busy machine
    # ("Unable to get accurate CPU usage": its thread's CPU clock read no
    # time), in QEMU's qemu-img and qemu-io as much as in goqio's: a test
    # that failed on it again runs up to 3 more times
    while ((attempt < 5)); do
      flake=()
      for t in "${again[@]}"; do
        [[ ${res[$t]} == fail ]] &&
          grep -qs 'Unable to get accurate CPU usage' "$work/logs/$fmt-$attempt/$t.out.bad" && flake+=("$t")
      done
      ((${#flake[@]})) || break
      attempt=$((attempt + 1))
      rerun "$attempt" "${flake[@]}"
    done
  fi

  passed=() failed=() skipped=() flaky=() regressions=() new=()
  for t in "${run[@]}"; do
    case ${res[$t]} in
      pass) passed+=("$t"); [[ -n ${retried[$t]:-} ]] && flaky+=("$t")
            [[ -n ${exp[$t]:-} ]] || new+=("$t");;
      skip) skipped+=("$t");;
      *) failed+=("$t"); [[ -n ${exp[$t]:-} ]] && regressions+=("$t");;
    esac
  done
  for t in "${absent[@]}"; do [[ -n ${exp[$t]:-} ]] && regressions+=("$t") why[$t]="not in this suite"; done

  secs="${took[1]}s"; ((attempt >= 2)) && secs+="; ${#again[@]} retried in ${took[2]}s"
  ((attempt > 2)) && secs+="; QEMU's PBKDF2 flake: $((attempt - 2)) more run(s)"
  echo "iotests $fmt: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped ($label; $secs)"
  ((${#flaky[@]})) && echo "  passed when run again: ${flaky[*]}"
  ((${#failed[@]})) && echo "  failing: ${failed[*]}"
  for t in "${skipped[@]}"; do echo "  skipped by the suite: $t${why[$t]:+ (${why[$t]})}"; done
  ((${#absent[@]})) && echo "  not in this suite: ${absent[*]}"
  if ((${#regressions[@]})); then
    status=1
    times=once; ((attempt == 2)) && times=twice; ((attempt > 2)) && times="$attempt times"
    echo "  REGRESSIONS (in ${expected#"$root"/}, failed $times): ${regressions[*]}"
    for t in "${regressions[@]:0:5}"; do
      bad=$work/logs/$fmt-${at[$t]:-1}/$t.out.bad ref=$(reference "$t" "${fmt%-nbd}")
      if [[ -f $bad && -n $ref ]]; then
        echo "  --- $t: diff of the expected output and this run's (first 60 lines)"
        diff -u "$ref" "$bad" | head -60 | sed 's/^/    /'
      else
        echo "  --- $t: ${why[$t]:-no output kept (see the logs)}"
      fi
    done
    ((${#regressions[@]} > 5)) && echo "  (the other diffs: in the logs)"
  fi
  if ((${#new[@]})); then
    if ((update)); then
      {
        if [[ -f $pass ]]; then sed -n '/^[^#]/q; p' "$pass"   # the leading comment block
        else echo "# qemu-iotests that pass with $label ($fmt); only grows"; fi
        { names "$pass"; printf '%s\n' "${new[@]}"; } | LC_ALL=C sort -u
      } >"$pass.new" && mv "$pass.new" "$pass"
      echo "  added to ${pass#"$root"/}: ${new[*]}"
    else
      echo "  new passes, not in ${expected#"$root"/} (add them with --update): ${new[*]}"
    fi
  fi
  grows "$pass" || status=1
  unset res why exp retried at
done

# the last run's logs, for a look at the failures
if [[ -d $work/logs ]]; then
  rm -rf "$cache/last-run.old"; [[ -d $cache/last-run ]] && mv "$cache/last-run" "$cache/last-run.old"
  mv "$work/logs" "$cache/last-run" && rm -rf "$cache/last-run.old"
  echo "iotests: logs of this run in $cache/last-run"
fi
exit "$status"
