"""C2PA manifests on files: signing a file, and reading and validating one back.

The only module that imports ``c2pa``. What goes into a manifest is ``framemark.manifest`` (pure data);
``sign_file`` and ``read_file`` are the I/O edges. Readers never raise for a bad file: they
return the C2PA part of a verdict (``state``, ``codes``, ``manifest`` summary) or raise ProvenanceError with a
plain message when the file cannot be parsed at all. See docs/provenance.md for every field.
"""

from __future__ import annotations

import io
import json
import os
from functools import lru_cache
from importlib.metadata import version as _dist_version
from pathlib import Path

import c2pa

from framemark.manifest import MIME, THUMBNAIL_ID, ProvenanceError, summarize
from framemark.signer import ClaimSigner

STATES = ("Trusted", "Valid", "Invalid", "absent")

_ALGS = {"es256": c2pa.C2paSigningAlg.ES256, "es384": c2pa.C2paSigningAlg.ES384,
         "es512": c2pa.C2paSigningAlg.ES512, "ps256": c2pa.C2paSigningAlg.PS256,
         "ps384": c2pa.C2paSigningAlg.PS384, "ps512": c2pa.C2paSigningAlg.PS512,
         "ed25519": c2pa.C2paSigningAlg.ED25519}
# Failure codes that concern the binding between a manifest and an asset's bytes: for a manifest store read on
# its own (recovered from the ledger) there are no bytes to bind to, so these say nothing about the signature.
HARD_BINDING_CODES = frozenset({"assertion.bmffHash.mismatch", "assertion.dataHash.mismatch",
                                "assertion.boxesHash.mismatch", "assertion.collectionHash.mismatch"})
UNTRUSTED = "signingCredential.untrusted"


def c2pa_version() -> str:
    return _dist_version("c2pa-python")


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


def stored_manifest(store: bytes, trust_anchors: list[bytes] | tuple[bytes, ...] = ()) -> dict:
    """A ledger row's manifest store as verdicts and lookups show it: ``signature`` {state, codes,
    hard_binding} of the store validated on its own, its claim ``manifest`` summary and ``manifest_json``."""
    checked = read_manifest_store(store, trust_anchors)
    return {"signature": {"state": checked["state"], "codes": checked["codes"],
                          "hard_binding": checked["hard_binding"]},
            "manifest": checked["manifest"], "manifest_json": checked["manifest_json"]}


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
