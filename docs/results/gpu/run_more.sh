# Second GPU run (2 x H200), from the project root: NCCL between the GPUs, the feed/scaling comparison at larger
# per-worker batches (device feed: plain loop vs Ray Train 1 and 2 GPUs, all 117k NYC training samples), and the
# raw step's MFU of the large (48M) and xl (253M) sizes. -> $OUT/bench_b1024.json, $OUT/bench_b512.json, $OUT/mfu.json
#   OUT=/tmp/out bash docs/results/gpu/run_more.sh
. docs/results/gpu/setup.sh
stage nccl 90 bash -c "nvidia-smi topo -m; torchrun --nproc_per_node 2 docs/results/gpu/nccl_probe.py"
stage bench_b1024 240 python3 -m oneloc.benchmarks.bench_train --device cuda --sizes default --batch 1024 --feeds device \
  --events 117274 --rounds 50 --batches 256 --out "$OUT/bench_b1024.json"
stage mfu 120 python3 -m oneloc.benchmarks.bench_train --device cuda --raw-only --raw-sizes large,xl \
  --batches 256,1024 --rounds 15 --out "$OUT/mfu.json"
stage bench_b512 200 python3 -m oneloc.benchmarks.bench_train --device cuda --sizes default --batch 512 --feeds device \
  --events 117274 --rounds 100 --batches 256 --out "$OUT/bench_b512.json"
