# The feed and scaling figures on the GPU machine (2 x H200), from the project root: `oneloc bench train --device
# cuda` (plain loop vs Ray Train with 1 and 2 GPUs, same samples, batch, model and steps; + the raw step) and the
# raw step's MFU of the larger sizes; the xl size (253M) trained 2 epochs on 2 GPUs (quality vs default).
# -> $OUT/bench_train.json, $OUT/mfu.json, the xl run in $OUT/runs.json
#   OUT=/tmp/out bash docs/results/gpu/run_bench.sh
. docs/results/gpu/setup.sh
stage bench_train 330 oneloc --set train.log_every=0 bench train --device cuda --rounds 200 --out "$OUT/bench_train.json"
stage mfu 150 python3 -m oneloc.benchmarks.bench_train --device cuda --raw-only --raw-sizes large,xl \
  --batches 1024,4096 --rounds 15 --out "$OUT/mfu.json"
stage train_xl_2gpu 300 oneloc --set train.run_name=oneloc-train-xl --set model.size=large --set model.d_model=1024 \
  --set model.n_heads=16 --set model.enc_layers=8 --set model.dec_layers=8 --set model.d_ff=4096 --set train.lr=5e-4 \
  --set train.log_every=100 train --gpu --workers 2 --epochs 2 --source dataset
