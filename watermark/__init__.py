"""The latent watermark codec (pure numpy/torch: no diffusers, no c2pa, no file I/O).

A keyed, sign-modulated Gaussian watermark in the initial noise z_T of the video diffusion model (see
``docs/watermark.md``): :func:`embed` draws marked N(0, 1) noise carrying a 64-bit :class:`Payload` (48-bit clip id
+ CRC-16) under a 256-bit :class:`WatermarkKey`; :func:`extract` takes recovered initial noise and returns an
:class:`Extraction` with a calibrated p-value, the decoded payload, frame alignment and tamper-localisation maps.
"""

from .codec import PILOT_FRACTION, Extraction, embed, extract, template
from .key import WatermarkKey
from .payload import CLIP_ID_BITS, CRC_BITS, PAYLOAD_BITS, Payload

__all__ = [
    "CLIP_ID_BITS",
    "CRC_BITS",
    "PAYLOAD_BITS",
    "PILOT_FRACTION",
    "Extraction",
    "Payload",
    "WatermarkKey",
    "embed",
    "extract",
    "template",
]
