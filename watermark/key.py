"""The watermark key: 256 secret bits plus a public 8-hex-digit identifier.

The secret keys ChaCha20, which produces every keyed quantity of the codec (element signs and the pilot/payload
layout). ``key_id`` is a one-way, domain-separated digest of the secret: it is safe to publish (it names the key
in reports and manifests) and reveals nothing usable about the secret.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

SECRET_BYTES = 32
KEY_FORMAT_VERSION = 1
_KEY_ID_DOMAIN = b"framemark-key-id\0"


def _key_id(secret: bytes) -> str:
    return hashlib.sha256(_KEY_ID_DOMAIN + secret).digest()[:4].hex()


@dataclass(frozen=True)
class WatermarkKey:
    """A 256-bit watermark key. ``repr``/``str`` show only the key id, never the secret."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        secret = self.secret
        if isinstance(secret, (bytearray, memoryview)):
            secret = bytes(secret)
            object.__setattr__(self, "secret", secret)
        if not isinstance(secret, bytes):
            raise ValueError(f"watermark key secret must be bytes, got {type(secret).__name__}")
        if len(secret) != SECRET_BYTES:
            raise ValueError(f"watermark key secret must be exactly {SECRET_BYTES} bytes, got {len(secret)}")

    @property
    def key_id(self) -> str:
        """8 lowercase hex chars: the first 4 bytes of sha256(b"framemark-key-id\\0" + secret)."""
        return _key_id(self.secret)

    @classmethod
    def generate(cls) -> "WatermarkKey":
        """A fresh key from the operating system's CSPRNG (``os.urandom``)."""
        return cls(os.urandom(SECRET_BYTES))

    def to_dict(self) -> dict:
        """``{"version": 1, "key_id": ..., "secret": <64 hex chars>}`` (contains the secret: store it privately)."""
        return {"version": KEY_FORMAT_VERSION, "key_id": self.key_id, "secret": self.secret.hex()}

    @classmethod
    def from_dict(cls, d: dict) -> "WatermarkKey":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming the problem on any bad or missing field."""
        if not isinstance(d, dict):
            raise ValueError(f"watermark key must be a dict, got {type(d).__name__}")
        for name in ("version", "key_id", "secret"):
            if name not in d:
                raise ValueError(f"watermark key dict is missing the field {name!r}")
        version = d["version"]
        if isinstance(version, bool) or version != KEY_FORMAT_VERSION:
            raise ValueError(f"unsupported watermark key version {version!r} (expected {KEY_FORMAT_VERSION})")
        secret_hex = d["secret"]
        if not isinstance(secret_hex, str) or len(secret_hex) != 2 * SECRET_BYTES:
            raise ValueError(f"watermark key secret must be a string of {2 * SECRET_BYTES} hex characters")
        try:
            secret = bytes.fromhex(secret_hex)
        except ValueError:
            raise ValueError("watermark key secret is not valid hex") from None
        key_id = d["key_id"]
        if not isinstance(key_id, str):
            raise ValueError(f"watermark key_id must be a string, got {type(key_id).__name__}")
        key = cls(secret)
        if key_id.lower() != key.key_id:
            raise ValueError(f"watermark key_id mismatch: dict says {key_id!r}, the secret gives {key.key_id!r}")
        return key

    def __repr__(self) -> str:
        return f"WatermarkKey(key_id={self.key_id!r})"

    __str__ = __repr__
