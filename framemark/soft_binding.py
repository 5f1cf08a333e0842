"""framemark's C2PA soft binding: the algorithm id its manifests declare, and the wire form of a binding value.

A marked clip's manifest holds a ``c2pa.soft-binding`` assertion whose ``alg`` is :data:`SOFT_BINDING_ALG` and
whose one block's ``value`` is the 8 payload bytes of its watermark (``Payload.to_bytes``: 48-bit clip id,
big-endian, then CRC-16). Where a binding value travels as text (the C2PA Soft Binding Resolution API), it is
base64 of exactly those bytes. This module is the one home of both, and imports no c2pa: the manifest builder
(``framemark.provenance``) and the service (``framemark.serve``) share it without the service loading c2pa.
"""

from __future__ import annotations

import base64
import binascii

from framemark.watermark import Payload

# Not on the C2PA soft-binding algorithm list, so a reverse-domain id of our own. Version 1 = the latent-noise
# watermark of framemark.watermark, readable only with the key the generation assertion's `watermark.key_id` names.
SOFT_BINDING_ALG = "org.framemark.latent-noise.v1"
PAYLOAD_BYTES = 8
# longer text cannot be base64 of 8 bytes, however padded: refused before decoding
_MAX_VALUE_CHARS = 64


def encode_value(payload: Payload) -> str:
    """The wire form of a payload: standard base64 of its 8 bytes, as the assertion holds them."""
    return base64.b64encode(payload.to_bytes()).decode("ascii")


def decode_value(value: str) -> Payload:
    """A binding value as a client sends it -> the payload, its CRC checked. Lenient in what base64 means
    (standard or URL-safe, padding optional, and a '+' that a query string turned into a space), strict in what it
    must decode to. Raises ValueError saying what is wrong."""
    text = (value or "").strip().replace(" ", "+")
    if not text or len(text) > _MAX_VALUE_CHARS:
        raise ValueError(f"value must be base64 of the {PAYLOAD_BYTES} watermark payload bytes")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("value is not base64") from None
    if len(raw) != PAYLOAD_BYTES:
        raise ValueError(f"value must decode to the {PAYLOAD_BYTES} watermark payload bytes (got {len(raw)})")
    return Payload.from_bytes(raw)


__all__ = ["SOFT_BINDING_ALG", "PAYLOAD_BYTES", "encode_value", "decode_value"]
