"""Embedding a keyed payload in the initial latent noise z_T, and extracting it from recovered noise.

Layout
------
The latent has shape ``(C, T, H, W)`` (a leading batch dimension of 1 is accepted everywhere). Each latent
frame ``t`` is handled as a flat vector of ``N = C*H*W`` elements in ``(C, H, W)`` C-order. Per frame, a keyed
pseudo-random permutation of those ``N`` positions puts the first ``round(PILOT_FRACTION * N)`` of them on
*pilot* bits (always 0) and the rest on *payload replicas*: the 140 code bits of the convolutionally encoded
64-bit payload, repeated cyclically (so as evenly as possible) along the permuted payload positions; the cycle
starts at offset ``t * n_payload`` in frame ``t`` so that the repeat counts are also balanced over the whole clip.
The *template bit* of an element is (pilot: 0, payload: its code bit) XOR a key-stream bit, and its sign is
``+1`` for bit 1 and ``-1`` for bit 0.

Key stream
----------
ChaCha20 keyed with the 32-byte secret. The 16-byte nonce is 4 zero bytes (ChaCha20's initial block counter)
followed by the first 12 bytes of ``sha256(domain || label || "\\0" || C,T,H,W,t as little-endian uint64)``, with
``label`` ``b"sign"`` for the element key-stream bits and ``b"perm"`` for the permutation (positions are sorted
by 64-bit stream words). The nonce depends only on public quantities, so the detector can derive it from the
shape of what it recovered. Different frames get different streams (needed for frame alignment and temporal
tamper localisation). Known limitation: for a given key and latent shape the key stream and layout are fixed,
and the pilots (a quarter of the elements) carry the same signs in every clip. An adversary holding many
marked latents of one key could average them to estimate the pilot signs (and then remove or forge them);
the public nonce does not help against that, and a per-clip salt would need to be transmitted or searched.

Embedding
---------
Each element is drawn from the half of N(0, 1) that its template bit selects: ``z = ndtri((bit + u) / 2)`` with
``u ~ Uniform(0, 1)`` from ``numpy.random.default_rng(seed)`` (clipped away from 0 and 1). Because the template
bits are (pseudo-)uniform and independent of ``u``, ``(bit + u) / 2`` is Uniform(0, 1) and ``z`` is marginally
exactly N(0, 1): the marked noise is distributed like ordinary initial noise.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from scipy.special import ndtri

from . import ecc, evidence
from .key import WatermarkKey
from .payload import PAYLOAD_BITS, Payload

PILOT_FRACTION = 0.25
N_CODE_BITS = ecc.code_length(PAYLOAD_BITS)  # 140
_DOMAIN = b"framemark/watermark/v1\0"
_U_EPS = 1e-12  # u is clipped to [eps, 1 - eps] so that ndtri stays finite (|z| <= ~7.0)


# --------------------------------------------------------------------------------------------------- shapes


def _normalise_shape(latent_shape) -> tuple[tuple[int, int, int, int], bool]:
    """``(C, T, H, W)`` and whether a batch dimension of 1 was given."""
    shape = tuple(int(s) for s in latent_shape)
    batched = len(shape) == 5
    if batched:
        if shape[0] != 1:
            raise ValueError(f"only a batch of 1 is supported, got latent shape {shape}")
        shape = shape[1:]
    if len(shape) != 4:
        raise ValueError(f"latent shape must be (C, T, H, W) or (1, C, T, H, W), got {tuple(latent_shape)}")
    if any(s <= 0 for s in shape):
        raise ValueError(f"latent shape must be positive, got {shape}")
    return shape, batched  # type: ignore[return-value]


def _as_array(z_hat) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    if isinstance(z_hat, torch.Tensor):
        arr = z_hat.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(z_hat, dtype=np.float32)
    shape, batched = _normalise_shape(arr.shape)
    if batched:
        arr = arr[0]
    if not np.all(np.isfinite(arr)):
        raise ValueError("recovered latent contains non-finite values")
    return arr, shape


# ---------------------------------------------------------------------------------------- keyed layout


def _nonce(label: bytes, shape: tuple[int, int, int, int], t: int) -> bytes:
    digest = hashlib.sha256(_DOMAIN + label + b"\0" + struct.pack("<5Q", *shape, t)).digest()
    return b"\0\0\0\0" + digest[:12]


def _chacha20(secret: bytes, nonce: bytes, n_bytes: int) -> bytes:
    encryptor = Cipher(algorithms.ChaCha20(secret, nonce), mode=None).encryptor()
    return encryptor.update(bytes(n_bytes))


@dataclass(frozen=True)
class _Layout:
    n_pilot: int
    pilot_idx: np.ndarray  # (T, n_pilot) positions (flat within the frame) of the pilots
    pilot_sign: np.ndarray  # (T, n_pilot) float32 +-1: the sign each pilot element should have
    payload_idx: np.ndarray  # (T, n_payload) positions of the payload replicas
    payload_code: np.ndarray  # (T, n_payload) which code bit each replica carries
    payload_flip: np.ndarray  # (T, n_payload) float32 +-1 = 1 - 2*keystream: sign * flip > 0 <=> code bit 1
    keystream: np.ndarray  # (T, N) uint8 key-stream bits


def _frame_counts(shape: tuple[int, int, int, int]) -> tuple[int, int]:
    c, t, h, w = shape
    n = c * h * w
    n_pilot = int(round(PILOT_FRACTION * n))
    if n_pilot < 1 or n - n_pilot < 1:
        raise ValueError(f"latent frames of shape {shape} are too small to hold pilots and payload")
    if t * (n - n_pilot) < N_CODE_BITS:
        raise ValueError(f"latent shape {shape} has fewer payload positions than the {N_CODE_BITS} code bits")
    return n, n_pilot


@lru_cache(maxsize=32)
def _layout(secret: bytes, shape: tuple[int, int, int, int]) -> _Layout:
    c, n_frames, h, w = shape
    n, n_pilot = _frame_counts(shape)
    n_payload = n - n_pilot
    keystream = np.empty((n_frames, n), dtype=np.uint8)
    perms = np.empty((n_frames, n), dtype=np.int64)
    for t in range(n_frames):
        sign_bytes = _chacha20(secret, _nonce(b"sign", shape, t), (n + 7) // 8)
        keystream[t] = np.unpackbits(np.frombuffer(sign_bytes, dtype=np.uint8))[:n]
        words = np.frombuffer(_chacha20(secret, _nonce(b"perm", shape, t), 8 * n), dtype="<u8")
        perms[t] = np.argsort(words, kind="stable")
    rows = np.arange(n_frames)[:, None]
    pilot_idx = perms[:, :n_pilot]
    payload_idx = perms[:, n_pilot:]
    payload_code = (np.arange(n_payload)[None, :] + rows * n_payload) % N_CODE_BITS
    layout = _Layout(
        n_pilot=n_pilot,
        pilot_idx=pilot_idx,
        pilot_sign=(2.0 * keystream[rows, pilot_idx] - 1.0).astype(np.float32),
        payload_idx=payload_idx,
        payload_code=payload_code,
        payload_flip=(1.0 - 2.0 * keystream[rows, payload_idx]).astype(np.float32),
        keystream=keystream,
    )
    for arr in (layout.pilot_idx, layout.pilot_sign, layout.payload_idx, layout.payload_code,
                layout.payload_flip, layout.keystream):
        arr.setflags(write=False)
    return layout


def _template_bits(layout: _Layout, code: np.ndarray) -> np.ndarray:
    """(T, N) uint8 template bits in frame-flat order."""
    bits = layout.keystream.copy()
    rows = np.arange(bits.shape[0])[:, None]
    bits[rows, layout.payload_idx] ^= code[layout.payload_code]
    return bits


def _frames_to_latent(frames: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    c, t, h, w = shape
    return np.ascontiguousarray(frames.reshape(t, c, h, w).transpose(1, 0, 2, 3))


def _latent_to_frames(latent: np.ndarray) -> np.ndarray:
    c, t, h, w = latent.shape
    return latent.transpose(1, 0, 2, 3).reshape(t, c * h * w)


def _check_key(key) -> WatermarkKey:
    if not isinstance(key, WatermarkKey):
        raise TypeError(f"expected a WatermarkKey, got {type(key).__name__}")
    return key


def _check_payload(payload) -> Payload:
    if not isinstance(payload, Payload):
        raise TypeError(f"expected a Payload, got {type(payload).__name__}")
    return payload


# ------------------------------------------------------------------------------------------ embedding


def template(key: WatermarkKey, payload: Payload, latent_shape) -> np.ndarray:
    """The sign (int8, +-1) each element of a latent marked with ``(key, payload)`` has; shape ``(C, T, H, W)``."""
    shape, _ = _normalise_shape(latent_shape)
    code = ecc.encode(_check_payload(payload).to_bits())
    bits = _template_bits(_layout(_check_key(key).secret, shape), code)
    return _frames_to_latent((2 * bits.astype(np.int8) - 1), shape)


def embed(key: WatermarkKey, payload: Payload, latent_shape, seed: int) -> torch.Tensor:
    """Marked initial noise (float32 tensor of ``latent_shape``, batch dim kept if given).

    Element ``i`` is ``ndtri((bit_i + u_i) / 2)`` with ``bit_i`` the template bit and ``u`` drawn (C-order over
    ``(C, T, H, W)``) from ``numpy.random.default_rng(seed)``: marginally exactly N(0, 1), deterministic in
    ``(key, payload, latent_shape, seed)``.
    """
    shape, batched = _normalise_shape(latent_shape)
    bits = template(key, payload, shape) > 0  # (C, T, H, W) bool
    u = np.random.default_rng(seed).random(shape)
    np.clip(u, _U_EPS, 1.0 - _U_EPS, out=u)
    z = ndtri((bits + u) * 0.5).astype(np.float32)
    out = torch.from_numpy(z)
    return out.unsqueeze(0) if batched else out


# ------------------------------------------------------------------------------------------ extraction


def n_alignments(t_rec: int, t_tpl: int) -> int:
    """The Bonferroni factor A of :func:`extract`.

    ``T_tpl ** T_rec`` (the number of frame alignments searched), or, if larger (only when both are <= 3), the
    number of non-empty partial matchings between recovered and template frames that the statistic can use.
    """
    matchings = sum(math.comb(t_tpl, m) * math.perm(t_rec, m) for m in range(1, min(t_rec, t_tpl) + 1))
    return max(t_tpl ** t_rec, matchings)


@dataclass(frozen=True)
class Extraction:
    """The result of :func:`extract`. See that function for the meaning of each field."""

    detected: bool
    p_value: float
    fpr: float
    payload: Payload | None
    crc_ok: bool
    bit_accuracy: float
    pilot_agreement: float
    key_id: str
    frame_matrix: np.ndarray
    frame_assignment: tuple[int, ...]
    frame_agreement: np.ndarray
    cell_agreement: np.ndarray
    log10_p_value: float = 0.0  # log10 of p_value, finite even where p_value underflows to 0.0
    # the 64 bits soft Viterbi chose, whether or not the mark was detected: for measuring payload bit accuracy,
    # meaningless as evidence (an unmarked clip decodes to some 64 bits too)
    decoded_bits: np.ndarray | None = None
    # (T_rec, T_tpl) sign agreement of each recovered frame with each template frame of the decoded payload, over
    # ``template_elements`` elements per frame (all usable ones, not only pilots)
    template_matrix: np.ndarray | None = None
    template_elements: int = 0
    # (rows, columns) of latent cells by which the recovered latent was moved onto the template (``reach``): the
    # offset of a crop that was not centred; (0, 0) when none was searched
    shift: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict:
        """JSON-friendly dict (plain Python types; agreements rounded to 4 decimals, p-values to 4 digits)."""

        def r4(a):
            return np.round(np.asarray(a, dtype=np.float64), 4).tolist()

        return {
            "detected": bool(self.detected),
            "p_value": float(f"{self.p_value:.4g}"),
            "log10_p_value": round(float(self.log10_p_value), 3),
            "fpr": float(self.fpr),
            "payload": self.payload.hex if self.payload is not None else None,
            "clip_id": self.payload.clip_id if self.payload is not None else None,
            "crc_ok": bool(self.crc_ok),
            "bit_accuracy": round(float(self.bit_accuracy), 4),
            "pilot_agreement": round(float(self.pilot_agreement), 4),
            "key_id": self.key_id,
            "frame_matrix": r4(self.frame_matrix),
            "frame_assignment": [int(k) for k in self.frame_assignment],
            "frame_agreement": r4(self.frame_agreement),
            "cell_agreement": r4(self.cell_agreement),
        }


def _usable_elements(mask, c: int, h: int, w: int) -> np.ndarray:
    """Boolean (C*H*W,) in the flat element order of a latent frame: True where ``mask`` (H, W) allows."""
    if mask is None:
        return np.ones(c * h * w, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (h, w):
        raise ValueError(f"mask must have the latent's spatial shape {(h, w)}, got {mask.shape}")
    if not mask.any():
        raise ValueError("mask selects no position")
    return np.broadcast_to(mask, (c, h, w)).reshape(-1)


def _sign_matches(signs: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(T_rec, T_tpl) int64: at how many positions recovered frame j's sign equals template row k's, where
    ``signs`` are sign(z) in {-1, 0, 1} and ``template`` holds +-1 at the positions that count and 0 elsewhere.
    An element matches iff a * b = 1, so the count is (sum |a||b| + sum a b) / 2: two matrix products instead of a
    (T_rec, T_tpl, N) array (176 MB and most of extract's time for one Wan 2.1 480p clip). Sums of 0 and +-1 are
    exact integers in float32 below 2**24 terms, float64 beyond."""
    exact = np.float32 if signs.shape[1] < 2 ** 24 else np.float64
    a, b = signs.astype(exact, copy=False), template.astype(exact, copy=False)
    both = np.abs(a) @ np.abs(b).T
    agree = a @ b.T
    return np.rint((both + agree) / 2).astype(np.int64)


def _pilot_rows(pilot_idx, pilot_sign, n_frames: int, n: int) -> np.ndarray:
    """(n_frames, n) float32: template frame k's pilot signs at its pilot positions, 0 elsewhere."""
    rows = np.zeros((n_frames, n), dtype=np.float32)
    for k in range(n_frames):
        rows[k, pilot_idx[k]] = pilot_sign[k]
    return rows


# The share of a test's level that a search over offsets (``extract``'s ``reach``) keeps for the centred one, in a
# weighted union bound: the centred reading is paid log(1 / share), any other log((offsets - 1) / (1 - share)).
# A crop is most often centred; at a reach of (2, 2) this makes its price log10(2) = 0.3 instead of log10(25) = 1.4,
# and an off-centre one's 1.7.
CENTRED_SHARE = 0.5


def shifts(reach: tuple[int, int]) -> int:
    """How many spatial offsets :func:`extract` searches for ``reach`` (the terms of its union bound)."""
    return (2 * int(reach[0]) + 1) * (2 * int(reach[1]) + 1)


def _register(layout: _Layout, z: np.ndarray, mask: np.ndarray, reach: tuple[int, int]) -> tuple[int, int]:
    """The offset d (latent cells, at most ``reach`` per axis) at which the recovered latent's signs, where
    ``mask`` allows, best match the template's pilots (recovered cell q + d against template cell q; frames taken
    in order): the registration of a crop whose position is unknown. Every offset at once, as cross-correlations
    (FFT) of the sign field with the pilot field, scored by the pilots' binomial z-score so that offsets keeping
    fewer cells are not favoured by chance. Chosen from the data: :func:`extract` pays for the choice with the
    factor :func:`shifts`."""
    from scipy.signal import fftconvolve

    c, t, h, w = z.shape
    t_use = min(t, layout.keystream.shape[0])
    signs = np.sign(z[:, :t_use]) * mask[None, None]
    pilots = _pilot_rows(layout.pilot_idx, layout.pilot_sign, t_use, c * h * w)
    flipped = _frames_to_latent(pilots, (c, t_use, h, w))[..., ::-1, ::-1]
    agree = fftconvolve(signs, flipped, mode="full", axes=(2, 3)).sum(axis=(0, 1))
    count = fftconvolve(np.abs(signs), np.abs(flipped), mode="full", axes=(2, 3)).sum(axis=(0, 1))
    best, best_score = (0, 0), -math.inf
    for dy in range(-int(reach[0]), int(reach[0]) + 1):
        for dx in range(-int(reach[1]), int(reach[1]) + 1):
            n = count[h - 1 + dy, w - 1 + dx]
            if n >= 0.5 and agree[h - 1 + dy, w - 1 + dx] / math.sqrt(n) > best_score:
                best, best_score = (dy, dx), agree[h - 1 + dy, w - 1 + dx] / math.sqrt(n)
    return best


def _moved(z: np.ndarray, mask: np.ndarray, d: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``z`` and ``mask`` moved so that template cell q holds recovered cell q + d; cells moved in from outside
    the latent are left out of the mask."""
    dy, dx = d
    h, w = mask.shape
    moved, kept = np.zeros_like(z), np.zeros_like(mask)
    src_y, dst_y = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h + min(0, -dy))
    src_x, dst_x = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w + min(0, -dx))
    moved[..., dst_y, dst_x] = z[..., src_y, src_x]
    kept[dst_y, dst_x] = mask[src_y, src_x]
    return moved, kept


@dataclass(frozen=True)
class _Reading:
    """Steps 1 and 2 of :func:`extract` on one placement of the recovered latent: the frame alignment and the
    tail bound of the detection statistic (natural log), before any union-bound factor."""

    frames: np.ndarray  # (T_rec, N) recovered values
    usable: np.ndarray  # (N,) elements the mask allows
    signs: np.ndarray  # (T_rec, N) their signs
    frame_matrix: np.ndarray
    assignment: np.ndarray
    pilot_agreement: float
    log_sf: float


def _read(layout: _Layout, z: np.ndarray, mask, t_tpl: int) -> _Reading:
    c, _, h, w = z.shape
    frames = _latent_to_frames(z)  # (T_rec, N)
    usable = _usable_elements(mask, c, h, w)
    pilot_idx = [idx[usable[idx]] for idx in layout.pilot_idx]
    pilot_sign = [sign[usable[idx]] for idx, sign in zip(layout.pilot_idx, layout.pilot_sign)]
    n_pilot = np.array([len(idx) for idx in pilot_idx], dtype=np.int64)  # per template frame

    # 1. frame alignment by pilot agreement, counted with matrix products (_sign_matches)
    pilots = _pilot_rows(pilot_idx, pilot_sign, t_tpl, frames.shape[1])
    signs = np.sign(frames).astype(np.float32)
    matches = _sign_matches(signs, pilots)
    frame_matrix = matches / np.maximum(n_pilot, 1)
    assignment = frame_matrix.argmax(axis=1)

    # 2. detection statistic over one representative recovered frame per used template frame: its pilots and its
    # payload replicas, the key stream removed (evidence.py)
    used = np.unique(assignment)
    representative = {int(k): int(np.flatnonzero(assignment == k)[matches[assignment == k, k].argmax()])
                      for k in used}
    m_total = int(sum(matches[representative[k], k] for k in representative))
    n_total = int(n_pilot[used].sum())
    pilot_sum, pilot_count = 0.0, 0
    bit_sums = np.zeros(N_CODE_BITS, dtype=np.float64)
    bit_counts = np.zeros(N_CODE_BITS, dtype=np.int64)
    for k, j in representative.items():
        x = signs[j, pilot_idx[k]] * pilot_sign[k]
        pilot_sum += float(x.sum())
        pilot_count += int(np.count_nonzero(x))
        keep = usable[layout.payload_idx[k]]
        y = signs[j, layout.payload_idx[k][keep]] * layout.payload_flip[k][keep]
        code_of = layout.payload_code[k][keep]
        bit_sums += np.bincount(code_of, weights=y, minlength=N_CODE_BITS)
        bit_counts += np.bincount(code_of[y != 0], minlength=N_CODE_BITS)
    return _Reading(frames, usable, signs, frame_matrix, assignment, m_total / n_total,
                    evidence.log_sf(pilot_sum, pilot_count, bit_sums, bit_counts))


def extract(key: WatermarkKey, z_hat, fpr: float = 1e-6, cell: int = 4, template_frames: int | None = None,
            mask=None, reach: tuple[int, int] = (0, 0)) -> Extraction:
    """Detect the watermark of ``key`` in recovered initial noise ``z_hat`` and decode its payload.

    ``z_hat``: ``(C, T_rec, H, W)`` or ``(1, C, T_rec, H, W)``, torch or numpy. ``template_frames`` is the number
    of latent frames the clip was generated with (default ``T_rec``; pass it when frames may have been dropped
    or added, since the key stream depends on the generated shape). ``mask`` (optional, boolean ``(H, W)``):
    the latent positions that can carry the mark, e.g. the interior after a crop was undone; detection and
    decoding then use only those positions (in every channel and frame). It must be chosen without looking at
    ``z_hat`` for the p-value to stay exact; the maps still cover every position. ``reach`` (rows, columns of
    latent cells): the recovered latent may sit off the template by up to this much (a crop whose position is
    unknown); the offset is found from the pilots (:func:`_register`, reported as ``shift``), the centred
    reading is kept when it is the stronger after the price of each, and the p-value multiplied by that price
    (:data:`CENTRED_SHARE`, a weighted union bound over the :func:`shifts` offsets), so that it stays exact.

    1. **Frame alignment.** ``frame_matrix[j, k]`` is the fraction of template frame ``k``'s pilot positions at
       which recovered frame ``j`` has the pilot's sign. Each recovered frame ``j`` is assigned
       ``k*_j = argmax_k frame_matrix[j, k]`` (``frame_assignment``), which survives swapped, dropped or
       duplicated latent frames.
    2. **Detection.** For every template frame ``k`` used by the assignment, the recovered frame assigned to it
       with the most pilot matches is its representative. The statistic (``evidence.statistic``) adds up, over
       the representatives, the pilots' sign matches and the agreement among the replicas of each code bit once
       the key stream is removed (all of a marked latent's elements, not only its pilots, whatever the payload).
       The p-value is ``min(1, A * B)``: ``B`` bounds its tail under "not marked" (``evidence.log_sf``), and the
       Bonferroni factor ``A = T_tpl ** T_rec`` covers the alignments searched (:func:`n_alignments`; it is
       raised to the number of partial frame matchings in the rare tiny cases, T <= 3, where that count is
       larger). ``detected`` is ``p_value <= fpr``.

       Why the bound holds whatever the content: under "not marked with this key", ``z_hat`` is independent of
       the key. Fix any one matching of recovered frames to distinct template frames. Each pilot sign is a
       key-stream bit, each replica's sign a key-stream bit XOR its code bit, and the elements involved are
       distinct key-stream bits (distinct positions of one frame's stream, or different frames' streams under
       different nonces), so given ``z_hat`` (and the keyed positions, which come from an independent stream)
       every sign match, key stream removed, is an independent fair coin: whatever sign an element has, it
       matches a fair coin with probability exactly 1/2 (an element that is exactly 0 is not counted). Counting
       two recovered frames against the *same* template frame would reuse key-stream bits and break this (e.g.
       a static unmarked video whose frames all look alike), which is why each template frame contributes one
       representative. The union bound over the ``A`` candidate matchings then makes
       ``P(p_value <= alpha) <= alpha`` for the data-chosen one; the test is conservative, so null p-values are
       stochastically larger than uniform. The only assumption is that ChaCha20 is a pseudo-random function.
    3. **Payload.** Each recovered frame's payload positions (of its assigned template frame) are multiplied
       by ``1 - 2 * keystream`` (positive means code bit 1), divided by their RMS, weighted by the frame's
       reliability ``clip(2 * pilot_agreement - 1, 0, 1)`` (so a frame of foreign noise adds ~nothing; equal
       weights are used if all are 0), summed per code bit and decoded with soft Viterbi; the 64 bits give the
       payload and ``crc_ok``. ``payload`` is None and ``crc_ok`` False unless detected.
    4. **Maps.** The full template of the decoded payload, aligned by ``frame_assignment``, gives per-element
       sign agreement: ``frame_agreement`` ``(T_rec,)``, ``cell_agreement`` ``(T_rec, H // cell, W // cell)``
       (averaged over channels and the cell's ``cell x cell`` positions; a remainder strip is ignored) and
       ``bit_accuracy`` (all elements). Computed whether or not the mark was detected.

    ``pilot_agreement`` is ``M / n`` from step 2.
    """
    key = _check_key(key)
    fpr = float(fpr)
    if not 0.0 < fpr <= 1.0:
        raise ValueError(f"fpr must be in (0, 1], got {fpr}")
    if int(cell) < 1:
        raise ValueError(f"cell must be a positive integer, got {cell}")
    cell = int(cell)
    z, (c, t_rec, h, w) = _as_array(z_hat)
    t_tpl = t_rec if template_frames is None else int(template_frames)
    if t_tpl < 1:
        raise ValueError(f"template_frames must be positive, got {template_frames}")
    if min(int(r) for r in reach) < 0:
        raise ValueError(f"reach must be non-negative, got {reach}")
    shape = (c, t_tpl, h, w)
    layout = _layout(key.secret, shape)
    shift = (0, 0)
    reading = _read(layout, z, mask, t_tpl)
    log_offsets = 0.0  # the union bound's price of the offset reported (``reach``)
    if shifts(reach) > 1:  # registration: move the recovered latent onto the template first
        plane = np.ones((h, w), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        shift = _register(layout, z, plane, reach)
        log_offsets = -math.log(CENTRED_SHARE)
        if shift != (0, 0):
            z_moved, mask_moved = _moved(z, plane, shift)
            moved = _read(layout, z_moved, mask_moved, t_tpl)
            log_moved = math.log((shifts(reach) - 1) / (1.0 - CENTRED_SHARE))
            if moved.log_sf + log_moved < reading.log_sf + log_offsets:
                reading, log_offsets = moved, log_moved
            else:
                shift = (0, 0)
    frames, usable, signs, assignment = reading.frames, reading.usable, reading.signs, reading.assignment
    frame_matrix = reading.frame_matrix
    log_p = min(0.0, math.log(n_alignments(t_rec, t_tpl)) + log_offsets + reading.log_sf)
    p_value = math.exp(log_p)
    detected = p_value <= fpr

    # 3. payload: weighted, RMS-normalised soft values per code bit -> soft Viterbi
    rows = np.arange(t_rec)
    reliability = np.clip(2.0 * frame_matrix[rows, assignment] - 1.0, 0.0, 1.0)
    if not np.any(reliability > 0):
        reliability = np.ones(t_rec)
    soft = np.zeros(N_CODE_BITS, dtype=np.float64)
    for j in range(t_rec):
        k = assignment[j]
        keep = usable[layout.payload_idx[k]]
        vals = frames[j, layout.payload_idx[k][keep]].astype(np.float64) * layout.payload_flip[k][keep]
        rms = math.sqrt(float(np.mean(vals * vals))) if vals.size else 0.0
        if rms > 0.0 and reliability[j] > 0.0:
            soft += np.bincount(layout.payload_code[k][keep], weights=vals * (reliability[j] / rms),
                                minlength=N_CODE_BITS)
    decoded_bits = ecc.viterbi_decode(soft, PAYLOAD_BITS)
    decoded, crc_ok = Payload.from_bits(decoded_bits)

    # 4. agreement maps against the decoded payload's aligned template
    tpl_bits = _template_bits(layout, ecc.encode(decoded.to_bits()))  # (T_tpl, N)
    agree = (frames * (2.0 * tpl_bits[assignment].astype(np.float32) - 1.0)) > 0  # (T_rec, N)
    frame_agreement = agree.mean(axis=1)
    hc, wc = h // cell, w // cell
    cells = agree.reshape(t_rec, c, h, w)[:, :, : hc * cell, : wc * cell]
    cell_agreement = cells.reshape(t_rec, c, hc, cell, wc, cell).mean(axis=(1, 3, 5))
    # every recovered frame against every template frame, on all usable elements (an exact 0 never matches, as
    # above): 4x the pilots' evidence, which is what tamper decisions about single frames need
    tpl_signs = (2 * tpl_bits[:, usable].astype(np.int8) - 1).astype(np.float32)  # (T_tpl, N_usable)
    template_matrix = _sign_matches(signs[:, usable], tpl_signs) / float(usable.sum())  # (T_rec, T_tpl)

    return Extraction(
        detected=bool(detected),
        p_value=float(p_value),
        fpr=fpr,
        payload=decoded if detected else None,
        crc_ok=bool(crc_ok and detected),
        bit_accuracy=float(agree.mean()),
        pilot_agreement=reading.pilot_agreement,
        key_id=key.key_id,
        frame_matrix=frame_matrix,
        frame_assignment=tuple(int(k) for k in assignment),
        frame_agreement=frame_agreement,
        cell_agreement=cell_agreement,
        log10_p_value=log_p / math.log(10.0),
        decoded_bits=np.asarray(decoded_bits, dtype=np.uint8),
        template_matrix=template_matrix.astype(np.float64),
        template_elements=int(usable.sum()),
        shift=(int(shift[0]), int(shift[1])),
    )
