"""What framemark puts in a C2PA manifest and how it reads one back, as data: no c2pa, no files.

``build_manifest`` turns a generated clip's facts into a manifest definition (c2pa's JSON form) and ``summarize``
turns an active manifest (as c2pa reports it) into the claim summary of a verdict. ``framemark.provenance`` signs
and reads with c2pa around these; the CLI and the service use the vocabulary (prompt policies, labels) without
loading c2pa. docs/provenance.md lists every field.
"""

from __future__ import annotations

import base64
import hashlib

from framemark import __version__
from framemark.errors import FramemarkError
from framemark.soft_binding import SOFT_BINDING_ALG

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# digitalSourceType values that declare the content (wholly or partly) machine-generated; a valid manifest
# declaring one of these makes the verdict `signed-synthetic`.
SYNTHETIC_SOURCE_TYPES = frozenset(
    f"http://cv.iptc.org/newscodes/digitalsourcetype/{name}"
    for name in ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                 "compositeSynthetic"))
GENERATION_LABEL = "org.framemark.generation"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
PROMPT_POLICIES = ("full", "hash", "omit")
THUMBNAIL_ID = "thumbnail.jpg"
MIME = "video/mp4"


class ProvenanceError(FramemarkError):
    """A manifest could not be built, signed or read (bad signer, unparsable file)."""


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


def describe_model(identity) -> dict:
    """The one description of a model wherever a clip is described: the generation assertion, the ledger row,
    ``generate --json`` and the verdict's watermark part. ``identity`` is a ``VideoModel.identity``
    (``ModelIdentity``); the hash covers its weight files, so two folders that share a name and version but not
    their weights are told apart (reading it the first time reads every weight file, once per process)."""
    return {"name": str(identity.name), "version": str(identity.version), "family": str(identity.family),
            "weights_sha256": identity.weights_sha256}


# Keys of our own in the standard ``softwareAgent`` map (C2PA generator-info-map: name, version and extension
# keys), so a reader that only knows the standard keys still sees name and version.
SOFTWARE_AGENT_EXTRAS = {"family": "org.framemark.family", "weights_sha256": "org.framemark.weights_sha256"}


def software_agent(model: dict) -> dict:
    """The ``softwareAgent`` of the ``c2pa.created`` action: the model's name and version, plus its family and
    weights hash under framemark's keys when known."""
    agent = {"name": str(model.get("name")), "version": str(model.get("version"))}
    agent.update({key: str(model[field]) for field, key in SOFTWARE_AGENT_EXTRAS.items() if model.get(field)})
    return agent


def build_manifest(*, title: str, model: dict, generation: dict, prompt: str, prompt_policy: str = "hash",
                   payload: bytes | None = None, key_id: str | None = None, duration_ms: int = 0,
                   thumbnail: bool = True) -> dict:
    """The manifest definition for one generated clip (c2pa's JSON form; see docs/provenance.md).

    ``model``: :func:`describe_model`'s dict (name, version, family, weights_sha256; a dict with only name and
    version is accepted and described as far as it goes); ``generation``: the request's numbers (seed, steps,
    frames, ...); ``payload``: the 8 watermark payload bytes when the clip is marked, else None (then no soft
    binding is declared).
    """
    described = {"name": model.get("name"), "version": model.get("version"),
                 **{k: model[k] for k in ("family", "weights_sha256") if model.get(k)}}
    gen = {"model": described, **generation, **prompt_fields(prompt, prompt_policy)}
    if payload is not None:
        gen["watermark"] = {"alg": SOFT_BINDING_ALG, "key_id": key_id}
    assertions = [
        {"label": "c2pa.actions", "data": {"actions": [{
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": software_agent(model),
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


# ------------------------------------------------------------------------------------------------ reading

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
