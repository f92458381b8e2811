# The feed and scaling figures on the GPU machine (2 x H200), from the project root: `oneloc bench train --device
# cuda` (plain loop vs Ray Train with 1 and 2 GPUs, same samples, batch, model and steps; + the raw step) and the
# raw step's MFU of the larger sizes. -> $OUT/bench_train.json, $OUT/mfu.json
#   OUT=/tmp/out bash docs/results/gpu/run_bench.sh
. docs/results/gpu/setup.sh
stage bench_train 420 oneloc bench train --device cuda --out "$OUT/bench_train.json"
stage mfu 150 python3 -m oneloc.benchmarks.bench_train --device cuda --raw-only --raw-sizes large,xl \
  --batches 1024,4096 --rounds 20 --out "$OUT/mfu.json"
