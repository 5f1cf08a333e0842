#!/bin/bash
# Learnt inverses of a toy model's sampler on one H200, one training per depth, side by side ($MODEL: a model
# folder of the repository, default generator/cogvideox_model)
# (python -m framemark.lab.inverter_training; diffusers carried as .whl, see NOTES.md and the device README).
# Each run's inverter/ (with its inverter_training.json) comes back under $OUT/blocksN.
# usage: [MODEL=generator/default_model] bash docs/bench-results/inverter-training-h200.sh "6 2" MINUTES [extra arguments]
set -u
pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q
python3 tools/typecheck_tree.py > /dev/null
export PYTHONPATH=/tmp/site:$PWD/build/typecheck
depths=$1; minutes=$2; shift 2
model=${MODEL:-generator/cogvideox_model}
root=$PWD
cd /tmp  # with -m the working directory comes first on sys.path, and the root's framemark/ would shadow the tree's
for b in $depths; do
  ( python3 -m framemark.lab.inverter_training --model "$root/$model" --out "$OUT/blocks$b" \
      --minutes "$minutes" --blocks "$b" --device cuda "$@" > "$OUT/blocks$b.log" 2>&1 ) &
done
wait
tail -n 4 "$OUT"/blocks*.log
