"""The 64-bit watermark payload: a 48-bit clip id followed by its CRC-16/CCITT-FALSE."""

from __future__ import annotations

import random as _random
import secrets
from dataclasses import dataclass

import numpy as np

CLIP_ID_BITS = 48
CRC_BITS = 16
PAYLOAD_BITS = CLIP_ID_BITS + CRC_BITS  # 64


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 (check("123456789") == 0x29B1)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _int_to_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def _bits_to_int(bits: np.ndarray) -> int:
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


@dataclass(frozen=True)
class Payload:
    """A clip id, 0 <= clip_id < 2**48."""

    clip_id: int

    def __post_init__(self) -> None:
        cid = self.clip_id
        if isinstance(cid, np.integer):
            cid = int(cid)
            object.__setattr__(self, "clip_id", cid)
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise ValueError(f"clip_id must be an int, got {type(cid).__name__}")
        if not 0 <= cid < (1 << CLIP_ID_BITS):
            raise ValueError(f"clip_id must be in [0, 2**{CLIP_ID_BITS}), got {cid}")

    @classmethod
    def random(cls, rng: _random.Random | None = None) -> "Payload":
        """A uniformly random clip id: from ``secrets`` when ``rng`` is None, else from ``rng.getrandbits``."""
        bits = secrets.randbits(CLIP_ID_BITS) if rng is None else rng.getrandbits(CLIP_ID_BITS)
        return cls(bits)

    @property
    def crc(self) -> int:
        """CRC-16/CCITT-FALSE of the 6 big-endian clip-id bytes."""
        return crc16_ccitt_false(self.clip_id.to_bytes(CLIP_ID_BITS // 8, "big"))

    def to_bits(self) -> np.ndarray:
        """(64,) uint8: the 48 clip-id bits MSB first, then the 16 CRC bits MSB first."""
        return np.concatenate([_int_to_bits(self.clip_id, CLIP_ID_BITS), _int_to_bits(self.crc, CRC_BITS)])

    @classmethod
    def from_bits(cls, bits) -> tuple["Payload", bool]:
        """Parse 64 bits (0/1) into ``(payload, crc_ok)``; ``crc_ok`` says whether the CRC field matches."""
        arr = np.asarray(bits).reshape(-1)
        if arr.size != PAYLOAD_BITS:
            raise ValueError(f"expected {PAYLOAD_BITS} payload bits, got {arr.size}")
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("payload bits must be 0 or 1")
        arr = arr.astype(np.uint8)
        payload = cls(_bits_to_int(arr[:CLIP_ID_BITS]))
        return payload, _bits_to_int(arr[CLIP_ID_BITS:]) == payload.crc

    @property
    def hex(self) -> str:
        """16 lowercase hex chars of the 64 payload bits (12 for the clip id, then 4 for the CRC)."""
        return f"{self.clip_id:012x}{self.crc:04x}"

    @property
    def clip_hex(self) -> str:
        """The 12 lowercase hex chars of the clip id."""
        return f"{self.clip_id:012x}"

    def to_bytes(self) -> bytes:
        """The 8 payload bytes (clip id big-endian, then the CRC), as a C2PA soft-binding assertion holds them."""
        return bytes.fromhex(self.hex)

    @classmethod
    def from_hex(cls, text: str) -> "Payload":
        """The one parser of written payloads: 16 hex digits (clip id + CRC, the CRC checked) or 12 (a clip id),
        optionally with ``0x``. Raises ValueError saying what is wrong."""
        value = str(text).strip().lower().removeprefix("0x")
        if len(value) not in (12, 16) or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(f"expected a payload (16 hex digits) or a clip id (12 hex digits), got {text!r}")
        payload = cls(int(value[:12], 16))
        if len(value) == 16 and payload.hex != value:
            raise ValueError(f"payload {value} fails its CRC (expected {payload.hex} for clip id {value[:12]}): it "
                             f"was not read correctly")
        return payload

    @classmethod
    def from_bytes(cls, data: bytes) -> "Payload":
        """Inverse of :meth:`to_bytes` (the CRC checked)."""
        if len(data) != PAYLOAD_BITS // 8:
            raise ValueError(f"a payload is {PAYLOAD_BITS // 8} bytes, got {len(data)}")
        return cls.from_hex(bytes(data).hex())
