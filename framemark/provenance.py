"""C2PA manifests: what framemark puts in them, signing a file, and reading and validating one back.

The only module that imports ``c2pa``. Building a manifest is pure (``build_manifest``: data in, a manifest
definition out); ``sign_file`` and ``read_file`` are the I/O edges. Readers never raise for a bad file: they
return the C2PA part of a verdict (``state``, ``codes``, ``manifest`` summary) or raise ProvenanceError with a
plain message when the file cannot be parsed at all. See docs/provenance.md for every field.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from functools import lru_cache
from importlib.metadata import version as _dist_version
from pathlib import Path

import c2pa
import cv2
import numpy as np

from framemark import __version__
from framemark.errors import FramemarkError
from framemark.signer import ClaimSigner

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# digitalSourceType values that declare the content (wholly or partly) machine-generated; a valid manifest
# declaring one of these makes the verdict `signed-synthetic`.
SYNTHETIC_SOURCE_TYPES = frozenset(
    f"http://cv.iptc.org/newscodes/digitalsourcetype/{name}"
    for name in ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                 "compositeSynthetic"))
# Our soft-binding algorithm: not on the C2PA soft-binding algorithm list, so a reverse-domain id of our own.
# Version 1 = the latent-noise watermark of framemark.watermark: `value` is the 8-byte payload (48-bit clip id +
# CRC-16), readable only with the watermark key named by the generation assertion's `watermark.key_id`.
SOFT_BINDING_ALG = "org.framemark.latent-noise.v1"
GENERATION_LABEL = "org.framemark.generation"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
PROMPT_POLICIES = ("full", "hash", "omit")
STATES = ("Trusted", "Valid", "Invalid", "absent")
THUMBNAIL_ID = "thumbnail.jpg"
MIME = "video/mp4"

_ALGS = {"es256": c2pa.C2paSigningAlg.ES256, "es384": c2pa.C2paSigningAlg.ES384,
         "es512": c2pa.C2paSigningAlg.ES512, "ps256": c2pa.C2paSigningAlg.PS256,
         "ps384": c2pa.C2paSigningAlg.PS384, "ps512": c2pa.C2paSigningAlg.PS512,
         "ed25519": c2pa.C2paSigningAlg.ED25519}
# Failure codes that concern the binding between a manifest and an asset's bytes: for a manifest store read on
# its own (recovered from the ledger) there are no bytes to bind to, so these say nothing about the signature.
HARD_BINDING_CODES = frozenset({"assertion.bmffHash.mismatch", "assertion.dataHash.mismatch",
                                "assertion.boxesHash.mismatch", "assertion.collectionHash.mismatch"})
UNTRUSTED = "signingCredential.untrusted"


class ProvenanceError(FramemarkError):
    """A manifest could not be built, signed or read (bad signer, unparsable file)."""


def c2pa_version() -> str:
    return _dist_version("c2pa-python")


# ------------------------------------------------------------------------------------------------ building

def prompt_fields(prompt: str, policy: str) -> dict:
    """How the prompt appears in the generation assertion: verbatim, as its SHA-256, or not at all."""
    if policy not in PROMPT_POLICIES:
        raise ProvenanceError(f"prompt policy must be one of {', '.join(PROMPT_POLICIES)}, got {policy!r}")
    fields: dict = {"prompt_policy": policy}
    if policy == "full":
        fields["prompt"] = prompt
    elif policy == "hash":
        fields["prompt_sha256"] = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    return fields


def build_manifest(*, title: str, model: dict, generation: dict, prompt: str, prompt_policy: str = "hash",
                   payload: bytes | None = None, key_id: str | None = None, duration_ms: int = 0,
                   thumbnail: bool = True) -> dict:
    """The manifest definition for one generated clip (c2pa's JSON form; see docs/provenance.md).

    ``model``: {"name", "version"} (``pipeline.model_identity``); ``generation``: the request's numbers (seed,
    steps, frames, ...); ``payload``: the 8 watermark payload bytes when the clip is marked, else None (then no
    soft binding is declared).
    """
    gen = {"model": {"name": model.get("name"), "version": model.get("version")}, **generation,
           **prompt_fields(prompt, prompt_policy)}
    if payload is not None:
        gen["watermark"] = {"alg": SOFT_BINDING_ALG, "key_id": key_id}
    assertions = [
        {"label": "c2pa.actions", "data": {"actions": [{
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": {"name": str(model.get("name")), "version": str(model.get("version"))},
        }]}},
        {"label": GENERATION_LABEL, "data": gen},
    ]
    if payload is not None:
        assertions.append({"label": SOFT_BINDING_LABEL, "data": {
            "alg": SOFT_BINDING_ALG,
            "blocks": [{"scope": {"timespan": {"start": 0, "end": int(duration_ms)}}, "value": list(payload)}],
            "pad": [],
        }})
    manifest = {
        "claim_generator_info": [{"name": "framemark", "version": __version__}],
        "title": title,
        "format": MIME,
        "assertions": assertions,
    }
    if thumbnail:
        manifest["thumbnail"] = {"format": "image/jpeg", "identifier": THUMBNAIL_ID}
    return manifest


def thumbnail_jpeg(frames: np.ndarray, quality: int = 85) -> bytes:
    """JPEG of the middle frame of uint8 RGB ``(T, H, W, 3)`` frames."""
    frame = np.ascontiguousarray(frames[len(frames) // 2][:, :, ::-1])  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ProvenanceError("could not encode the thumbnail as JPEG")
    return buf.tobytes()


# ------------------------------------------------------------------------------------------------ signing

def c2pa_signer(signer: ClaimSigner) -> c2pa.Signer:
    """Adapt any ClaimSigner (local key, KMS, HSM) to c2pa through its callback interface."""
    alg = signer.alg
    if alg not in _ALGS:
        raise ProvenanceError(f"signing algorithm {alg!r} is not supported by c2pa ({', '.join(_ALGS)})")
    try:
        return c2pa.Signer.from_callback(signer.sign, _ALGS[alg], signer.certificate_chain_pem.decode("ascii"),
                                         signer.tsa_url)
    except (c2pa.C2paError, UnicodeDecodeError) as exc:
        raise ProvenanceError(f"c2pa refused the signer: {exc}") from exc


def sign_file(src: str | os.PathLike, dst: str | os.PathLike, manifest: dict, signer: ClaimSigner,
              thumbnail: bytes | None = None) -> bytes:
    """Sign MP4 ``src`` into ``dst`` (a different path) with ``manifest``; returns the manifest store bytes
    (JUMBF) that were embedded, which are what the ledger keeps."""
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError("sign_file needs distinct source and destination paths")
    if thumbnail is None:  # a manifest that names a thumbnail must be given one
        manifest = {k: v for k, v in manifest.items() if k != "thumbnail"}
    try:
        builder = c2pa.Builder(manifest)
        if thumbnail is not None:
            builder.add_resource(THUMBNAIL_ID, io.BytesIO(thumbnail))
        with open(src, "rb") as source, open(dst, "w+b") as dest:
            store = builder.sign(c2pa_signer(signer), MIME, source, dest)
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"C2PA signing failed: {exc}") from exc
    except OSError as exc:
        raise ProvenanceError(f"C2PA signing failed: {exc.strerror or exc}") from exc
    if not store:
        raise ProvenanceError("C2PA signing returned no manifest store")
    return store


# ------------------------------------------------------------------------------------------------ reading

@lru_cache(maxsize=8)
def _context(anchors: tuple[bytes, ...]) -> c2pa.Context:
    verify = {"verify_trust": True, "remote_manifest_fetch": False, "ocsp_fetch": False}
    settings: dict = {"verify": verify}
    if anchors:
        settings["trust"] = {"trust_anchors": b"\n".join(a.strip() for a in anchors).decode("ascii") + "\n"}
    return c2pa.Context(settings=c2pa.Settings.from_dict(settings))


def _codes(results: dict | None, kind: str) -> list[str]:
    seen: list[str] = []
    for entry in ((results or {}).get("activeManifest") or {}).get(kind, []) or []:
        code = entry.get("code")
        if code and code not in seen:
            seen.append(code)
    return seen


def _assertion(manifest: dict, prefix: str) -> dict | None:
    for a in manifest.get("assertions") or []:
        label = a.get("label", "")
        if label == prefix or label.startswith(prefix + "."):
            return a.get("data")
    return None


def summarize(manifest: dict | None) -> dict | None:
    """The claim summary of an active manifest (c2pa's JSON form): who made it, with what, and its soft binding."""
    if not manifest:
        return None
    actions = (_assertion(manifest, "c2pa.actions") or {}).get("actions") or []
    created = next((a for a in actions if a.get("action") in ("c2pa.created", "c2pa.opened")),
                   actions[0] if actions else {})
    source_types = [a.get("digitalSourceType") for a in actions if a.get("digitalSourceType")]
    generators = manifest.get("claim_generator_info") or []
    generator = " ".join(str(generators[0].get(k)) for k in ("name", "version") if generators[0].get(k)) \
        if generators else manifest.get("claim_generator")
    soft = _assertion(manifest, SOFT_BINDING_LABEL)
    binding = None
    if soft:
        blocks = soft.get("blocks") or []
        value = blocks[0].get("value") if blocks else None
        binding = {"alg": soft.get("alg"), "value": _bytes_hex(value),
                   "scope": blocks[0].get("scope") if blocks else None}
    sig = manifest.get("signature_info") or {}
    return {
        "label": manifest.get("label"),
        "title": manifest.get("title"),
        "claim_generator": generator,
        "signer": {"common_name": sig.get("common_name"), "issuer": sig.get("issuer"), "alg": sig.get("alg"),
                   "time": sig.get("time")},
        "action": created.get("action"),
        "digital_source_type": created.get("digitalSourceType"),
        "software_agent": created.get("softwareAgent"),
        "declares_synthetic": any(t in SYNTHETIC_SOURCE_TYPES for t in source_types),
        "generation": _assertion(manifest, GENERATION_LABEL),
        "soft_binding": binding,
    }


def _bytes_hex(value) -> str | None:
    """A CBOR byte string as c2pa's JSON shows it (base64 text, or a list of ints) -> lowercase hex."""
    if value is None:
        return None
    if isinstance(value, list):
        return bytes(value).hex()
    try:
        return base64.b64decode(value, validate=True).hex()
    except (ValueError, TypeError):
        return None


def _result(reader: c2pa.Reader) -> dict:
    results = reader.get_validation_results()
    state = reader.get_validation_state() or "Invalid"
    failures = _codes(results, "failure")
    return {"state": state, "codes": failures, "informational": _codes(results, "informational"),
            "manifest": summarize(reader.get_active_manifest()), "error": None}


def _format_for(path: Path) -> str | None:
    """The MIME type c2pa should read ``path`` as, or None to let it sniff the bytes."""
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in c2pa.Reader.get_supported_mime_types() else None


def read_file(path: str | os.PathLike, trust_anchors: list[bytes] | tuple[bytes, ...] = ()) -> dict:
    """The ``c2pa`` part of a verdict for a file: state Trusted / Valid / Invalid / absent, failure codes, summary.

    Raises ProvenanceError when the file cannot be parsed as a container c2pa knows (random bytes, text).
    """
    path = Path(path)
    absent = {"state": "absent", "codes": [], "informational": [], "manifest": None, "error": None}
    try:
        with open(path, "rb") as fh:
            reader = c2pa.Reader(_format_for(path), fh, context=_context(tuple(trust_anchors)))
            try:
                return _result(reader)
            finally:
                reader.close()
    except c2pa.C2paError.ManifestNotFound:
        return absent
    except c2pa.C2paError.NotSupported:
        return {**absent, "informational": ["format.unsupported"]}
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"C2PA could not read {path}: {_plain(exc)}") from exc
    except OSError as exc:
        raise ProvenanceError(f"C2PA could not read {path}: {exc.strerror or exc}") from exc


def read_manifest_store(store: bytes, trust_anchors: list[bytes] | tuple[bytes, ...] = ()) -> dict:
    """Validate a detached manifest store (as the ledger keeps it), with no asset to bind it to.

    c2pa validates the claim signature, the signing credential against the trust anchors and every hashed
    assertion reference; the hard binding (the hash of the asset's bytes) cannot match, because there are no
    bytes, so its mismatch code is set aside and reported separately. ``state`` is then Trusted / Valid /
    Invalid for the signature alone; ``bound_to_file`` is always False.
    """
    try:
        reader = c2pa.Reader("application/c2pa", io.BytesIO(store), context=_context(tuple(trust_anchors)))
        try:
            results = reader.get_validation_results()
            active = reader.get_active_manifest()
            store_json = json.loads(reader.json())
        finally:
            reader.close()
    except c2pa.C2paError as exc:
        return {"state": "Invalid", "codes": [f"manifest store unreadable: {_plain(exc)}"],
                "hard_binding": "not checked", "manifest": None, "manifest_json": None, "bound_to_file": False}
    failures = _codes(results, "failure")
    other = [c for c in failures if c not in HARD_BINDING_CODES]
    success = _codes(results, "success")
    # as for a file: an untrusted signer makes the manifest Valid, not Invalid
    if [c for c in other if c != UNTRUSTED] or "claimSignature.validated" not in success:
        state = "Invalid"
    elif "signingCredential.trusted" in success:
        state = "Trusted"
    else:
        state = "Valid"
    store_json.pop("validation_results", None)
    store_json.pop("validation_status", None)
    store_json.pop("validation_state", None)
    return {"state": state, "codes": other,
            "hard_binding": "not checked: the manifest is detached from the bytes it was made for",
            "manifest": summarize(active), "manifest_json": store_json, "bound_to_file": False}


def summarize_store(store: bytes) -> dict | None:
    """The claim summary of a manifest store's active manifest, without validating it (None if unreadable)."""
    try:
        reader = c2pa.Reader("application/c2pa", io.BytesIO(store), context=_context(()))
        try:
            return summarize(reader.get_active_manifest())
        finally:
            reader.close()
    except c2pa.C2paError:
        return None


def _plain(exc: Exception) -> str:
    """c2pa's message without its error-type prefix (``Other: asset could not be parsed: ...``)."""
    text = str(exc)
    head, sep, tail = text.partition(": ")
    return tail if sep and head.isalnum() else text
