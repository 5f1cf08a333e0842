"""Encoder tuning: the decoder (what generated clips look like) must come out bit-identical, the encoder must
change, and the stand-in degradations must do what their names say."""

from __future__ import annotations

import json
import math
import random

import torch
from safetensors.torch import load_file

from framemark.detect.alignment import interior_mask
from framemark.generator.models import DEFAULT_MODEL_DIR
from framemark.lab import encoder_tuning as et


def test_smoke_tuning_changes_only_the_encoder(tmp_path):
    out = tmp_path / "tuned"
    assert et.main(["--smoke", "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads((out / "encoder_tuning.json").read_text())
    assert report["decoder_unchanged"] is True and report["steps"] == 2
    assert set(report["before"]) == set(report["after"]) and "centre crop 0.8" in report["after"]

    shipped = load_file(DEFAULT_MODEL_DIR / "vae" / "diffusion_pytorch_model.safetensors")
    tuned = load_file(out / "vae" / "diffusion_pytorch_model.safetensors")
    assert shipped.keys() == tuned.keys()
    encoder = [k for k in shipped if k.startswith(("encoder.", "quant_conv."))]
    decoder = [k for k in shipped if k not in encoder]
    assert decoder and all(torch.equal(shipped[k], tuned[k]) for k in decoder)
    assert any(not torch.equal(shipped[k], tuned[k]) for k in encoder)
    from diffusers import AutoencoderKLWan

    AutoencoderKLWan.from_pretrained(out / "vae")  # still a diffusers folder


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4.0 / float(((a - b) ** 2).mean()))


def test_degradations_are_mild_edits_of_the_input_and_crops_keep_only_the_interior():
    gen = torch.Generator().manual_seed(0)
    # smooth content, as decoded frames are: noise blurred a little
    x = et.gaussian_blur(torch.rand(2, 3, 5, 64, 64, generator=gen) * 2 - 1, 2.0).clamp(-1, 1)
    assert et.quantise_8bit(x).sub(x).abs().max() <= 1 / 127.5
    for edited in (et.chroma_420(x), et.dct_quantise(x, 6.0), et.rescale(x, 0.75), et.gaussian_blur(x, 1.0)):
        assert edited.shape == x.shape
        assert 25 < _psnr(x, edited) < 80
    assert _psnr(x, et.dct_quantise(x, 2.0)) > _psnr(x, et.dct_quantise(x, 10.0))
    assert torch.allclose(et.brightness(x, 1.0), x, atol=1e-6)

    crop = et.crop_and_uncrop(x, 0.8)
    inside = torch.from_numpy(interior_mask(0.8, 64, 64, 8))
    # the 51-pixel interior starts at pixel 6: cells 1..6 of 8 lie wholly inside it, in each direction
    assert inside.sum() == 6 * 6 and not inside[0].any() and not inside[7].any() and inside[1:7, 1:7].all()
    pixels = inside.repeat_interleave(8, 0).repeat_interleave(8, 1)
    assert _psnr(x[..., pixels], crop[..., pixels]) > 25  # the interior is the original, resampled twice
    assert _psnr(x[..., ~pixels], crop[..., ~pixels]) < _psnr(x[..., pixels], crop[..., pixels])

    rng = random.Random(3)
    for _ in range(10):
        y, fraction = et.degrade(x, rng)
        assert y.shape == x.shape and 0.75 <= fraction <= 1.0
