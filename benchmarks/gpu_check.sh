#!/usr/bin/env bash
# The first thing to run on a GPU machine (issue #14): device and versions, train + resume (one GPU,
# and 2-process DDP where 2 GPUs exist) with resumed metrics checked against an uninterrupted run
# (exactly: train.deterministic=true), bench of airbench_net / resnet18 / mcvit_tiny with and without
# torch.compile, and the fast recipe's time to accuracy.  Under 10 minutes on one GPU.
#
#   OUT=/some/folder benchmarks/gpu_check.sh                 # on the GPU machine
#   OUT=/tmp/out benchmarks/gpu_check.sh --device cpu --tiny # the CPU test (tests/test_gpu_readiness.py)
#
# Needs only this repository, a Python with torch and classbench's dependencies ($PYTHON, default
# python3), and $OUT, where everything is written: versions.txt, resume_check.json, bench.json,
# bench_*.txt, fast_recipe.txt (+ .json), runs/, log.txt.  The train/resume check uses synthetic data;
# the fast recipe needs a CIFAR-10 copy in $CLASSBENCH_DATA and is skipped with a message without one.
# Exit status: 0 when every check passed, 1 when a check failed (see log.txt), 2 on bad arguments.
set -u -o pipefail

DEVICE=auto
TINY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --device=*) DEVICE="${1#*=}"; shift ;;
    --tiny) TINY=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --device D, --tiny)" >&2; exit 2 ;;
  esac
done
if [ -z "${OUT:-}" ]; then echo "gpu_check.sh: set OUT to the folder for the results" >&2; exit 2; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT/runs"
exec > >(tee -a "$OUT/log.txt") 2>&1
FAILED=0
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
fail() { echo "FAILED: $*"; FAILED=1; }

step "device and versions"
"$PY" - "$DEVICE" > "$OUT/versions.txt" <<'EOF' || fail "cannot import torch/classbench with $PY"
import os, platform, sys
import torch
import classbench
from classbench.train.precision import resolve_device, resolve_precision
dev = resolve_device(sys.argv[1])
print(f"python {platform.python_version()}  torch {torch.__version__}  classbench {classbench.__version__}")
print(f"cuda {torch.version.cuda}  cudnn {torch.backends.cudnn.version()}  GPUs visible {torch.cuda.device_count()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}  capability {p.major}.{p.minor}  {p.total_memory / 2**30:.0f} GiB")
print(f"device {dev}  precision=auto -> {resolve_precision('auto', dev)}  loadavg {os.getloadavg()}")
print(f"cpu {platform.processor() or platform.machine()}  cores {os.cpu_count()}")
EOF
cat "$OUT/versions.txt"
command -v nvidia-smi >/dev/null && nvidia-smi | tee "$OUT/nvidia-smi.txt"
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count() if '$DEVICE' != 'cpu' else 0)" 2>/dev/null || echo 0)

step "train + resume == uninterrupted (train.deterministic=true)"
"$PY" - "$DEVICE" "$TINY" "$NGPU" "$OUT" "$REPO" <<'EOF' || fail "resume check (see resume_check.json)"
import json, os, subprocess, sys, tempfile
device, tiny, ngpu, out, repo = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4], sys.argv[5]
from classbench import runfolder
N = 3 if tiny else 20  # steps before the interruption; the run trains 2N
base = ["data.name=synthetic", "data.train_size=0", "sched.name=constant", "train.deterministic=true", f"train.device={device}",
        f"train.runs_dir={out}/runs", "log.progress=never", f"eval.every={N}", "eval.splits=[val,test]",
        "log.every=1", "train.seed=1"]
base += (["data.synthetic_size=256", "data.image_size=16", "data.num_classes=4", "data.val_size=64",
          "model.name=toy_dilated", "model.args={width: 8}", "train.batch_size=32", "train.threads=1"]
         if tiny else ["data.synthetic_size=8192", "data.val_size=1024", "model.name=resnet20", "train.batch_size=256"])

def train(args, nproc):
    fd, channel = tempfile.mkstemp()
    os.close(fd)
    cmd = [sys.executable, "-m", "classbench", "train", *args] + ([f"--nproc={nproc}"] if nproc > 1 else [])
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, runfolder.RUN_DIR_FILE_ENV: channel}, stdout=subprocess.DEVNULL)
    return runfolder.read_announced_run_dir(channel)

def check(nproc):
    config = f"{repo}/configs/cifar10/resnet20.yaml"
    whole = train([config, *base, f"train.steps={2 * N}", f"name=whole-{nproc}"], nproc)
    part = train([config, *base, f"train.steps={N}", f"name=resumed-{nproc}"], nproc)
    train(["--resume", str(part), f"train.steps={2 * N}"], nproc)
    pick = lambda d: [{k: r[k] for k in ("step", "split", "loss", "top1") if k in r}
                      for r in runfolder.read_metrics(d) if r["step"] > N]
    a, b = pick(whole), pick(part)
    sa, sb = runfolder.read_summary(whole), runfolder.read_summary(part)
    keys = ("test_loss", "test_top1", "best_val_top1", "steps", "precision", "deterministic")
    diffs = [(x, y) for x, y in zip(a, b) if x != y] + [(k, sa[k], sb[k]) for k in keys if sa[k] != sb[k]]
    return {"equal": not diffs and len(a) == len(b) > 0, "diffs": diffs[:10], "lines": len(a),
            "runs": [str(whole), str(part)], "summary": {k: sa[k] for k in keys}}

result = {"single": check(1)}
result["ddp"] = check(2) if ngpu >= 2 else "skipped: fewer than 2 GPUs"
json.dump(result, open(f"{out}/resume_check.json", "w"), indent=2)
print(json.dumps(result, indent=2))
sys.exit(0 if result["single"]["equal"] and (ngpu < 2 or result["ddp"]["equal"]) else 1)
EOF

step "bench: airbench_net resnet18 mcvit_tiny, eager and compiled"
MODELS="airbench_net resnet18 mcvit_tiny"
# --tiny (the CPU test): inductor needs minutes per model on a small CPU, so only the toy model is compiled
if [ "$TINY" = 1 ]; then SIZE=(--batch-size 4 --steps 1 --warmup 0 --matmul-size 128); COMPILED="toy_dilated"
else SIZE=(--batch-size 256 --steps 20 --warmup 5); COMPILED="$MODELS"; fi
for c in eager compiled; do
  if [ $c = eager ]; then flags=(); models=$MODELS; else flags=(--compile); models=$COMPILED; fi
  # shellcheck disable=SC2086
  "$PY" -m classbench bench $models --device "$DEVICE" --mode train --matmul-peak "${SIZE[@]}" "${flags[@]}" \
      --format json > "$OUT/bench_$c.json" || fail "bench $c"
done
"$PY" - "$OUT" <<'EOF' || fail "bench tables"
import json, sys
from classbench.drivers.bench import format_bench
out = sys.argv[1]
runs = [json.load(open(f"{out}/bench_{c}.json")) for c in ("eager", "compiled")]
rows = [r for run in runs for r in run["rows"]]
json.dump({"contexts": [run["context"] for run in runs], "rows": rows}, open(f"{out}/bench.json", "w"), indent=2)
text = "\n\n".join(format_bench(run["rows"], "table", peak=1, context=run["context"]) for run in runs)
open(f"{out}/bench.txt", "w").write(text + "\n")
print(text)
bad = [r["model"] for r in rows if r.get("error") or r.get("compile") == "fallback"]
sys.exit(f"errors or eager fallbacks: {bad}" if bad else 0)
EOF

step "fast recipe: time to accuracy"
if [ -n "${CLASSBENCH_DATA:-}" ] && [ "$TINY" = 0 ]; then
  "$PY" "$REPO/benchmarks/time_to_accuracy.py" "$REPO/configs/cifar10/fast.yaml" --target 0.90 0.94 \
      "train.device=$DEVICE" "train.runs_dir=$OUT/runs" "data.download=false" --json "$OUT/fast_recipe.json" \
      | tee "$OUT/fast_recipe.txt" || fail "fast recipe"
elif [ "$TINY" = 1 ]; then
  echo "skipped: --tiny run" | tee "$OUT/fast_recipe.txt"
else
  echo "skipped: CLASSBENCH_DATA is not set (a folder with CIFAR-10; see README)" | tee "$OUT/fast_recipe.txt"
fi

step "done"
[ "$FAILED" = 0 ] && echo "gpu_check: all checks passed; results in $OUT" || echo "gpu_check: some checks FAILED; see $OUT/log.txt"
exit "$FAILED"
