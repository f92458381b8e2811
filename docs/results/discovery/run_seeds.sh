# Issue 16 on one H200, from the project root: OneLoc without and with nearby candidates (3 seeds each) and the
# nearby model without each of two other geo components (seed 0), all trained at once with the plain loop
# (one process per run, the whole NYC training split on the GPU: train.feed=device), each run's best epoch by
# validation MRR@10 (1,000 validation samples, beam 20; test never read) copied to $OUT/<run>.pt with its history.
#   OUT=/tmp/out EPOCHS=3 bash docs/results/discovery/run_seeds.sh
# Dry run here (no bundle, tiny model, a few steps): LOCAL=1 DEVICE=cpu SMOKE=1 OUT=/tmp/o PATH=.venv/bin:$PATH bash ...
if [ -n "${LOCAL:-}" ]; then mkdir -p "$OUT"; export OUT; else . docs/results/gpu/setup.sh; fi
DEVICE=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-3}; TRAIN_S=${TRAIN_S:-300}
extra=(); [ -n "${SMOKE:-}" ] && extra=(--size tiny --max-steps 6 --set train.val_samples=40)
export OMP_NUM_THREADS=2
train() {  # name, then --set overrides
  local name=$1; shift
  timeout "$TRAIN_S" python3 -m oneloc.ray_jobs.train_loop --device "$DEVICE" --epochs "$EPOCHS" --out "/tmp/runs/$name" \
    "${extra[@]}" "$@" > "$OUT/$name.log" 2>&1
  echo "{\"run\": \"$name\", \"rc\": $?}" >> "$OUT/rc.jsonl"
}
near=(--set model.nearby=64)
pids=()
for s in 0 1 2; do
  train "base-s$s" --set train.seed=$s & pids+=($!)
  train "near-s$s" --set train.seed=$s "${near[@]}" & pids+=($!)
done
train near-no-geo-ids --set train.seed=0 "${near[@]}" --set model.geo_ids=false & pids+=($!)
train near-no-prompt --set train.seed=0 "${near[@]}" --set model.prompt=false & pids+=($!)
( while sleep 15; do  # the GPU's load, and each run's best epoch so far in $OUT (kept if the call is cut short)
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$OUT/gpu_util.txt" 2>/dev/null
    python3 docs/results/discovery/pick_best.py /tmp/runs "$OUT" > /dev/null 2>&1; done ) &
mon=$!
wait "${pids[@]}"; kill "$mon" 2>/dev/null
python3 docs/results/discovery/pick_best.py /tmp/runs "$OUT" | tee -a "$OUT/log.txt"
