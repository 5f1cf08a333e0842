#!/bin/bash
# The CogVideoX toy recovered through its learnt inverse and through the sampler inversion (10 steps), on the same
# 22-attack suite, 20 clips each, on one H200; then CogVideoX-2B's real-scale cost with a learnt inverse.
# The cache: runs/cog20 (python bench/robustness.py --clips 20 --methods framemark --model generator/cogvideox_model
# --prepare-only --cache runs/cog20, on the CPU machine: the files and the codec attacks, which need PyAV), carried
# with .whl. Four processes per variant, each on its own copy of the cache; rows come back under $OUT.
# usage: [REALSCALE=0] bash docs/bench-results/cogvideox-inverse-h200.sh SECONDS
set -u
pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q 2>/dev/null
python3 tools/typecheck_tree.py > /dev/null
export PYTHONPATH=/tmp/site:$PWD/build/typecheck
if [ "${REALSCALE:-1}" = 1 ]; then  # alone on the GPU: it is timed
  python3 bench/realscale.py --families cogvideox --inversion-steps 10,2 --learnt-layers 30,10 --json \
    > "$OUT/realscale-cogvideox.txt" 2>&1
fi
# the same model with the sampler inversion: its card's verification.inversion set back to "sampler"
rm -rf /tmp/cog_sampler; cp -r generator/cogvideox_model /tmp/cog_sampler
python3 - <<'PY'
import json, pathlib
p = pathlib.Path("/tmp/cog_sampler/framemark.json"); c = json.loads(p.read_text())
c["verification"]["inversion"] = "sampler"; p.write_text(json.dumps(c, indent=2))
PY
SPLITS="clean,h265_crf28,crop_80%,fps_8_to_6,blur_sigma2,crop_80%+h264_crf28;h264_crf23,vp9_crf40,crop_60%,brightness_+10%,noise_sigma0.02,resize_0.75+brightness_+10%;h264_crf28,resize_0.5,drop_25%_frames,contrast_x0.8,rotate_2deg;h264_crf35,resize_0.75,drop_50%_frames,blur_sigma1,text_overlay"
IFS=';' read -ra G <<< "$SPLITS"
for variant in learnt sampler; do
  model=generator/cogvideox_model; [ $variant = sampler ] && model=/tmp/cog_sampler
  for i in "${!G[@]}"; do
    c=/tmp/cog-$variant-$i; rm -rf $c; cp -r runs/cog20 $c
    ( timeout "$1" python3 bench/robustness.py --clips 20 --methods framemark --model $model --device cuda \
        --threads 1 --json --attacks "${G[$i]}" --cache $c > "$OUT/$variant-$i.txt" 2>&1
      cp $c/scores-framemark.jsonl "$OUT/$variant-$i-scores.jsonl" ) &
  done
done
wait
tail -n 3 "$OUT"/*.txt | head -c 6000
