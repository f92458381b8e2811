#!/usr/bin/env bash
# usage: bench.sh new|old N
set -u
which=$1; n=$2
if [ "$which" = new ]; then dir=/work/wt/h17-samples; else dir=/tmp/old-ingest; fi
rm -rf /tmp/h17s/state-$which
cd $dir && .venv/bin/oneloc --set kafka.embedded.port=29792 --set kafka.embedded.controller_port=29793 \
  --set kafka.embedded.data_dir=/tmp/h17s/kafka --set storage.root=/tmp/h17s/state-$which \
  bench ingest --rounds 10 --out /tmp/h17s/$which-$n.json > /tmp/h17s/$which-$n.log 2>&1
echo "$which $n rc=$?"
rm -rf /tmp/h17s/state-$which
