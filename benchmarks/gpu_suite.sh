#!/usr/bin/env bash
# The results of issue #21 (item 5) that want a GPU, on one GPU, with `classbench sweep`; the finished
# runs' records then go to results/<name> with `classbench record RUN_DIR... --to results/<name>`.
#
#   seed003-resnet18   seed 003's ResNet-18 recipe, configs/cifar10/resnet18.yaml (Fanziyang-v reports
#                      90.34 % on CIFAR-10); 1 seed (--seeds-resnet18 N)           -> results/gpu-seed003-resnet18
#   seed002-cifar100   seed 002's whole suite on CIFAR-100 at its budget (every configs/cifar100 config
#                      from enhuiz/image-classification: 5,000 steps at batch 128), 1 seed each, then
#                      3 seeds (--seeds-insight N) for the two questions seed 002 draws insights from:
#                      MixStyle (resnet18-ms1/-ms2 against plain) and relative attention (vitn-ra against
#                      vitn); skipped, with a message, where no CIFAR-100 copy is found -> results/gpu-seed002-cifar100
#   fast               the fast recipe, configs/cifar10/fast.yaml, 5 seeds (--seeds-fast N) -> results/gpu-fast
#
#   benchmarks/gpu_suite.sh                          # on the GPU machine, CLASSBENCH_DATA=/folder/with/cifar
#   benchmarks/gpu_suite.sh --only fast seed003-resnet18
#   benchmarks/gpu_suite.sh --smoke                  # the CPU check (tests/test_gpu_suite.py): 2 steps a run
#
# Options: --smoke, --only PART..., --device D (default cuda; smoke: cpu), --runs-dir DIR (default
# ~/classbench-gpu-runs: run folders stay outside the repo until they finish), --results DIR (default
# <repo>/results), --jobs N (runs at once; default 1), --seeds-resnet18 N, --seeds-fast N, --seeds-insight N.
# $PYTHON is the interpreter (default: the repo's .venv, else python3).  A rerun skips finished runs and
# resumes interrupted ones (classbench sweep), so an interrupted suite is continued by running it again.
# --smoke trains every run of the plan for 2 steps at batch 8 on the CPU, and writes runs and records under
# a temporary folder ($OUT if set), never into the repo's results/.  Everything is logged to <runs>/gpu_suite.log.
# Exit status: 0 when every part finished or was skipped for want of data; 1 when a part failed; 2 on bad
# arguments or no GPU.
set -u -o pipefail

SMOKE=0 DEVICE="" RUNS="" RESULTS="" JOBS="" ONLY=()
SEEDS_RESNET18=1 SEEDS_FAST=5 SEEDS_INSIGHT=3
PARTS=(seed003-resnet18 seed002-cifar100 fast)
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
    --only) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do ONLY+=("$1"); shift; done ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$SEEDS_RESNET18" "$SEEDS_FAST" "$SEEDS_INSIGHT" ${JOBS:+"$JOBS"}; do
  case "$n" in ''|*[!0-9]*|0) echo "gpu_suite.sh: seeds and --jobs must be positive integers, got '$n'" >&2; exit 2 ;; esac
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
  SEEDS_RESNET18=1 SEEDS_FAST=2 SEEDS_INSIGHT=2  # the extra-seed paths run, at the smallest count
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

FAILED=0
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
  if [ ${#runs[@]} -eq 0 ] || [ -z "${runs[0]}" ]; then fail "$name: no finished run under $dir to record"; return; fi
  if ! "${CB[@]}" record --help >/dev/null 2>&1; then
    fail "$name: this checkout has no \`classbench record\`; the ${#runs[@]} finished runs stay in $dir"; return
  fi
  echo "\$ classbench record <${#runs[@]} finished runs of $dir> --to $RESULTS/$name"
  "${CB[@]}" record "${runs[@]}" --to "$RESULTS/$name" || fail "$name: classbench record"
}

# sweep NAME SEEDS CONFIG...: one `classbench sweep` into $RUNS/NAME
sweep() {
  local name="$1" seeds="$2"; shift 2
  echo "\$ classbench sweep $* --runs-dir $RUNS/$name --seeds $seeds --jobs $JOBS --set ${COMMON[*]}"
  "${CB[@]}" sweep "$@" --runs-dir "$RUNS/$name" --seeds "$seeds" --jobs "$JOBS" --set "${COMMON[@]}" \
    || fail "$name: classbench sweep (exit status $?)"
}

say "gpu_suite: parts ${ONLY[*]}; device $DEVICE; runs $RUNS; records $RESULTS$([ "$SMOKE" = 1 ] && echo '; SMOKE: 2 steps a run')"
"$PY" -c "import torch, platform, classbench; print('python', platform.python_version(), ' torch', torch.__version__, ' classbench', classbench.__version__, ' cuda', torch.version.cuda, ' GPUs', torch.cuda.device_count(), *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

if wants seed003-resnet18; then
  say "seed003-resnet18: configs/cifar10/resnet18.yaml, $SEEDS_RESNET18 seed(s) (reference: 90.34 % test)"
  if have cifar10 seed003-resnet18; then
    sweep seed003-resnet18 "$SEEDS_RESNET18" configs/cifar10/resnet18.yaml
    record gpu-seed003-resnet18 "$RUNS/seed003-resnet18"
  fi
fi

if wants seed002-cifar100; then
  say "seed002-cifar100: seed 002's suite on CIFAR-100 at its budget"
  if have cifar100 seed002-cifar100; then
    mapfile -t suite < <(grep -l "enhuiz/image-classification" configs/cifar100/*.yaml)
    echo "${#suite[@]} configs: ${suite[*]##*/}"
    sweep seed002-cifar100 1 "${suite[@]}"
    say "seed002-cifar100: $SEEDS_INSIGHT seeds for MixStyle and relative attention"
    sweep seed002-cifar100 "$SEEDS_INSIGHT" configs/cifar100/resnet18-imagenet-stem.yaml configs/cifar100/resnet18-ms1.yaml \
      configs/cifar100/resnet18-ms2.yaml configs/cifar100/vitn-12x256-8x8.yaml configs/cifar100/vitn-12x256-8x8-ra.yaml
    record gpu-seed002-cifar100 "$RUNS/seed002-cifar100"
  fi
fi

if wants fast; then
  say "fast: configs/cifar10/fast.yaml, $SEEDS_FAST seeds"
  if have cifar10 fast; then
    sweep fast "$SEEDS_FAST" configs/cifar10/fast.yaml
    record gpu-fast "$RUNS/fast"
  fi
fi

say "done"
if [ "$FAILED" = 0 ]; then echo "gpu_suite: every part finished or was skipped; records in $RESULTS"
else echo "gpu_suite: some parts FAILED (above; full log $RUNS/gpu_suite.log)"; fi
exit "$FAILED"
