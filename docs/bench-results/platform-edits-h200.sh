#!/bin/bash
# Platform-edit rows of bench/robustness.py on one H200, one process per edit, each on its own copy of the cache.
# The cache: runs/platform50 (bench/robustness.py --prepare-only on the CPU machine: files/, clips.json,
# footage-128x128.npz and the CRF 28 files of the edits run) copied to $CACHE (default runs/gpu8/cache) and carried
# with .whl (docs: NOTES.md, the device README). Rows and records come back packed in $OUT/rows.tgz.
# usage: [CACHE=DIR] bash docs/bench-results/platform-edits-h200.sh "EDIT1;EDIT2;..." SECONDS
#        (an EDIT written standard:NAME is an attack of the standard suite)
set -u
CACHE=${CACHE:-runs/gpu8/cache}
pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q
python3 tools/typecheck_tree.py > /dev/null
export PYTHONPATH=/tmp/site:$PWD/build/typecheck
mkdir -p /tmp/rows
IFS=';' read -ra EDITS <<< "$1"
i=0
for e in "${EDITS[@]}"; do
  c=/tmp/cache$i; rm -rf $c; cp -r "$CACHE" $c
  suite=platform; if [[ $e == standard:* ]]; then suite=standard; e=${e#standard:}; fi
  ( timeout "$2" python3 bench/robustness.py --suite $suite --clips 50 --methods framemark --device cuda --threads 1 \
      --json --attacks "$e" --cache $c > /tmp/rows/row$i.txt 2>&1; cp $c/scores-framemark.jsonl /tmp/rows/scores$i.jsonl ) &
  i=$((i+1))
done
wait
tar -czf "$OUT/rows.tgz" -C /tmp rows
