# End to end on the GPU machine (2 x H200), from the project root: Delta samples table (the ingest's shard writer,
# no Kafka) -> pre-training on Ray Train with 2 GPUs (validation, checkpoint) -> resume for a second epoch ->
# DPO on 2 GPUs from the best checkpoint -> pre-training on 1 GPU. Stages and run summaries -> $OUT/runs.json.
#   OUT=/tmp/out bash docs/results/gpu/run_e2e.sh
. docs/results/gpu/setup.sh
stage delta_samples 120 python3 -m oneloc.benchmarks.delta_samples
stage train_2gpu 300 oneloc --set train.log_every=100 train --gpu --workers 2 --epochs 1 --source delta
stage train_2gpu_resume 240 oneloc --set train.log_every=100 train --gpu --workers 2 --epochs 2 --source delta --resume
stage rl_2gpu 240 oneloc --set rl.run_name=oneloc-rl-2gpu rl --gpu --workers 2 --max-steps 100 --source delta
stage train_1gpu 240 oneloc --set train.run_name=oneloc-train-1gpu --set train.log_every=100 train --gpu --workers 1 \
  --epochs 1 --max-steps 300 --source delta
