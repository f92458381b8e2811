# The raw training step's MFU levers on one H200 (no Ray, no Delta: instead of the archives, the packages the config
# and the model import (pydantic + its 4 deps, h3, fastavro, deprecated) unpacked from site.tar.xz into /tmp/site
# first, 12 MB): the xl size (253M), batch 1024,
# bf16 autocast, eager (as the training loop runs it) against fused AdamW, torch.compile of the model and CUDA
# graphs (bench_train.py VARIANT_TOKENS); one process per variant (a compile that hangs or fails costs only
# its own stage), merged into $OUT/mfu-compile.json.
#   OUT=/tmp/out bash docs/results/gpu/run_mfu.sh
. docs/results/gpu/setup.sh
for v in ${MFU_VARIANTS:-eager fused compile+fused graphs+fused}; do
  stage "mfu_$v" 240 python3 -m oneloc.benchmarks.bench_train --device cuda --raw-only --raw-sizes xl \
    --batches "${MFU_BATCHES:-1024}" --dtypes bf16 --raw-variants "$v" --rounds 20 --out "/tmp/mfu-$v.json"
done
# the best lever at twice the batch (eager ran out of memory at 4096 in mfu-large-xl.json)
stage mfu_compile_b2048 200 python3 -m oneloc.benchmarks.bench_train --device cuda --raw-only --raw-sizes xl \
  --batches 2048 --dtypes bf16 --raw-variants compile+fused --rounds 10 --out /tmp/mfu-zz-b2048.json
python3 -c "import json, glob; runs = [r for p in sorted(glob.glob('/tmp/mfu-*.json')) for r in json.load(open(p))['raw_step']]; \
first = json.load(open(sorted(glob.glob('/tmp/mfu-*.json'))[0])); first['raw_step'] = runs; \
json.dump(first, open('$OUT/mfu-compile.json', 'w'), indent=1)"
