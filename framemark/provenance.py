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

STATES = ("Trusted", "Valid", "Invalid", "damaged", "absent")
# A manifest c2pa cannot find or parse although the file holds its remains (a renamed box, a broken JUMBF header):
# a damaged manifest is reported as damaged, never as absent, and weighs as an Invalid one (detect/verdict.py).
DAMAGED = "damaged"
DAMAGED_CODE = "manifest.structure.damaged"

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
    """The ``c2pa`` part of a verdict for a file: state Trusted / Valid / Invalid / damaged / absent, failure codes,
    summary. ``damaged``: c2pa finds no manifest, or cannot parse the one there is, but the file holds the remains
    of one (:func:`manifest_remnants`): its structure was broken, which is tampering, not absence.

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
        return _damaged(path, "c2pa finds no manifest") or absent
    except c2pa.C2paError.NotSupported:
        return {**absent, "informational": ["format.unsupported"]}
    except c2pa.C2paError as exc:
        found = _damaged(path, f"c2pa cannot read it: {_plain(exc)}")
        if found is not None:
            return found
        raise ProvenanceError(f"C2PA could not read {path}: {_plain(exc)}") from exc
    except OSError as exc:
        raise ProvenanceError(f"C2PA could not read {path}: {exc.strerror or exc}") from exc


def _damaged(path: Path, why: str) -> dict | None:
    """The reading of a file whose manifest c2pa cannot use although its remains are there; None if none are."""
    remnants = manifest_remnants(path)
    if not remnants:
        return None
    shown = "; ".join(remnants[:3]) + (f"; and {len(remnants) - 3} more" if len(remnants) > 3 else "")
    return {"state": DAMAGED, "codes": [DAMAGED_CODE], "informational": [], "manifest": None,
            "error": f"the C2PA manifest is damaged: {why}, but the file holds the remains of one ({shown})"}


# ------------------------------------------------------------------------------------------------ remnants

# The ISO BMFF box that carries a C2PA manifest store: a top-level 'uuid' box with this extended type.
C2PA_BOX_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
# Every JUMBF content type (the C2PA store, claim, signature, assertion boxes) is a UUID ending with this.
_JUMBF_TYPE_SUFFIX = bytes.fromhex("00110010800000aa00389b71")
# Long enough that no other box's bytes hold them by chance (sample tables are arbitrary 32-bit numbers).
_STRONG_SIGNATURES = ((C2PA_BOX_UUID, "the C2PA box's UUID"), (_JUMBF_TYPE_SUFFIX, "a JUMBF content type"),
                      (b"c2pa.claim", "a C2PA claim label"), (b"c2pa.signature", "a C2PA signature label"),
                      (b"c2pa.assertions", "a C2PA assertion store label"))
# 4-byte box types of JUMBF: looked for only in boxes that are not standard media boxes
_JUMBF_TYPES = ((b"jumb", "a 'jumb' (JUMBF superbox) signature"), (b"jumd", "a 'jumd' (JUMBF description) signature"),
                (b"c2pa", "a 'c2pa' label"))
_MEDIA_BOXES = frozenset({b"ftyp", b"styp", b"moov", b"moof", b"mfra", b"sidx", b"ssix", b"prft", b"emsg", b"free",
                          b"skip", b"wide", b"pdin", b"meco", b"meta"})
_REMNANT_SCAN_BYTES = 64 * 1024 * 1024  # read at most this much outside 'mdat' (a large moov is a few MB)


def manifest_remnants(path: str | os.PathLike) -> list[str]:
    """What is left of a C2PA manifest among an MP4/MOV file's top-level boxes, in words (empty: nothing).

    Media data ('mdat') is skipped, never read: compressed samples hold any 4-byte pattern by chance. The other
    boxes are searched for the C2PA box's UUID, JUMBF content types and C2PA labels; boxes that are not standard
    media boxes (a renamed 'uuid' box, say) also for the 'jumb'/'jumd'/'c2pa' signatures. Files that are not ISO
    BMFF, and boxes past a broken size field, are not searched. Bounded: at most 64 MiB are read.
    """
    found: list[str] = []
    try:
        with open(path, "rb") as fh:
            for offset, kind, body in _top_level_boxes(fh):
                if kind == b"uuid" and body[:16] == C2PA_BOX_UUID:
                    found.append(f"the C2PA 'uuid' box at byte {offset}")  # intact, but what it holds is not
                    continue
                where = f"in a top-level {kind.decode('latin-1')!r} box at byte {offset}"
                hits = [what for sig, what in _STRONG_SIGNATURES if sig in body]
                if kind not in _MEDIA_BOXES:
                    hits += [what for sig, what in _JUMBF_TYPES if sig in body]
                found.extend(f"{what} {where}" for what in hits)
    except OSError:
        return []
    return found


def _top_level_boxes(fh):
    """(offset, type, body up to the scan budget) of each top-level box but 'mdat'; stops at the first size that
    does not fit the file (a file that is not BMFF gives nothing)."""
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    offset, budget = 0, _REMNANT_SCAN_BYTES
    while offset + 8 <= end and budget > 0:
        fh.seek(offset)
        header = fh.read(16)
        size, kind = int.from_bytes(header[:4], "big"), header[4:8]
        head_len = 8
        if size == 1:
            if len(header) < 16:
                return
            size, head_len = int.from_bytes(header[8:16], "big"), 16
        elif size == 0:
            size = end - offset
        if size < head_len or offset + size > end or not all(32 <= b < 127 for b in kind):
            return
        if kind != b"mdat":
            fh.seek(offset + head_len)
            body = fh.read(min(size - head_len, budget))
            budget -= len(body)
            yield offset, kind, body
        offset += size


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
