#!/bin/bash
# CogVideoX-2B's real-scale cost with a learnt inverse, then the CogVideoX toy's attack suite through its learnt
# inverse and through the sampler inversion (learnt-inverse-suite-h200.sh, cache runs/cog20).
# usage: [REALSCALE=0] bash docs/bench-results/cogvideox-inverse-h200.sh SECONDS
set -u
if [ "${REALSCALE:-1}" = 1 ]; then  # alone on the GPU: it is timed
  pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q 2>/dev/null
  python3 tools/typecheck_tree.py > /dev/null
  PYTHONPATH=/tmp/site:$PWD/build/typecheck python3 bench/realscale.py --families cogvideox --inversion-steps 10,2 \
    --learnt-layers 30,10 --json > "$OUT/realscale-cogvideox.txt" 2>&1
fi
bash docs/bench-results/learnt-inverse-suite-h200.sh generator/cogvideox_model runs/cog20 "$1"
