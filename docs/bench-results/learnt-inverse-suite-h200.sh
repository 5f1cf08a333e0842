#!/bin/bash
# A toy model recovered through its learnt inverse and through the sampler inversion (10 steps), on the same
# 22-attack suite, 20 clips each, on one H200. The cache comes from this machine, where PyAV makes the files and the
# codec attacks: python bench/robustness.py --clips 20 --methods framemark --model MODEL --prepare-only --cache CACHE;
# carry it with .whl. Four processes per variant, each on its own copy of the cache; rows come back under $OUT.
# usage: [VARIANTS="learnt sampler"] bash docs/bench-results/learnt-inverse-suite-h200.sh MODEL CACHE SECONDS
set -u
model_dir=$1 cache=$2 seconds=$3
pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q 2>/dev/null
python3 tools/typecheck_tree.py > /dev/null
export PYTHONPATH=/tmp/site:$PWD/build/typecheck
# the same model with the sampler inversion: its card's verification.inversion set back to "sampler"
rm -rf /tmp/model_sampler; cp -r "$model_dir" /tmp/model_sampler
python3 - <<'PY'
import json, pathlib
p = pathlib.Path("/tmp/model_sampler/framemark.json"); c = json.loads(p.read_text())
c["verification"]["inversion"] = "sampler"; p.write_text(json.dumps(c, indent=2))
PY
SPLITS="clean,h265_crf28,crop_80%,fps_8_to_6,blur_sigma2,crop_80%+h264_crf28;h264_crf23,vp9_crf40,crop_60%,brightness_+10%,noise_sigma0.02,resize_0.75+brightness_+10%;h264_crf28,resize_0.5,drop_25%_frames,contrast_x0.8,rotate_2deg;h264_crf35,resize_0.75,drop_50%_frames,blur_sigma1,text_overlay"
IFS=';' read -ra G <<< "$SPLITS"
for variant in ${VARIANTS:-learnt sampler}; do
  model=$model_dir; [ $variant = sampler ] && model=/tmp/model_sampler
  for i in "${!G[@]}"; do
    c=/tmp/cache-$variant-$i; rm -rf $c; cp -r "$cache" $c
    ( timeout "$seconds" python3 bench/robustness.py --clips 20 --methods framemark --model $model --device cuda \
        --threads 1 --json --attacks "${G[$i]}" --cache $c > "$OUT/$variant-$i.txt" 2>&1
      cp $c/scores-framemark.jsonl "$OUT/$variant-$i-scores.jsonl" ) &
  done
done
wait
tail -n 3 "$OUT"/*.txt | head -c 6000
