#!/bin/bash
set -u
pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q 2>/dev/null
python3 tools/typecheck_tree.py > /dev/null
export PYTHONPATH=/tmp/site:$PWD/build/typecheck
mkdir -p /tmp/pack
for k in $1; do
  rm -rf /tmp/cog$k; cp -r runs/cog /tmp/cog$k
  ( timeout $2 python3 bench/first_look.py --model generator/cogvideox_model --cache /tmp/cog$k --clips 10 --steps $k \
      --device cuda --threads 1 --json > /tmp/pack/first-look-$k.txt 2>&1; cp /tmp/cog$k/first-look-*.jsonl /tmp/pack/ ) &
done
wait
tar -czf $OUT/pack.tgz -C /tmp pack
