#!/bin/bash
# The rows of the edits other than crops, strip and mirror, after the crop phases (issue 18): one process per edit.
# usage: bash docs/bench-results/platform50-phases-h200-b.sh "EDIT1;EDIT2;..." SECONDS, the cache: runs/platform50 trimmed
# to files/, clips.json and footage-128x128.npz (runs/gpu7/cache), carried with .whl.
set -u
pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q
python3 tools/typecheck_tree.py > /dev/null
export PYTHONPATH=/tmp/site:$PWD/build/typecheck
mkdir -p /tmp/pack7
IFS=';' read -ra EDITS <<< "$1"
i=0
for e in "${EDITS[@]}"; do
  c=/tmp/cache$i; rm -rf $c; cp -r runs/gpu7/cache $c
  ( timeout "$2" python3 bench/robustness.py --suite platform --clips 50 --methods framemark --device cuda --threads 1 \
      --json --attacks "$e" --cache $c > "$OUT/row$i.txt" 2>&1; cp $c/scores-framemark.jsonl /tmp/pack7/scores$i.jsonl; cp "$OUT/row$i.txt" /tmp/pack7/ ) &
  i=$((i+1))
done
wait
tar -czf $OUT/pack7.tgz -C /tmp pack7; rm -f $OUT/row*.txt
