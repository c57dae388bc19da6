#!/usr/bin/env bash
# The first GPU machine's checklist in one command (issue 30): every CUDA test, the GPU population benchmark
# (LeNet-300-100 and Conv-2, K = 1..256, members/s and % of the GPU's sustained matmul peak), one NCCL torchrun
# job against the same job in one process, the Ray executor with num_gpus, and 2:4 semi-structured sparse
# matmuls against dense (fp16). Each step has its own timeout and the whole run a budget (default 470 s, under
# 8 minutes with the summary); a failing step is recorded and the next one runs.
#
# It runs on a bare machine with an NVIDIA driver and python3: it uses $PYTHON if set, else ./.venv if it holds
# torch and pytest, else python3 if that does, else it creates .venv and installs torch==2.13.0 and the package
# with its test extras (needs the network). If the installed torch cannot see CUDA (a CPU wheel, no driver) it
# says so in the summary and stops. The package is always imported from this checkout (PYTHONPATH).
#
# Writes into the results folder (--out, default gpu_check_results/): gpu_check_summary.md and
# gpu_check_summary.json (benchmarks/gpu_check_summary.py), and each step's log and JSON. Exit status: 0 when every
# step passed, 1 when one failed, timed out or was skipped, 2 for bad arguments, 3 when no torch with CUDA could be
# set up.
#
# Usage:  bash benchmarks/gpu_check.sh [--out DIR] [--budget-s SECONDS] [--dry-run]
#         --dry-run prints the steps and commands it would run (nothing is installed or run).

set -u -o pipefail

usage() { sed -n 's/^# Usage:  //p' "${BASH_SOURCE[0]}"; }
fail() { echo "gpu_check.sh: error: $1" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=gpu_check_results
BUDGET=470
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] && [ -n "$2" ] || fail "--out needs a folder"; RESULTS=$2; shift 2 ;;
    --budget-s) [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 60 ] \
                  || fail "--budget-s '${2:-}' must be a whole number of seconds >= 60"; BUDGET=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) fail "unknown argument '$1' (allowed: --out DIR, --budget-s SECONDS, --dry-run)" ;;
  esac
done
[[ "$RESULTS" = /* ]] || RESULTS="$PWD/$RESULTS"
cd "$ROOT" || exit 2
START=$(date +%s)
PY=PYTHON  # the interpreter chosen by `setup` (its name only, in a dry run)
NGPU=NGPU  # the CUDA devices torch sees (set by `probe`)

# step NAME MAX_SECONDS COMMAND...: run COMMAND with the smaller of MAX_SECONDS and what is left of the budget,
# its output in RESULTS/NAME.log, one line in RESULTS/steps.tsv (name, status, exit code, seconds, note).
step() {
  local name=$1 max=$2
  shift 2
  if [ "$DRY" = 1 ]; then
    printf 'STEP %s (timeout %ss):' "$name" "$max"
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  local left=$((BUDGET - ($(date +%s) - START)))
  local limit=$((max < left ? max : left))
  if [ "$limit" -lt 10 ]; then
    printf '%s\tskipped\t\t0\tout of time (budget %ss)\n' "$name" "$BUDGET" >>"$RESULTS/steps.tsv"
    echo "== $name: skipped, out of time"
    return 1
  fi
  echo "== $name (timeout ${limit}s)"
  local begun=$(date +%s) code status
  timeout --kill-after=15 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
  code=$?
  case $code in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$code" "$(($(date +%s) - begun))" \
    "$(tail -n 1 "$RESULTS/$name.log" | tr '\t|' '  ' | cut -c1-160)" >>"$RESULTS/steps.tsv"
  echo "   $status ($code) in $(($(date +%s) - begun)) s"
  return $code
}

has_packages() { "$1" -c "import torch, pytest, safetensors, mnist1d" >/dev/null 2>&1; }

install_venv() {
  { [ -x .venv/bin/python ] || python3 -m venv .venv; } && .venv/bin/pip install torch==2.13.0 -e '.[test]'
}

setup() {
  if [ "$DRY" = 1 ]; then
    echo "SETUP: \$PYTHON if set; else .venv/bin/python if it imports torch and pytest; else python3 if it does;" \
         "else: python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e '.[test]' (timeout 300s)"
    return 0
  fi
  if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
  elif [ -x .venv/bin/python ] && has_packages .venv/bin/python; then PY=.venv/bin/python
  elif command -v python3 >/dev/null && has_packages python3; then PY=python3
  else
    step setup 300 bash -c "$(declare -f install_venv); install_venv" || return 1
    PY=.venv/bin/python
  fi
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  echo "python: $PY"
}

probe() {
  step probe 60 "$PY" -c "
import json, sys, torch
available = torch.cuda.is_available()
count = torch.cuda.device_count() if available else 0
json.dump({'torch': torch.__version__, 'cuda_version': torch.version.cuda, 'cuda_available': available,
           'device_count': count, 'device_names': [torch.cuda.get_device_name(i) for i in range(count)]},
          open(sys.argv[1], 'w'))
print('CUDA available to torch', torch.__version__, ':', available, '(a CPU wheel or no driver)' * (not available))
raise SystemExit(0 if available else 3)" "$RESULTS/cuda.json" || return 1
  [ "$DRY" = 1 ] || NGPU=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['device_count'])" \
                            "$RESULTS/cuda.json")
}

summary() {
  [ "$DRY" = 1 ] && { echo "SUMMARY: python benchmarks/gpu_check_summary.py $RESULTS"; return 0; }
  local python=python3
  [ "$PY" != PYTHON ] && python=$PY
  "$python" benchmarks/gpu_check_summary.py "$RESULTS" >/dev/null || echo "gpu_check.sh: the summary failed" >&2
  echo "summary: $RESULTS/gpu_check_summary.md ($(($(date +%s) - START)) s in all)"
}

[ "$DRY" = 1 ] || { mkdir -p "$RESULTS" && : >"$RESULTS/steps.tsv"; } || fail "cannot write to '$RESULTS'"
if ! setup || ! probe; then
  summary
  exit 3
fi
# the test files that can run on CUDA: the `device` fixture's and the ones that name cuda
mapfile -t CUDA_TEST_FILES < <(grep -rlE "cuda|[(, ]device[,)]" tests --include='test_*.py' | sort)
[ "$DRY" = 1 ] && [ ${#CUDA_TEST_FILES[@]} -eq 0 ] && CUDA_TEST_FILES=(tests)
step tests 150 "$PY" -m pytest -q -rfEs -p no:cacheprovider -m "slow or not slow" -k cuda \
  --junitxml="$RESULTS/tests.xml" "${CUDA_TEST_FILES[@]}"
step population 170 "$PY" benchmarks/gpu_population_speed.py --device cuda --peak-seconds 2 --budget-s 70 \
  --json "$RESULTS/population.json"
step semi_structured 45 "$PY" benchmarks/semi_structured_speed.py --json "$RESULTS/semi_structured.json"
step torchrun_nccl 75 "$PY" -m torch.distributed.run --standalone --nproc-per-node "$NGPU" \
  benchmarks/ddp_speed.py --worker lenet300_100 --device cuda --out "$RESULTS/ddp_torchrun.json"
step one_process 60 "$PY" benchmarks/ddp_speed.py --worker lenet300_100 --device cuda --out "$RESULTS/ddp_one.json"
step ray 100 "$PY" benchmarks/ray_executor.py --preset mnist1d --trials 2 --levels 2 --steps 300it --cpus 4 \
  --gpus "$NGPU" --device cuda --pairings populations
summary
# exit 0 only when every step ran and passed
[ "$DRY" = 1 ] || ! cut -f2 "$RESULTS/steps.tsv" | grep -qv '^ok$'
