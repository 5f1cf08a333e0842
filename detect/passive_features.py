"""The features step of the passive synthetic-footage classifier (``detect/classifier.py``): clips in, the
(n_samples, n_features) matrix its estimator takes out.

Kept apart from the estimator, as scikit-learn keeps transformers apart from classifiers: the features need an
autoencoder and any clip shape, the estimator only a matrix, so it can be fitted and measured on stored feature
matrices (``lab/passive_training.py``, ``heldout_features.npz``) without a video or a VAE in sight.

Pure functions: uint8 frames (T,H,W,3) in, a fixed-length float vector with named entries out. Every clip is
first brought to one canonical window (``prepare_clip``: 17 frames at ~8 fps, centre square, 128x128, the
default model's own format), so that frame size and rate, which differ between any two sources, cannot stand in
for "synthetic" and features of a generated clip and a camera clip are measured on the same grid.
``PassiveFeatures`` (or ``clip_features``) is the whole step for one autoencoder.

Four families of signals, each after a published training-free detector (docs/classifier.md says what each
weighs in the shipped model):

``spec_*``  spectral energy of high-pass residuals. Upsampling layers of a decoder leave periodic peaks in the
            spectrum of the residual at multiples of 1/8 and 1/16 cycles per pixel (8x VAE, 2x2 patches); camera
            footage has a smoothly falling spectrum. Measured per frame, averaged over the window.
``noise_*`` noise-residual statistics: spread, tails, cross-channel correlation and the share of residual in
            flat regions (sensor noise lives there; decoders paint flat regions clean).
``temp_*``  first- and second-order temporal differences (as D3 does on encoder features, here on pixels and on
            a coarse 8x8-cell grid): their size, their ratio and how much they fluctuate over time, and how
            much the high-pass residual persists from frame to frame.
``vae_*``   reconstruction error through the default model's autoencoder (AEROBLADE): what the decoder made,
            the encoder-decoder pair reproduces almost exactly; camera footage loses detail.

Everything is vectorised numpy (FFT, box filters by cumulative sums) plus one batched autoencoder pass.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# The canonical window: the default model's clip format.
WINDOW_FRAMES = 17
WINDOW_SIZE = 128
WINDOW_FPS = 8.0
# A longer upload is scored on at most this many windows (``window_starts``).
MAX_WINDOWS = 6
# What goes through the VAE: the central VAE_CROP x VAE_CROP pixels of these frames, each as a one-frame clip
# (the causal Wan VAE encodes a clip's first frame on its own, as an image). The VAE decoder is the one costly
# part of the features on a CPU (~0.35 s for one 128x128 frame on 2 cores), so it sees two crops of a quarter
# of the frame: AEROBLADE's error is a per-pixel statistic and needs no whole frame.
VAE_FRAMES = (0, 8)
VAE_CROP = 64

FEATURES_VERSION = "1"

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _grid_points(n: int, period: int) -> np.ndarray:
    """FFT bins (of an n-point axis, fftshifted) at multiples of 1/period cycles per pixel, centre excluded."""
    step = n // period
    centre = n // 2
    return np.array([centre + k * step for k in range(-(period // 2), period // 2 + 1)
                     if k != 0 and 0 <= centre + k * step < n])


# ------------------------------------------------------------------------------------------------ windowing

def window_stride(fps: float) -> int:
    """Frame step that brings a clip at ``fps`` nearest to the model's 8 fps (1 for 8 fps or slower)."""
    return max(1, int(round(float(fps) / WINDOW_FPS)))


def window_starts(num_frames: int, fps: float, most: int = MAX_WINDOWS) -> list[int]:
    """First frames of the windows a longer upload is scored on: as many as fit end to end, at most ``most``,
    spread evenly from its start to its end (the first is always frame 0: the score the threshold is set for)."""
    span = (WINDOW_FRAMES - 1) * window_stride(fps) + 1
    if num_frames <= span:
        return [0]
    n = min(most, -(-num_frames // span))
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - span, n)})


def square_resize(frames: np.ndarray, size: int = WINDOW_SIZE, box: tuple[int, int, int] | None = None) -> np.ndarray:
    """Crop a square (``box`` = top, left, side; default the centre square of the frame) and resize it to
    ``size`` x ``size``: area averaging when shrinking, bicubic when enlarging."""
    h, w = frames.shape[1:3]
    if box is None:
        side = min(h, w)
        box = ((h - side) // 2, (w - side) // 2, side)
    top, left, side = box
    crop = frames[:, top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in crop])


def prepare_clip(frames: np.ndarray, fps: float, start: int = 0) -> np.ndarray:
    """Any clip -> the canonical window (17, 128, 128, 3) uint8.

    Time: every ``window_stride(fps)``-th frame from ``start``; a clip too short for that is sampled uniformly
    over its whole length (frames repeat when it has fewer than 17). Space: the centre square, resized.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T,H,W,3), got {frames.dtype} {frames.shape}")
    stride = window_stride(fps)
    t = frames.shape[0]
    if start + (WINDOW_FRAMES - 1) * stride < t:
        idx = start + stride * np.arange(WINDOW_FRAMES)
    else:
        idx = np.round(np.linspace(0, t - 1, WINDOW_FRAMES)).astype(int)
    return square_resize(frames[idx])


# ------------------------------------------------------------------------------------------------ helpers

def _luma(frames: np.ndarray) -> np.ndarray:
    """(T,H,W,3) uint8 -> (T,H,W) float32 in [0, 1]."""
    return frames.astype(np.float32) @ (_LUMA / 255.0)


def _box3(x: np.ndarray) -> np.ndarray:
    """3x3 mean over the last two axes (edges replicated), for any leading shape."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return (rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]) / 9.0


def highpass(x: np.ndarray) -> np.ndarray:
    """The high-pass residual x - mean3x3(x) over the last two axes."""
    return x - _box3(x)


def _blocks(x: np.ndarray, b: int) -> np.ndarray:
    """(..., H, W) -> (..., H/b, W/b, b*b) non-overlapping b x b blocks."""
    *lead, h, w = x.shape
    x = x[..., : h - h % b, : w - w % b]
    h, w = x.shape[-2:]
    x = x.reshape(*lead, h // b, b, w // b, b)
    return np.moveaxis(x, -3, -2).reshape(*lead, h // b, w // b, b * b)


def _safe_log(x, eps: float = 1e-8):
    return np.log(np.maximum(x, 0.0) + eps)


def _kurtosis(x: np.ndarray) -> float:
    x = x.ravel().astype(np.float64)
    x = x - x.mean()
    v = (x * x).mean()
    return float((x ** 4).mean() / (v * v + 1e-20))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64) - a.mean()
    b = b.ravel().astype(np.float64) - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-20))


# ------------------------------------------------------------------------------------------------ families

def spectral_features(y: np.ndarray) -> dict[str, float]:
    """Spectrum of the high-pass residual of luma (T,H,W): radial band shares, grid peaks, slope."""
    t, h, w = y.shape
    r = highpass(y)
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.fftshift(np.fft.fft2(r * window), axes=(-2, -1))) ** 2  # (T,H,W)
    mean_power = power.mean(axis=0)
    fy = (np.arange(h) - h // 2) / h
    fx = (np.arange(w) - w // 2) / w
    radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    total = mean_power.sum() + 1e-20
    out: dict[str, float] = {}
    edges = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        out[f"spec_band{i}"] = float(mean_power[(radius >= lo) & (radius < hi)].sum() / total)
    # periodic peaks: log power on the 1/8 and 1/16 grids against the median of the 5x5 neighbourhood around
    # each grid point (the grid point itself and its own row/column excluded)
    log_p = _safe_log(mean_power, 1e-12)
    for period in (8, 16):
        gy, gx = _grid_points(h, period), _grid_points(w, period)
        ratios = []
        for py, px, axis in [(gy_, w // 2, "y") for gy_ in gy] + [(h // 2, gx_, "x") for gx_ in gx] + \
                [(gy_, gx_, "d") for gy_ in gy for gx_ in gx]:
            ys = np.clip(np.arange(py - 2, py + 3), 0, h - 1)
            xs = np.clip(np.arange(px - 2, px + 3), 0, w - 1)
            patch = log_p[np.ix_(ys, xs)].copy()
            patch[2, :] = np.nan
            patch[:, 2] = np.nan
            ratios.append(log_p[py, px] - np.nanmedian(patch))
        out[f"spec_grid{period}"] = float(np.mean(ratios))
    # spectral slope of the frames themselves (not the residual): log power against log radius
    raw = np.abs(np.fft.fftshift(np.fft.fft2((y - y.mean(axis=(1, 2), keepdims=True)) * window),
                                 axes=(-2, -1))) ** 2
    raw = raw.mean(axis=0)
    ring = np.clip((radius * h).astype(int), 0, h // 2)
    counts = np.bincount(ring.ravel(), minlength=h // 2 + 1)
    radial = np.bincount(ring.ravel(), weights=raw.ravel(), minlength=h // 2 + 1) / np.maximum(counts, 1)
    k = np.arange(2, h // 2)
    slope = np.polyfit(np.log(k), _safe_log(radial[k], 1e-12), 1)[0]
    out["spec_slope"] = float(slope)
    # how much the residual spectrum varies between frames (flicker of fine detail)
    frame_hi = power[:, radius >= 0.25].sum(axis=1) / (power.reshape(t, -1).sum(axis=1) + 1e-20)
    out["spec_hi_cv"] = float(frame_hi.std() / (frame_hi.mean() + 1e-12))
    return out


def noise_features(frames: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Statistics of the per-channel high-pass noise residual."""
    rgb = np.moveaxis(frames.astype(np.float32) / 255.0, -1, 1)  # (T,3,H,W)
    res = highpass(rgb)
    r_y = highpass(y)
    out = {"noise_log_std": float(np.log(r_y.std() + 1e-8)),
           "noise_kurtosis": float(np.log(_kurtosis(r_y))),
           "noise_rgb_corr": float(np.mean([_corr(res[:, 0], res[:, 1]), _corr(res[:, 1], res[:, 2]),
                                            _corr(res[:, 0], res[:, 2])]))}
    # residual energy per 8x8 block, against the block's own content activity (std of the block's pixels)
    block_res = _blocks(r_y, 8).std(axis=-1)  # (T,h,w)
    block_act = _blocks(y, 8).std(axis=-1)
    flat = block_act <= np.quantile(block_act, 0.25)
    out["noise_flat_share"] = float(np.log((block_res[flat].mean() + 1e-6) / (block_res.mean() + 1e-6)))
    q10, q50, q90 = np.quantile(block_res, [0.1, 0.5, 0.9])
    out["noise_block_q10"] = float(np.log(q10 + 1e-6))
    out["noise_block_spread"] = float(np.log((q90 + 1e-6) / (q50 + 1e-6)))
    # chroma residual against luma residual (4:2:0 and decoders treat colour detail differently)
    chroma = res.std(axis=1).mean()
    out["noise_chroma_ratio"] = float(np.log((chroma + 1e-6) / (r_y.std() + 1e-6)))
    return out


def temporal_features(y: np.ndarray) -> dict[str, float]:
    """First- and second-order temporal differences of luma (T,H,W), on pixels and on 8x8 cell means."""
    out: dict[str, float] = {}
    d1 = np.abs(np.diff(y, n=1, axis=0)).mean(axis=(1, 2))  # (T-1,)
    d2 = np.abs(np.diff(y, n=2, axis=0)).mean(axis=(1, 2))  # (T-2,)
    out["temp_d1_log"] = float(np.log(d1.mean() + 1e-6))
    out["temp_d2_log"] = float(np.log(d2.mean() + 1e-6))
    out["temp_d2_d1_ratio"] = float(np.log((d2.mean() + 1e-6) / (d1.mean() + 1e-6)))
    out["temp_d1_cv"] = float(d1.std() / (d1.mean() + 1e-6))
    out["temp_d2_cv"] = float(d2.std() / (d2.mean() + 1e-6))
    # D3-style on a coarse feature stream: 8x8 cell means as a (T, 256) feature trajectory
    cells = _blocks(y, 8).mean(axis=-1).reshape(y.shape[0], -1)
    c1 = np.linalg.norm(np.diff(cells, n=1, axis=0), axis=1)
    c2 = np.linalg.norm(np.diff(cells, n=2, axis=0), axis=1)
    out["temp_cell_d2_std"] = float(np.log(c2.std() + 1e-6))
    out["temp_cell_d2_d1_ratio"] = float(np.log((c2.mean() + 1e-6) / (c1.mean() + 1e-6)))
    # does the fine residual persist from frame to frame (texture) or renew (sensor noise)?
    r = highpass(y)
    a, b = r[:-1].reshape(r.shape[0] - 1, -1), r[1:].reshape(r.shape[0] - 1, -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    corr = (a * b).sum(axis=1) / (np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)) + 1e-20)
    out["temp_res_corr"] = float(corr.mean())
    out["temp_res_d1_ratio"] = float(np.log((np.abs(np.diff(r, axis=0)).mean() + 1e-6) / (np.abs(r).mean() + 1e-6)))
    return out


def vae_features(autoencoder, frames: np.ndarray) -> dict[str, float]:
    """AEROBLADE's signal: how well the autoencoder (``VideoAutoencoder``: the default model's) reproduces
    central crops of frames ``VAE_FRAMES``."""
    h, w = frames.shape[1:3]
    top, left = (h - VAE_CROP) // 2, (w - VAE_CROP) // 2
    sub = np.ascontiguousarray(frames[list(VAE_FRAMES), top:top + VAE_CROP, left:left + VAE_CROP])
    rec = autoencoder.reconstruct_images(sub)
    x = sub.astype(np.float32) / 255.0
    err = np.abs(rec - x).mean(axis=-1)  # (t,H,W)
    y, y_rec = x @ _LUMA, rec @ _LUMA
    hp_err = np.abs(highpass(y_rec) - highpass(y))
    texture = np.abs(highpass(y)).mean()
    block = _blocks(err, 8).mean(axis=-1)
    return {"vae_err_log": float(np.log(err.mean() + 1e-6)),
            "vae_hp_err_log": float(np.log(hp_err.mean() + 1e-6)),
            "vae_err_rel": float(np.log((hp_err.mean() + 1e-6) / (texture + 1e-6))),
            "vae_err_q90": float(np.log(np.quantile(block, 0.9) + 1e-6))}


FAMILIES = ("spec", "noise", "temp", "vae")


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    probe = np.zeros((WINDOW_FRAMES, 32, 32, 3), dtype=np.uint8)
    probe[:] = (np.arange(32, dtype=np.uint8) * 7)[None, :, None, None]
    return tuple(_base_features(probe)) + _VAE_NAMES


def feature_names() -> list[str]:
    """The names of ``extract``'s vector, in order (fixed for a features version)."""
    return list(_names())


_VAE_NAMES = ("vae_err_log", "vae_hp_err_log", "vae_err_rel", "vae_err_q90")


def _base_features(window: np.ndarray) -> dict[str, float]:
    y = _luma(window)
    return {**spectral_features(y), **noise_features(window, y), **temporal_features(y)}


def extract(window: np.ndarray, autoencoder=None) -> dict[str, float]:
    """Named features of a canonical window (``prepare_clip``'s output). Without ``autoencoder`` the ``vae_*``
    features are NaN (the classifier refuses such vectors; they exist for feature studies)."""
    if window.shape != (WINDOW_FRAMES, WINDOW_SIZE, WINDOW_SIZE, 3) or window.dtype != np.uint8:
        raise ValueError(f"expected a canonical window uint8 {(WINDOW_FRAMES, WINDOW_SIZE, WINDOW_SIZE, 3)}, "
                         f"got {window.dtype} {window.shape}: use prepare_clip first")
    feats = _base_features(window)
    feats.update(vae_features(autoencoder, window) if autoencoder is not None
                 else {n: float("nan") for n in _VAE_NAMES})
    return feats


def extract_vector(window: np.ndarray, autoencoder=None) -> np.ndarray:
    """``extract`` as a vector, in ``feature_names()`` order."""
    feats = extract(window, autoencoder)
    return np.array([feats[n] for n in feature_names()], dtype=np.float64)


def clip_features(frames: np.ndarray, fps: float, autoencoder) -> np.ndarray:
    """Any clip (uint8 frames (T,H,W,3) at ``fps``) -> its feature vector: ``prepare_clip``, then
    ``extract_vector`` with ``autoencoder`` (a ``VideoAutoencoder``: the one the classifier was trained with)."""
    return extract_vector(prepare_clip(frames, fps), autoencoder)


def family_of(name: str) -> str:
    return name.split("_", 1)[0]


class PassiveFeatures:
    """The features step as a stateless transformer: clips -> (n_samples, n_features) float64.

    It holds the autoencoder the ``vae_*`` features are measured with, given when it is made (a classifier
    trained on one autoencoder's traces must be fed that one; the model card names its weights' hash). Nothing
    is fitted: ``fit`` is there so that it reads like the scikit-learn transformer it is.
    """

    def __init__(self, autoencoder):
        if autoencoder is None:
            raise ValueError("PassiveFeatures needs the autoencoder its vae_* features are measured with")
        self.autoencoder = autoencoder

    def __repr__(self) -> str:
        return f"PassiveFeatures(autoencoder={type(self.autoencoder).__name__}, version={FEATURES_VERSION!r})"

    def fit(self, clips=None, y=None) -> "PassiveFeatures":
        return self

    def clip(self, frames: np.ndarray, fps: float = WINDOW_FPS) -> np.ndarray:
        """One clip's feature vector (n_features,)."""
        return clip_features(frames, fps, self.autoencoder)

    def transform(self, clips) -> np.ndarray:
        """``clips``: an iterable of (frames, fps) -> (n_samples, n_features)."""
        rows = [self.clip(frames, fps) for frames, fps in clips]
        return np.stack(rows) if rows else np.empty((0, len(_names())), dtype=np.float64)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array(feature_names(), dtype=object)
