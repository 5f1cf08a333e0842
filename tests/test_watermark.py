"""The latent watermark codec: key, payload, ECC, embedding statistics, extraction, calibration, tampering."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import special, stats

from framemark.watermark import PILOT_FRACTION, Extraction, Payload, WatermarkKey, embed, extract, template
from framemark.watermark import codec, ecc, evidence
from framemark.watermark.payload import crc16_ccitt_false

SHAPE = (1, 16, 5, 16, 16)
KEY = WatermarkKey(bytes(range(32)))
PAYLOAD = Payload(0x0123456789AB)


def _keys(n: int, seed: int) -> list[WatermarkKey]:
    rng = random.Random(seed)
    return [WatermarkKey(rng.randbytes(32)) for _ in range(n)]


def _count_bound(alpha: float, n: int) -> float:
    """An upper bound for the number of p <= alpha among n valid p-values (mean + 3 sd + 1)."""
    return alpha * n + 3 * math.sqrt(n * alpha * (1 - alpha)) + 1


# --------------------------------------------------------------------------------------------------- key


def test_key_serialisation_round_trip_and_stable_id():
    assert KEY.key_id == "b434b2ce"  # pinned: sha256(b"framemark-key-id\0" + secret)[:4]
    assert KEY.key_id == hashlib.sha256(b"framemark-key-id\0" + KEY.secret).digest()[:4].hex()
    d = KEY.to_dict()
    assert d == {"version": 1, "key_id": "b434b2ce", "secret": bytes(range(32)).hex()}
    assert WatermarkKey.from_dict(json.loads(json.dumps(d))) == KEY
    fresh = WatermarkKey.generate()
    assert len(fresh.secret) == 32 and fresh != KEY
    assert WatermarkKey.from_dict(fresh.to_dict()) == fresh
    assert len(fresh.key_id) == 8 and fresh.key_id == fresh.key_id.lower()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("secret"),
        lambda d: d.pop("key_id"),
        lambda d: d.pop("version"),
        lambda d: d.update(version=2),
        lambda d: d.update(secret=d["secret"][:-2]),
        lambda d: d.update(secret="zz" + d["secret"][2:]),
        lambda d: d.update(secret=123),
        lambda d: d.update(key_id="00000000"),
    ],
)
def test_bad_key_dict_raises_value_error(mutate):
    d = KEY.to_dict()
    mutate(d)
    with pytest.raises(ValueError):
        WatermarkKey.from_dict(d)


def test_key_validation_and_repr_hides_secret():
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            WatermarkKey(bad)
    with pytest.raises(ValueError):
        WatermarkKey.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]
    key = WatermarkKey.generate()
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert key.key_id in text
        assert key.secret.hex() not in text and str(key.secret) not in text


# ----------------------------------------------------------------------------------------------- payload


def test_payload_bits_and_crc():
    assert crc16_ccitt_false(b"123456789") == 0x29B1  # the standard check value of CRC-16/CCITT-FALSE
    bits = PAYLOAD.to_bits()
    assert bits.shape == (64,) and bits.dtype == np.uint8
    assert "".join(map(str, bits[:48])) == format(0x0123456789AB, "048b")  # MSB first
    crc = crc16_ccitt_false(bytes.fromhex("0123456789ab"))
    assert "".join(map(str, bits[48:])) == format(crc, "016b")
    assert PAYLOAD.hex == f"0123456789ab{crc:04x}"
    assert Payload.from_bits(bits) == (PAYLOAD, True)
    rng = random.Random(5)
    for _ in range(20):
        p = Payload.random(rng)
        assert Payload.from_bits(p.to_bits()) == (p, True)
        assert int(p.hex, 16) == int("".join(map(str, p.to_bits())), 2)
    assert Payload.random(random.Random(9)) == Payload.random(random.Random(9))
    assert Payload.random() != Payload.random()  # 2**-48 chance of a false failure


def test_any_flipped_payload_bit_fails_the_crc():
    bits = PAYLOAD.to_bits()
    for i in range(64):
        flipped = bits.copy()
        flipped[i] ^= 1
        _, ok = Payload.from_bits(flipped)
        assert not ok, i


def test_payload_validation():
    for bad in (-1, 2**48, 1.5, True):
        with pytest.raises(ValueError):
            Payload(bad)
    with pytest.raises(ValueError):
        Payload.from_bits(np.zeros(63))
    with pytest.raises(ValueError):
        Payload.from_bits(np.full(64, 2))


# ------------------------------------------------------------------------------------------------- ECC


def test_ecc_encoder_matches_the_generator_polynomials():
    impulse = np.zeros(64, dtype=np.uint8)
    impulse[0] = 1
    code = ecc.encode(impulse)
    assert code.shape == (140,)
    # the impulse response interleaves the taps of 133 = 1011011 and 171 = 1111001 (octal), MSB first
    g0, g1 = [1, 0, 1, 1, 0, 1, 1], [1, 1, 1, 1, 0, 0, 1]
    assert code[:14].tolist() == [b for pair in zip(g0, g1) for b in pair]
    assert not code[14:].any()
    # linearity and the free distance 10 of this code (weight of any single-input response)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (2, 64)).astype(np.uint8)
    assert np.array_equal(ecc.encode(a ^ b), ecc.encode(a) ^ ecc.encode(b))
    assert min(int(ecc.encode(np.eye(64, dtype=np.uint8)[i]).sum()) for i in range(64)) == 10


def test_viterbi_on_clean_input_returns_the_bits():
    rng = np.random.default_rng(1)
    for _ in range(10):
        bits = rng.integers(0, 2, 64).astype(np.uint8)
        soft = (2.0 * ecc.encode(bits) - 1.0) * rng.uniform(0.5, 2.0, 140)
        assert np.array_equal(ecc.viterbi_decode(soft, 64), bits)
    with pytest.raises(ValueError):
        ecc.viterbi_decode(soft[:-1], 64)


def test_viterbi_corrects_a_handful_of_flipped_hard_decisions():
    rng = np.random.default_rng(2)
    for _ in range(20):
        bits = rng.integers(0, 2, 64).astype(np.uint8)
        hard = 2.0 * ecc.encode(bits) - 1.0
        flips = [20 * w + int(rng.integers(0, 20)) for w in range(7)]  # 7 errors, one per 20-bit window
        hard[flips] *= -1
        assert np.array_equal(ecc.viterbi_decode(hard, 64), bits)
    # ...and does not when the errors are dense (it is a real decoder, not a lookup)
    hard = 2.0 * ecc.encode(bits) - 1.0
    hard[10:40:2] *= -1
    assert not np.array_equal(ecc.viterbi_decode(hard, 64), bits)


# ------------------------------------------------------------------------------------ embedding statistics


def test_embedded_noise_is_standard_normal():
    rng = random.Random(3)
    for seed in range(4):
        z = embed(WatermarkKey(rng.randbytes(32)), Payload.random(rng), SHAPE, seed)
        x = z.numpy().ravel().astype(np.float64)
        assert z.dtype == torch.float32 and z.shape == SHAPE
        assert stats.kstest(x, "norm").pvalue > 0.01
        assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05


def test_embedding_is_deterministic_and_matches_the_template():
    z = embed(KEY, PAYLOAD, SHAPE, 7)
    assert torch.equal(z, embed(KEY, PAYLOAD, SHAPE, 7))
    assert not torch.equal(z, embed(KEY, PAYLOAD, SHAPE, 8))
    assert torch.equal(embed(KEY, PAYLOAD, SHAPE[1:], 7), z[0])  # (C, T, H, W) gives the unbatched tensor
    tpl = template(KEY, PAYLOAD, SHAPE)
    assert tpl.shape == SHAPE[1:] and set(np.unique(tpl)) == {-1, 1}
    assert np.array_equal(np.sign(z[0].numpy()), tpl)
    # pinned layout: existing marked clips must stay detectable across versions
    assert hashlib.sha256(tpl.astype(np.int8).tobytes()).hexdigest()[:16] == "a5ba2ba12da57e1a"
    assert np.allclose(z.flatten()[:4].numpy(), [-0.48864159, -0.12918180, -0.28494576, 0.28611138])
    # a different payload changes only payload positions, never pilots; a different key changes ~half
    other = template(KEY, Payload(PAYLOAD.clip_id ^ 1), SHAPE)
    assert 0 < np.mean(other != tpl) < 1 - PILOT_FRACTION
    assert abs(np.mean(template(WatermarkKey(bytes(32)), PAYLOAD, SHAPE) != tpl) - 0.5) < 0.02


def test_template_bits_are_balanced():
    rng = random.Random(4)
    means = [np.mean(template(KEY, Payload.random(rng), SHAPE) > 0) for _ in range(50)]
    assert all(abs(m - 0.5) < 0.02 for m in means)
    assert abs(np.mean(means) - 0.5) < 0.005
    # per element, over random keys, the bit is a fair coin: counts ~ Binomial(200, 1/2)
    counts = sum((template(k, PAYLOAD, SHAPE) > 0).astype(np.int64) for k in _keys(200, 6)).ravel()
    assert abs(counts.mean() - 100) < 0.3
    assert abs(counts.std() - math.sqrt(50)) < 0.4
    assert np.mean(np.abs(counts - 100) > 3 * math.sqrt(50)) < 0.006


# ------------------------------------------------------------------------------------------- extraction


def test_round_trip():
    rng = random.Random(10)
    for seed in range(3):
        key, payload = WatermarkKey(rng.randbytes(32)), Payload.random(rng)
        ex = extract(key, embed(key, payload, SHAPE, seed))
        assert isinstance(ex, Extraction)
        assert ex.detected and ex.payload == payload and ex.crc_ok
        assert ex.p_value < 1e-300 and ex.log10_p_value < -1000
        assert ex.bit_accuracy == 1.0 and ex.pilot_agreement == 1.0
        assert ex.frame_assignment == (0, 1, 2, 3, 4) and ex.key_id == key.key_id
        assert ex.frame_matrix.shape == (5, 5) and np.allclose(np.diag(ex.frame_matrix), 1.0)
        assert np.all(ex.frame_matrix[~np.eye(5, dtype=bool)] < 0.6)  # other frames' pilots: chance level
        assert np.all(ex.frame_agreement == 1.0) and ex.cell_agreement.shape == (5, 4, 4)
    ex = extract(KEY, embed(KEY, PAYLOAD, SHAPE, 0)[0].numpy())  # numpy, unbatched
    assert ex.payload == PAYLOAD
    d = ex.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["payload"] == PAYLOAD.hex and d["clip_id"] == PAYLOAD.clip_id and d["detected"] is True


def test_noisy_channel_still_decodes():
    z = embed(KEY, PAYLOAD, SHAPE, 11)
    noise = torch.from_numpy(np.random.default_rng(12).standard_normal(SHAPE).astype(np.float32))
    z_hat = 0.5 * z + 0.45 * noise
    agreement = float(np.mean(np.sign(z_hat.numpy()) == np.sign(z.numpy())))
    assert 0.75 <= agreement <= 0.80
    ex = extract(KEY, z_hat)
    assert ex.detected and ex.p_value < 1e-100
    assert ex.payload == PAYLOAD and ex.crc_ok
    assert abs(ex.bit_accuracy - agreement) < 1e-6
    assert abs(ex.pilot_agreement - agreement) < 0.03


def test_wrong_keys_do_not_detect():
    z = embed(KEY, PAYLOAD, SHAPE, 13)
    p_values = []
    for key in _keys(200, 14):
        ex = extract(key, z)
        assert not ex.detected and ex.payload is None and not ex.crc_ok
        p_values.append(ex.p_value)
    p = np.array(p_values)
    for alpha in (0.01, 0.05, 0.1, 0.5):
        assert np.sum(p <= alpha) <= _count_bound(alpha, p.size)


def test_unmarked_noise_p_values_are_calibrated():
    rng = np.random.default_rng(15)
    p = np.array([extract(KEY, rng.standard_normal(SHAPE)).p_value for _ in range(300)])
    assert np.all(p > 1e-6)
    for alpha in (0.01, 0.05, 0.1, 0.5):
        assert np.sum(p <= alpha) <= _count_bound(alpha, p.size), alpha
    assert np.mean(p) > 0.3  # not degenerate: p-values are spread over (0, 1]


def test_p_values_are_valid_for_structured_content_and_static_video():
    # Fixed, highly structured content and random keys: exactness "whatever the content".
    c, t, h, w = SHAPE[1:]
    ramp = np.linspace(-1, 1, c * h * w).reshape(c, 1, h, w)
    static = np.repeat(np.random.default_rng(16).standard_normal((c, 1, h, w)), t, axis=1)  # identical frames
    for content in (np.repeat(ramp, t, axis=1), static):
        p = np.array([extract(k, content).p_value for k in _keys(150, 17)])
        assert np.all(p > 1e-6)
        for alpha in (0.01, 0.05, 0.1, 0.5):
            assert np.sum(p <= alpha) <= _count_bound(alpha, p.size), alpha


def test_evidence_bound_covers_the_exact_tail_and_is_tight():
    # every sign a fair coin: enumerate T over all 2**18 outcomes of 6 pilots and 3 code bits of 5, 4 and 3
    # replicas, and compare the bound with the exact tail at every observed value
    n_pilot, counts = 6, np.array([5, 4, 3])
    outcomes = np.array(np.meshgrid(*[[-1.0, 1.0]] * (n_pilot + counts.sum()), indexing="ij")).reshape(18, -1).T
    pilot_sums = outcomes[:, :n_pilot].sum(axis=1)
    edges = np.cumsum([n_pilot, *counts])
    bit_sums = np.stack([outcomes[:, a:b].sum(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    t = np.array([evidence.statistic(p, s) for p, s in zip(pilot_sums, bit_sums)])
    for value in np.unique(np.round(t, 9))[::7]:
        i = int(np.flatnonzero(np.isclose(t, value))[0])
        exact = float(np.mean(t >= t[i] - 1e-9))
        bound = math.exp(evidence.log_sf(pilot_sums[i], n_pilot, bit_sums[i], counts))
        assert bound >= exact * (1 - 1e-9), (value, exact, bound)
    top = int(t.argmax())  # every sign agrees: exact tail 2**-18; Chernoff stays within a small factor
    assert 2.0 ** -18 <= math.exp(evidence.log_sf(pilot_sums[top], n_pilot, bit_sums[top], counts)) < 50 * 2.0 ** -18
    # deep in the tail (5120 pilots, 4000 matching): log space, within a few nats of the exact binomial tail
    i = np.arange(4000, 5121)
    exact = float(special.logsumexp(special.gammaln(5121) - special.gammaln(i + 1) - special.gammaln(5121 - i))
                  - 5120 * math.log(2))
    bound = evidence.log_sf(2 * 4000 - 5120, 5120, np.zeros(3), np.zeros(3, dtype=int))
    assert exact <= bound <= exact + 6.0
    assert codec.n_alignments(5, 5) == 5**5 and codec.n_alignments(4, 5) == 5**4


def test_payload_replicas_add_evidence_the_pilots_alone_lack():
    # signs agreeing with the template at 0.54: the pilots alone (what the test used to count) do not reach 1e-6,
    # the payload replicas' agreement among themselves, code bits unknown to the detector, takes it far past
    # (a p-value far from 0: scipy's binomial tail is exact there); at 0.58 it gives at least twice their -log10 p
    z = embed(KEY, PAYLOAD, SHAPE, 21)
    n = int(round(PILOT_FRACTION * SHAPE[1] * SHAPE[3] * SHAPE[4])) * SHAPE[2]
    for agreement, gain in ((0.54, 1.0), (0.58, 2.0)):
        flips = np.random.default_rng(22).random(SHAPE) < 1 - agreement
        z_hat = z * torch.from_numpy(np.where(flips, -1.0, 1.0).astype(np.float32))
        ex = extract(KEY, z_hat)
        m = int(round(ex.pilot_agreement * n))
        pilots_alone = (math.log(codec.n_alignments(5, 5)) + stats.binom.logsf(m - 1, n, 0.5)) / math.log(10)
        assert abs(ex.pilot_agreement - agreement) < 0.015
        assert agreement > 0.55 or pilots_alone > -6  # the weak case: the pilots alone do not detect it
        assert ex.detected and ex.log10_p_value < gain * pilots_alone - 1.0, (agreement, pilots_alone)
        assert not extract(_keys(1, 23)[0], z_hat).detected


# ---------------------------------------------------------------------------------------------- tampering


def test_swapped_dropped_and_duplicated_frames():
    z = embed(KEY, PAYLOAD, SHAPE, 18)
    swapped = z[:, :, [0, 3, 2, 1, 4]]
    ex = extract(KEY, swapped)
    assert ex.detected and ex.payload == PAYLOAD and ex.frame_assignment == (0, 3, 2, 1, 4)
    assert ex.bit_accuracy == 1.0
    dropped = z[:, :, [0, 1, 3, 4]]
    ex = extract(KEY, dropped, template_frames=5)
    assert ex.detected and ex.payload == PAYLOAD and ex.frame_assignment == (0, 1, 3, 4)
    assert ex.frame_matrix.shape == (4, 5)
    duplicated = z[:, :, [0, 1, 1, 2, 3]]
    ex = extract(KEY, duplicated)
    assert ex.detected and ex.payload == PAYLOAD and ex.frame_assignment == (0, 1, 1, 2, 3)
    assert ex.pilot_agreement == 1.0


def test_replaced_frame_and_region_are_localised():
    z = embed(KEY, PAYLOAD, SHAPE, 19).clone()
    noise = torch.from_numpy(np.random.default_rng(20).standard_normal(SHAPE).astype(np.float32))
    frame_swap = z.clone()
    frame_swap[:, :, 2] = noise[:, :, 2]
    ex = extract(KEY, frame_swap)
    assert ex.detected and ex.payload == PAYLOAD
    assert abs(ex.frame_agreement[2] - 0.5) < 0.05
    assert np.all(np.delete(ex.frame_agreement, 2) == 1.0)
    assert ex.frame_matrix[2].max() < 0.6
    region = z.clone()
    region[..., 4:12, 8:16] = noise[..., 4:12, 8:16]  # cells rows 1-2, cols 2-3, all frames
    ex = extract(KEY, region, cell=4)
    assert ex.detected and ex.payload == PAYLOAD
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 2:4] = True
    assert np.all(ex.cell_agreement[:, mask] < 0.65)
    assert np.all(ex.cell_agreement[:, ~mask] == 1.0)
    assert ex.cell_agreement.shape == (5, 4, 4) and extract(KEY, region, cell=8).cell_agreement.shape == (5, 2, 2)


def test_unmarked_result_has_no_payload():
    ex = extract(KEY, np.random.default_rng(21).standard_normal(SHAPE))
    assert not ex.detected and ex.payload is None and not ex.crc_ok
    assert 0.4 < ex.bit_accuracy < 0.6
    d = ex.to_dict()
    assert d["payload"] is None and d["clip_id"] is None and json.loads(json.dumps(d)) == d
    with pytest.raises(ValueError):
        extract(KEY, np.zeros((2, *SHAPE[1:])))
    with pytest.raises(ValueError):
        extract(KEY, np.zeros(SHAPE), fpr=0.0)


# --------------------------------------------------------------------------------------------- hygiene


def test_watermark_imports_only_numpy_torch_scipy_cryptography_and_stdlib():
    allowed = {"numpy", "torch", "scipy", "cryptography", "__future__"} | set(sys.stdlib_module_names)
    folder = Path(codec.__file__).resolve().parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
        assert "open(" not in path.read_text(), path.name


def test_mask_restricts_the_test_to_positions_that_can_carry_the_mark():
    """A crop destroys the border: testing only the interior is stronger, and stays calibrated on noise."""
    rng = np.random.default_rng(3)
    key, payload = WatermarkKey(bytes(range(32))), Payload(0xABCDEF012345)
    z = embed(key, payload, (1, 16, 5, 16, 16), seed=1).numpy()
    noisy = z + 4.0 * rng.standard_normal(z.shape)
    noisy[..., :3, :] = rng.standard_normal(noisy[..., :3, :].shape)  # border rows: foreign content
    noisy[..., -3:, :] = rng.standard_normal(noisy[..., -3:, :].shape)
    mask = np.zeros((16, 16), dtype=bool)
    mask[3:-3, :] = True
    whole, interior = extract(key, noisy), extract(key, noisy, mask=mask)
    assert interior.log10_p_value < whole.log10_p_value - 2
    assert interior.payload == payload
    null = [extract(WatermarkKey(rng.bytes(32)), rng.standard_normal(z.shape), mask=mask).p_value
            for _ in range(200)]
    assert min(null) > 1e-4 and np.mean(np.array(null) <= 0.05) <= 0.05
    with pytest.raises(ValueError, match="spatial shape"):
        extract(key, noisy, mask=np.ones((8, 8), dtype=bool))


def test_reach_registers_a_latent_that_sits_off_the_template():
    """A crop that is not centred leaves the interior's cells off their template cells: within ``reach`` the
    offset is found, reported as ``shift`` and paid for in the p-value (the centred offset at its weighted share
    of the union bound, any other at the rest's); noise stays calibrated."""
    rng = np.random.default_rng(4)
    key, payload = WatermarkKey(bytes(range(1, 33))), Payload(0x00C0FFEE0042)
    z = embed(key, payload, (1, 16, 5, 16, 16), seed=2).numpy()[0]
    noisy = z + 2.5 * rng.standard_normal(z.shape)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 4:12] = True
    centred = extract(key, noisy, mask=mask)
    off_centre_price = math.log10((codec.shifts((4, 4)) - 1) / (1 - codec.CENTRED_SHARE))
    for d in ((2, -3), (0, 0), (-4, 1)):
        # template cell q is found at recovered cell q + d
        seen = np.zeros_like(noisy)
        seen[..., 4:12, 4:12] = noisy[..., 4 - d[0]:12 - d[0], 4 - d[1]:12 - d[1]]
        found = extract(key, seen, mask=mask, reach=(4, 4))
        assert found.detected and found.shift == d and found.payload == payload
        if d != (0, 0):
            assert not extract(key, seen, mask=mask).detected
            # the cells read are template cells q with q + d inside the mask: the same test on the unmoved latent
            there = np.zeros_like(mask)
            there[4 - d[0]:12 - d[0], 4 - d[1]:12 - d[1]] = True
            assert found.log10_p_value == pytest.approx(extract(key, noisy, mask=there).log10_p_value
                                                        + off_centre_price)
    searched = extract(key, noisy, mask=mask, reach=(4, 4))
    assert searched.shift == (0, 0)
    assert searched.log10_p_value == pytest.approx(centred.log10_p_value - math.log10(codec.CENTRED_SHARE))
    null = [extract(WatermarkKey(rng.bytes(32)), rng.standard_normal(z.shape), mask=mask, reach=(3, 3)).p_value
            for _ in range(150)]
    assert min(null) > 1e-4 and np.mean(np.array(null) <= 0.05) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 150)
    with pytest.raises(ValueError, match="reach"):
        extract(key, noisy, reach=(-1, 0))
