#!/bin/bash
# The cache: runs/platform50 (bench/robustness.py --prepare-only on the CPU machine) trimmed to files/, clips.json and
# the crop_area* CRF 28 files, as runs/gpu6/cache; carried with .whl (docs: NOTES.md, the device README).
# Platform-edit rows after the crop phases (issue 18), one process per edit, each on its own copy of the cache.
# usage: bash runs/gpu6/run.sh "EDIT1;EDIT2;..." SECONDS
set -u
pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q
python3 tools/typecheck_tree.py > /dev/null
export PYTHONPATH=/tmp/site:$PWD/build/typecheck
IFS=';' read -ra EDITS <<< "$1"
i=0
for e in "${EDITS[@]}"; do
  c=/tmp/cache$i; rm -rf $c; cp -r runs/gpu6/cache $c
  ( timeout "$2" python3 bench/robustness.py --suite platform --clips 50 --methods framemark --device cuda --threads 1 \
      --json --attacks "$e" --cache $c > "$OUT/row$i.txt" 2>&1; cp $c/scores-framemark.jsonl "$OUT/scores$i.jsonl" ) &
  i=$((i+1))
done
wait
nvidia-smi --query-gpu=memory.used --format=csv > $OUT/gpu.txt
