"""Who signs a C2PA claim: a small interface, so the private key need not live in this process.

c2pa hands the signer the bytes to be signed (the COSE ``Sig_structure`` of the claim) and embeds what comes back.
Anything that can turn bytes into a signature under a key whose certificate chain it can show is a signer: the
local key file (:class:`LocalKeySigner`), or a remote KMS/HSM. A remote signer implements the three members of
:class:`ClaimSigner` and is passed wherever a signer is taken (``generator.emit.emit_clip(signer=...)``,
``provenance.sign_file``); nothing else changes. Its ``sign`` must return the signature in COSE form:
for ECDSA the fixed-size ``r || s`` (64 bytes for ES256), not the DER that most KMS APIs return;
:func:`der_to_cose_ecdsa` converts.

This module knows nothing of c2pa (``framemark.provenance`` adapts a ClaimSigner to ``c2pa.Signer``) and nothing
of files (``framemark.credentials`` loads keys and certificates from the key directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from framemark.errors import FramemarkError

# COSE algorithm names c2pa accepts that our local signer can produce, by key type.
_EC_ALGS = {"secp256r1": ("es256", hashes.SHA256(), 32), "secp384r1": ("es384", hashes.SHA384(), 48),
            "secp521r1": ("es512", hashes.SHA512(), 66)}
SUPPORTED_ALGS = ("es256", "es384", "es512", "ed25519")


class SignerError(FramemarkError):
    """A signer cannot be built from the given key, or refused to sign."""


@runtime_checkable
class ClaimSigner(Protocol):
    """What c2pa needs from a signer. Implementations must be safe to call several times."""

    @property
    def alg(self) -> str:
        """COSE algorithm name in lower case: ``es256`` (our default), ``es384``, ``es512``, ``ed25519``, ..."""

    @property
    def certificate_chain_pem(self) -> bytes:
        """PEM certificates, signing (leaf) certificate first, then intermediates; the root may be left out."""

    @property
    def tsa_url(self) -> str | None:
        """RFC 3161 time-stamp authority to countersign with, or None for no time-stamp."""

    def sign(self, data: bytes) -> bytes:
        """The COSE signature of ``data`` (ECDSA: ``r || s``, fixed size)."""


def der_to_cose_ecdsa(der: bytes, coordinate_bytes: int) -> bytes:
    """DER ``ECDSA-Sig-Value`` (what OpenSSL, cryptography and most KMS APIs return) -> COSE ``r || s``."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(coordinate_bytes, "big") + s.to_bytes(coordinate_bytes, "big")


@dataclass(frozen=True)
class LocalKeySigner:
    """Signs with a private key held in this process (loaded from a PEM file by ``framemark.credentials``)."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        # parsed once, now, so a bad key fails here with a clear message rather than inside c2pa's callback
        object.__setattr__(self, "_key", self._parse_key())

    def _parse_key(self):
        try:
            key = serialization.load_pem_private_key(self.key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SignerError(f"the signing key is not an unencrypted PEM private key ({exc})") from exc
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if key.curve.name not in _EC_ALGS:
                raise SignerError(f"EC curve {key.curve.name} is not supported for C2PA; use P-256, P-384 or P-521")
        elif not isinstance(key, ed25519.Ed25519PrivateKey):
            raise SignerError(f"{type(key).__name__} keys are not supported; use an EC (P-256/384/521) or "
                              f"Ed25519 key")
        return key

    @property
    def alg(self) -> str:
        key = self._key
        return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else _EC_ALGS[key.curve.name][0]

    @property
    def certificate_chain_pem(self) -> bytes:
        return self.chain_pem

    def sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        _, digest, size = _EC_ALGS[key.curve.name]
        return der_to_cose_ecdsa(key.sign(data, ec.ECDSA(digest)), size)
