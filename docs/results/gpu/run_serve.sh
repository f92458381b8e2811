# Ray Serve on a GPU replica (one H200), from the project root, carrying .whl (site.tar.xz + serve.tar.xz:
# build_serve_bundle.sh): train the default model on the GPU (the plain loop, the dataset source: no Delta
# samples table needed), then bench_serve on that checkpoint: the model in process on the GPU (batches 1-1024),
# and the Serve application (HAProxy -> ingress replicas -> model replicas on the GPU) under HTTP load from
# separate processes at concurrency 32/128/512, for several batching settings one after the other.
#   OUT=/tmp/out bash docs/results/gpu/run_serve.sh          -> $OUT/serve-gpu.json, runs.json, log.txt
. docs/results/gpu/setup.sh
stage env 60 python3 docs/results/gpu/check_serve_env.py
# the plain loop (no Ray: Ray Train's launcher imports the ingest job, whose Kafka client the trimmed bundle
# leaves out; Ray Train on these GPUs: run_e2e.sh), 2 epochs, bf16, its checkpoint under storage.checkpoints
# SKIP_TRAIN=1: no training, bench_serve's untrained checkpoint of the default size on the NYC catalog instead
[ -n "${SKIP_TRAIN:-}" ] || stage train 200 python3 -m oneloc.ray_jobs.train_loop --device cuda --epochs 2 --out /tmp/oneloc-home/checkpoints/plain
CK="--set serve.checkpoint=/tmp/oneloc-home/checkpoints"; [ -n "${SKIP_TRAIN:-}" ] && CK=""
# MAX_BATCH:WAIT_S:MODEL_REPLICAS:INGRESS_REPLICAS (the model replicas share the GPU evenly)
stage serve 400 python3 -m oneloc.benchmarks.bench_serve --device cuda --http --levels 32,128,512 --rounds 8 \
  --load-procs 4 --settings "${SERVE_SETTINGS:-64:0:2:4,256:0:2:8,256:0.002:2:8,512:0:1:8}" \
  $CK --set ray.num_cpus=16 --out "$OUT/${SERVE_OUT:-serve-gpu.json}"
