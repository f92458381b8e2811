# Sourced by the GPU runs (run_e2e.sh, run_bench.sh, run_serve.sh, run_mfu.sh) from the project root on the GPU machine: unpack the Ray bundle
# (../shared/device-ray/build_bundle.sh -> .whl/site.tar.xz), install the project over it, print the versions.
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OUT=${OUT:-/tmp/out} PYTHONPATH=/tmp/site ONELOC_HOME=/tmp/oneloc-home
mkdir -p "$OUT"
# the archives carried (build_serve_bundle.sh): site.tar.xz (Ray Train/Data, Delta), serve.tar.xz (Ray Serve's
# extra packages); a run without them (the raw-step MFU) brings the few packages it imports under .whl/mini
for a in site serve; do
  [ -f ".whl/$a.tar.xz" ] && python3 -c "import tarfile as t; t.open('.whl/$a.tar.xz').extractall('/tmp', filter='tar')"
done
python3 -m pip install -q --no-deps --no-build-isolation --no-index --ignore-requires-python -e . >/dev/null 2>&1 \
  || { echo "project install failed" | tee -a "$OUT/log.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/log.txt"
python3 docs/results/gpu/versions.py 2>&1 | tee -a "$OUT/log.txt"
# stage NAME LIMIT_S CMD...: run a step (within LIMIT_S and the run's deadline: BUDGET_S from here, under the
# device tool's 600 s), its output in $OUT/log.txt, its rc and seconds in $OUT/stages.jsonl, and the run summaries
# written so far (<storage.checkpoints>/<run>.json) with the stages in $OUT/runs.json
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-560} ))
stage() {
  local name=$1 limit=$2; shift 2; local t0; t0=$(date +%s)
  local left=$(( DEADLINE - t0 )); [ "$left" -lt "$limit" ] && limit=$left
  [ "$limit" -le 5 ] && { echo "=== $name: skipped (no time left)" | tee -a "$OUT/log.txt"; return; }
  echo "=== $name: $*" | tee -a "$OUT/log.txt"
  timeout "$limit" "$@" 2>&1 | grep -v -E "FutureWarning|warnings.warn" | tee -a "$OUT/log.txt"
  local rc=${PIPESTATUS[0]}
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"s\": $(( $(date +%s) - t0 )), \"cmd\": \"$*\"}" >> "$OUT/stages.jsonl"
  python3 -c "import json, glob, os; json.dump({'stages': [json.loads(l) for l in open('$OUT/stages.jsonl')], \
'runs': {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob('/tmp/oneloc-home/checkpoints/*.json'))}}, \
open('$OUT/runs.json', 'w'), indent=1, default=float)"
}
