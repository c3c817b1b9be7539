#!/usr/bin/env bash
# The results of issue #21 that want a GPU, on one GPU, with `classbench sweep`; the finished runs' records
# then go to results/<name> with `classbench record`.  The parts, cheapest first (the order they run in):
#
#   fast               the fast recipe, configs/cifar10/fast.yaml, 5 seeds (--seeds-fast N) -> results/gpu-fast
#   seed004-cifar10    seed 004's pooling question at its budget: c-ViT (class token) against mc-ViT (sequence
#                      pooling), configs/cifar10/{cvit,mcvit}-tiny.yaml, 100 epochs, 3 seeds each
#                      (--seeds-pooling N)                                        -> results/gpu-seed004-cifar10
#   seed002-cifar10    seed 002's whole suite on CIFAR-10 at its budget (every configs/cifar10 config from
#                      enhuiz/image-classification: 5,000 steps at batch 128), 1 seed each, then 3 seeds
#                      (--seeds-insight N) for the two questions seed 002 draws insights from: MixStyle
#                      (resnet18-ms1/-ms2 against plain) and relative attention (vitn-ra against vitn)
#                                                                                 -> results/gpu-seed002-cifar10
#   seed002-cifar100   the same on CIFAR-100 (configs/cifar100), seed 002's own dataset; skipped, with a
#                      message, where no CIFAR-100 copy is found                 -> results/gpu-seed002-cifar100
#   seed003-resnet18   seed 003's ResNet-18 recipe, configs/cifar10/resnet18.yaml, 200 epochs (Fanziyang-v
#                      reports 90.34 % on CIFAR-10); 1 seed (--seeds-resnet18 N) -> results/gpu-seed003-resnet18
#
#   benchmarks/gpu_suite.sh                          # on the GPU machine, CLASSBENCH_DATA=/folder/with/cifar
#   benchmarks/gpu_suite.sh --only fast seed003-resnet18
#   benchmarks/gpu_suite.sh --time-limit 3000 --jobs 4   # a leased GPU: stop cleanly after 50 minutes
#   # a big GPU that small runs leave idle: two lanes at once (how the 2026-12-04 H200 lease ran; the SM was
#   # busy 85 % of the time with 14 runs; docs/perf-measurements.md, "One modern GPU")
#   benchmarks/gpu_suite.sh --time-limit 440 --jobs 6 --only seed004-cifar10 & \
#   benchmarks/gpu_suite.sh --time-limit 440 --jobs 8 --only seed002-cifar10 --runs-dir ~/gpu-runs-b; wait
#   benchmarks/gpu_suite.sh --smoke                  # the CPU check (tests/test_gpu_suite.py): 2 steps a run
#
# Options: --smoke, --only PART..., --device D (default cuda; smoke: cpu), --runs-dir DIR (default
# ~/classbench-gpu-runs: run folders stay outside the repo until they finish), --results DIR (default
# <repo>/results), --jobs N (runs at once; default 1; small models leave a big GPU idle, so several runs
# at once finish sooner), --time-limit S (stop after S seconds: the running runs get SIGTERM and save
# last.pt, the parts not started are skipped; the finished runs are recorded), --seeds-fast N,
# --seeds-pooling N, --seeds-insight N, --seeds-resnet18 N.
# $PYTHON is the interpreter (default: the repo's .venv, else python3).  A rerun skips finished runs and
# resumes interrupted ones (classbench sweep), so an interrupted suite is continued by running it again; a
# part also skips the runs already recorded in <results>/gpu-<part> (copied into its runs folder first), so
# a fresh GPU machine with this checkout goes on where the committed records stop.
# --smoke trains every run of the plan for 2 steps at batch 8 on the CPU, and writes runs and records under
# a temporary folder ($OUT if set), never into the repo's results/.  Everything is logged to <runs>/gpu_suite.log.
# Exit status: 0 when every part finished or was skipped for want of data; 1 when a part failed; 2 on bad
# arguments or no GPU; 3 when --time-limit stopped the suite before its end (run it again to go on).
set -u -o pipefail

SMOKE=0 DEVICE="" RUNS="" RESULTS="" JOBS="" TIME_LIMIT="" ONLY=()
SEEDS_RESNET18=1 SEEDS_FAST=5 SEEDS_INSIGHT=3 SEEDS_POOLING=3
PARTS=(fast seed004-cifar10 seed002-cifar10 seed002-cifar100 seed003-resnet18)
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "gpu_suite.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --device) need "$@"; DEVICE="$2"; shift 2 ;;
    --runs-dir) need "$@"; RUNS="$2"; shift 2 ;;
    --results) need "$@"; RESULTS="$2"; shift 2 ;;
    --jobs) need "$@"; JOBS="$2"; shift 2 ;;
    --seeds-resnet18) need "$@"; SEEDS_RESNET18="$2"; shift 2 ;;
    --seeds-fast) need "$@"; SEEDS_FAST="$2"; shift 2 ;;
    --seeds-insight) need "$@"; SEEDS_INSIGHT="$2"; shift 2 ;;
    --seeds-pooling) need "$@"; SEEDS_POOLING="$2"; shift 2 ;;
    --time-limit) need "$@"; TIME_LIMIT="$2"; shift 2 ;;
    --only) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do ONLY+=("$1"); shift; done ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$SEEDS_RESNET18" "$SEEDS_FAST" "$SEEDS_INSIGHT" "$SEEDS_POOLING" ${JOBS:+"$JOBS"} ${TIME_LIMIT:+"$TIME_LIMIT"}; do
  case "$n" in ''|*[!0-9]*|0) echo "gpu_suite.sh: seeds, --jobs and --time-limit must be positive integers, got '$n'" >&2; exit 2 ;; esac
done
for p in ${ONLY[@]+"${ONLY[@]}"}; do
  case " ${PARTS[*]} " in *" $p "*) ;; *) echo "gpu_suite.sh: unknown part '$p' (parts: ${PARTS[*]})" >&2; exit 2 ;; esac
done
[ ${#ONLY[@]} -gt 0 ] || ONLY=("${PARTS[@]}")
# folders given relative to where the script was called from, before it moves to the repository
[ -n "$RUNS" ] && RUNS="$(realpath -m "$RUNS")"
[ -n "$RESULTS" ] && RESULTS="$(realpath -m "$RESULTS")"
[ -n "${OUT:-}" ] && OUT="$(realpath -m "$OUT")"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
CB=("$PY" -m classbench)
cd "$REPO" || exit 2

if [ "$SMOKE" = 1 ] && { [ "$RESULTS" = "$REPO/results" ] || [ "${RESULTS#"$REPO/results/"}" != "$RESULTS" ]; }; then
  echo "gpu_suite.sh: --smoke must not write into the repo's results/ (got --results $RESULTS)" >&2; exit 2
fi

# What every run of the suite gets: the device, and no download attempt (GPU nodes are often offline).
COMMON=()
if [ "$SMOKE" = 1 ]; then
  DEVICE="${DEVICE:-cpu}"
  WORK="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite_smoke.XXXXXX")}"
  RUNS="${RUNS:-$WORK/runs}" RESULTS="${RESULTS:-$WORK/results}" JOBS="${JOBS:-2}"
  SEEDS_RESNET18=1 SEEDS_FAST=2 SEEDS_INSIGHT=2 SEEDS_POOLING=2  # the extra-seed paths run, at the smallest count
  # 2 steps at batch 8 of every run of the plan; a constant lr (the recipes' warm-ups and milestones lie
  # beyond 2 steps); a few images to evaluate; a 20-image val split where a recipe holds one out
  COMMON=(train.epochs=0 train.steps=2 train.batch_size=8 eval.every=2 eval.batch_size=64 "sched.name=constant"
          sched.warmup_steps=0 "sched.milestones=[]" data.val_size=20 data.test_size=32 data.train_subset_size=16)
else
  DEVICE="${DEVICE:-cuda}" RUNS="${RUNS:-$HOME/classbench-gpu-runs}" RESULTS="${RESULTS:-$REPO/results}" JOBS="${JOBS:-1}"
fi
COMMON+=("train.device=$DEVICE" data.download=false)
mkdir -p "$RUNS" "$RESULTS" || { echo "gpu_suite.sh: cannot create $RUNS or $RESULTS" >&2; exit 2; }
if [ "$SMOKE" = 0 ] && [ "${DEVICE%%:*}" = cuda ] && ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_suite.sh: no GPU is visible to torch (device $DEVICE); use --smoke for the CPU check" >&2; exit 2
fi
exec > >(tee -a "$RUNS/gpu_suite.log") 2>&1

FAILED=0 STOPPED=0
START=$(date +%s)
say() { echo; echo "=== $* ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"; }
fail() { echo "FAILED: $*"; FAILED=1; }
wants() { case " ${ONLY[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# data NAME (cifar10|cifar100): exit status 0 when NAME loads without downloading; 1 (and why) when no copy
# is there: the part is skipped; 2 (and why) when a copy is there but does not load: the part fails
data() {
  "$PY" - "$1" <<'EOF'
import sys
from classbench.data import resolve_root
from classbench.data.cifar import load_cifar
from classbench.errors import ClassbenchError
name = sys.argv[1]
root, _ = resolve_root(None)  # data.root unset: $CLASSBENCH_DATA, else ./data, as every run here resolves it
folder, archive = {"cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
                   "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz")}[name]
if not (root / folder).is_dir() and not (root / archive).is_file():
    print(f"no {folder}/ or {archive} in {root} (set CLASSBENCH_DATA to the folder that holds them)")
    sys.exit(1)
try:
    load_cifar(name, root, download=False)
except ClassbenchError as e:
    print(e)
    sys.exit(2)
EOF
}

# have NAME PART: 0 when NAME's data loads; else says why the part is skipped (no copy) or fails (a bad copy)
have() {
  local why status
  why="$(data "$1")"; status=$?
  case $status in
    0) return 0 ;;
    1) echo "skipped $2: no $1 copy here: $why" ;;
    *) fail "$2: $1 is there but does not load: $why" ;;
  esac
  return 1
}

# record NAME RUNS_DIR: copy the records of every finished run under RUNS_DIR to $RESULTS/NAME
record() {
  local name="$1" dir="$2" runs
  mapfile -t runs < <("$PY" -c "import sys
from classbench import runfolder
print('\n'.join(str(d) for d in runfolder.discover(sys.argv[1]) if runfolder.is_finished(d)))" "$dir")
  if [ ${#runs[@]} -eq 0 ] || [ -z "${runs[0]}" ]; then
    if [ "$STOPPED" = 1 ]; then echo "$name: no run under $dir finished before --time-limit"
    else fail "$name: no finished run under $dir to record"; fi
    return
  fi
  if ! "${CB[@]}" record --help >/dev/null 2>&1; then
    fail "$name: this checkout has no \`classbench record\`; the ${#runs[@]} finished runs stay in $dir"; return
  fi
  echo "\$ classbench record <${#runs[@]} finished runs of $dir> --to $RESULTS/$name"
  "${CB[@]}" record "${runs[@]}" --to "$RESULTS/$name" || fail "$name: classbench record"
}

# reuse_records NAME: the records already in $RESULTS/gpu-NAME, copied into $RUNS/NAME (never over a run
# there), so that the sweep skips what an earlier machine finished: on a fresh GPU machine the committed
# records are all that is left of an earlier lease, and `record` keeps an identical record as it is
reuse_records() {
  local from="$RESULTS/gpu-$1" n
  [ -d "$from" ] || return 0
  n=$(find "$from" -name summary.json | wc -l)
  [ "$n" -gt 0 ] || return 0
  mkdir -p "$RUNS/$1" && cp -Rn "$from/." "$RUNS/$1/" &&
    echo "reusing the $n finished run(s) recorded in $from: the sweep skips them"
}

# sweep NAME SEEDS CONFIG...: one `classbench sweep` into $RUNS/NAME, within what --time-limit leaves:
# timeout sends the sweep SIGTERM, which passes it to its runs (each saves last.pt; the rerun resumes it)
sweep() {
  local name="$1" seeds="$2" limit=() status; shift 2
  reuse_records "$name"
  if [ -n "$TIME_LIMIT" ]; then
    local left=$(( START + TIME_LIMIT - $(date +%s) ))
    if [ "$left" -le 0 ]; then echo "not started: $name's sweep of $# config(s) (--time-limit reached)"; STOPPED=1; return; fi
    limit=(timeout --signal=TERM --kill-after=120 "$left")
  fi
  echo "\$ classbench sweep $* --runs-dir $RUNS/$name --seeds $seeds --jobs $JOBS --set ${COMMON[*]}"
  ${limit[@]+"${limit[@]}"} "${CB[@]}" sweep "$@" --runs-dir "$RUNS/$name" --seeds "$seeds" --jobs "$JOBS" --set "${COMMON[@]}"
  status=$?
  if [ ${#limit[@]} -gt 0 ] && { [ "$status" = 124 ] || [ "$status" = 137 ]; }; then
    echo "stopped at --time-limit ($TIME_LIMIT s): $name's sweep; the rerun resumes its unfinished runs"; STOPPED=1
  elif [ "$status" != 0 ]; then
    fail "$name: classbench sweep (exit status $status)"
  fi
}

# seed002_suite DATASET: seed 002's suite on configs/DATASET, 1 seed each, then the insight questions' seeds
seed002_suite() {
  local part="seed002-$1" c="configs/$1" suite
  say "$part: seed 002's suite on $1 at its budget"
  have "$1" "$part" || return 0
  mapfile -t suite < <(grep -l "enhuiz/image-classification" "$c"/*.yaml)
  echo "${#suite[@]} configs: ${suite[*]##*/}"
  sweep "$part" 1 "${suite[@]}"
  say "$part: $SEEDS_INSIGHT seeds for MixStyle and relative attention"
  sweep "$part" "$SEEDS_INSIGHT" "$c"/resnet18-imagenet-stem.yaml "$c"/resnet18-ms1.yaml "$c"/resnet18-ms2.yaml \
    "$c"/vitn-12x256-8x8.yaml "$c"/vitn-12x256-8x8-ra.yaml
  record "gpu-$part" "$RUNS/$part"
}

say "gpu_suite: parts ${ONLY[*]}; device $DEVICE; runs $RUNS; records $RESULTS$([ "$SMOKE" = 1 ] && echo '; SMOKE: 2 steps a run')"
"$PY" -c "import torch, platform, classbench; print('python', platform.python_version(), ' torch', torch.__version__, ' classbench', classbench.__version__, ' cuda', torch.version.cuda, ' GPUs', torch.cuda.device_count(), *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

if wants fast; then
  say "fast: configs/cifar10/fast.yaml, $SEEDS_FAST seeds"
  if have cifar10 fast; then
    sweep fast "$SEEDS_FAST" configs/cifar10/fast.yaml
    record gpu-fast "$RUNS/fast"
  fi
fi

if wants seed004-cifar10; then
  say "seed004-cifar10: c-ViT against mc-ViT, 100 epochs, $SEEDS_POOLING seeds each (reference: mc-ViT 77.25 % test)"
  if have cifar10 seed004-cifar10; then
    sweep seed004-cifar10 "$SEEDS_POOLING" configs/cifar10/cvit-tiny.yaml configs/cifar10/mcvit-tiny.yaml
    record gpu-seed004-cifar10 "$RUNS/seed004-cifar10"
  fi
fi

wants seed002-cifar10 && seed002_suite cifar10
wants seed002-cifar100 && seed002_suite cifar100

if wants seed003-resnet18; then
  say "seed003-resnet18: configs/cifar10/resnet18.yaml, $SEEDS_RESNET18 seed(s) (reference: 90.34 % test)"
  if have cifar10 seed003-resnet18; then
    sweep seed003-resnet18 "$SEEDS_RESNET18" configs/cifar10/resnet18.yaml
    record gpu-seed003-resnet18 "$RUNS/seed003-resnet18"
  fi
fi

say "done"
if [ "$FAILED" = 1 ]; then
  echo "gpu_suite: some parts FAILED (above; full log $RUNS/gpu_suite.log)"; exit 1
elif [ "$STOPPED" = 1 ]; then
  echo "gpu_suite: stopped at --time-limit ($TIME_LIMIT s); the finished runs are recorded in $RESULTS; run the same command again to go on"
  exit 3
fi
echo "gpu_suite: every part finished or was skipped; records in $RESULTS"
