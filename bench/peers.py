"""The post-hoc watermarks framemark is compared with, behind one small interface (bench/robustness.py).

Each peer marks finished frames (it never sees the generator) and reads bits back from frames, one frame at a
time, as the `invisible-watermark` package (the watermark Stable Diffusion's reference scripts apply) does for
images. A clip's bits are the per-bit majority over its frames. Peers are an optional extra
(`pip install 'framemark[bench]'`), not runtime dependencies.

    dwtDct     invisible-watermark's default: Haar DWT, then in each 4x4 block of the approximation band the
               largest DCT coefficient quantised to carry one bit (U channel, step 36), bits repeated over blocks
    dwtDctSvd  the same, with the block's largest singular value carrying the bit (its more robust variant)
    rivaGan    RivaGAN (Zhang et al. 2019), a learned video watermark; the package ships its ONNX encoder and
               decoder. 32 bits, its fixed size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Peer:
    name: str
    bits: int

    def embed(self, frames: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (T,H,W,3) and ``self.bits`` 0/1 bits -> marked uint8 RGB frames."""
        raise NotImplementedError

    def soft_bits(self, frames: np.ndarray) -> np.ndarray:
        """(T, bits) per-frame readings in [0, 1] (1 = bit one); the clip's bits are their mean > 0.5."""
        raise NotImplementedError

    def decode(self, frames: np.ndarray) -> np.ndarray:
        return (self.soft_bits(frames).mean(axis=0) > 0.5).astype(np.uint8)


class FrequencyPeer(Peer):
    """invisible-watermark's frequency methods through its low-level classes (its high-level API refuses frames
    under 256x256; the low-level ones work at any size the 4x4 blocks fit)."""

    def __init__(self, name: str, bits: int = 64):
        super().__init__(name, bits)
        from imwatermark import dwtDctSvd, maxDct  # noqa: F401  (import error = extra not installed)

        self._module = dwtDctSvd if name == "dwtDctSvd" else maxDct
        self._cls = dwtDctSvd.EmbedDwtDctSvd if name == "dwtDctSvd" else maxDct.EmbedMaxDct

    def embed(self, frames, bits):
        coder = self._cls(watermarks=[int(b) for b in bits], wmLen=self.bits)  # the package's default scales
        return np.stack([cv2.cvtColor(coder.encode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)
                         for f in frames])

    def soft_bits(self, frames):
        coder = self._cls(watermarks=[], wmLen=self.bits)
        return np.stack([np.asarray(coder.decode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR)), dtype=np.float64)
                         for f in frames])


class RivaGanPeer(Peer):
    """RivaGAN through the ONNX models invisible-watermark ships, run with onnxruntime on the CPU."""

    def __init__(self):
        super().__init__("rivaGan", 32)
        from imwatermark import rivaGan

        rivaGan.RivaWatermark.loadModel()
        self._riva = rivaGan.RivaWatermark

    def embed(self, frames, bits):
        coder = self._riva(watermarks=[int(b) for b in bits], wmLen=32)
        return np.stack([cv2.cvtColor(coder.encode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)
                         for f in frames])

    def soft_bits(self, frames):
        """The package's ``RivaWatermark.decode`` (BGR frame scaled to [-1, 1], one-frame video, output above
        its 0.52 threshold), for all frames in one batch of the ONNX decoder."""
        bgr = frames[..., ::-1].astype(np.float32) / 127.5 - 1.0  # (T, H, W, 3)
        batch = np.ascontiguousarray(bgr.transpose(0, 3, 1, 2)[:, :, None])  # (T, 3, 1, H, W)
        out = self._riva.decoder.run(None, {"frame": batch})[0]
        return (out > self._riva(watermarks=[], wmLen=32)._threshold).astype(np.float64)


PEERS = ("dwtDct", "dwtDctSvd", "rivaGan")


def load(name: str) -> Peer:
    """The peer called ``name``; ImportError names the extra when invisible-watermark is missing."""
    try:
        return RivaGanPeer() if name == "rivaGan" else FrequencyPeer(name)
    except ImportError as exc:
        raise ImportError(f"peer {name} needs invisible-watermark and onnxruntime: pip install 'framemark[bench]' "
                          f"({exc})") from exc
