"""The C2PA Soft Binding Resolution API over framemark's ledger: the lookups and answers behind its routes
(``resolution_api.py``).

A framemark clip's manifest declares a ``c2pa.soft-binding`` assertion whose ``alg`` and ``value`` (the 8 payload
bytes of its watermark) ``framemark.soft_binding`` defines; on the wire of the resolution API a binding value is
base64 of those bytes, exactly as the assertion holds them, so a C2PA tool that read the assertion (or decoded the
watermark) sends it unchanged. The ledger keys clips by clip id; a match is every ledger row of that clip id whose
payload is the one asked for and which has a manifest, and the manifest id is that row's ``manifest_label``
(``urn:c2pa:...``).

The ledger is read through ``framemark.ledger.Ledger``, one connection per thread (SQLite connections must not
cross threads, and the app answers these queries from a thread pool).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

from framemark.errors import FramemarkError
from framemark.ledger import Ledger, LedgerEntry
from framemark.soft_binding import SOFT_BINDING_ALG, decode_value
from framemark.watermark import Payload

from .errors import ApiError

EXACT_SCORE = 100
_log = logging.getLogger("framemark.serve")


def check_alg(alg: str | None, required: bool) -> None:
    if alg is None or alg == "":
        if required:
            raise ApiError("missing_alg", f"give alg={SOFT_BINDING_ALG}")
        return
    if alg != SOFT_BINDING_ALG:
        raise ApiError("unsupported_alg",
                       f"this service resolves only the soft-binding algorithm {SOFT_BINDING_ALG} (got {alg!r})")


def binding_payload(value: str) -> Payload:
    """The payload a query's binding value names (``soft_binding.decode_value``), or 400 ``bad_value``."""
    try:
        return decode_value(value)
    except ValueError as exc:
        raise ApiError("bad_value", str(exc)) from None


def content_score(p_value: float | None) -> int:
    """similarityScore (0-100) of a match found by reading the watermark: 10 per decade of p-value, capped at 100
    (p = 1e-6, the default detection threshold, scores 60; p <= 1e-10 scores 100)."""
    if p_value is None:
        return 0
    if p_value <= 0:
        return EXACT_SCORE
    return int(max(0, min(EXACT_SCORE, math.floor(-10 * math.log10(p_value)))))


class LedgerIndex:
    """Read-only lookups in the ledger for the resolution endpoints; one ``Ledger`` per thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def _ledger(self) -> Ledger | None:
        """This thread's open ledger; None while no ledger file exists (nothing was generated yet)."""
        led = getattr(self._local, "ledger", None)
        if led is None:
            if not self.path.exists():
                return None
            led = self._call(lambda: Ledger(self.path, create=False))
            self._local.ledger = led
        return led

    @staticmethod
    def _call(fn):
        try:
            return fn()
        except FramemarkError as exc:  # the details name server paths: logged, not sent
            _log.error("ledger unavailable: %s", exc)
            raise ApiError("ledger_unavailable", "the ledger cannot be read right now") from None

    def by_payload(self, payload: Payload, key_id: str | None = None) -> list[LedgerEntry]:
        """Rows issued this payload (newest first), with a manifest; only ``key_id``'s when given."""
        led = self._ledger()
        if led is None:
            return []
        rows = self._call(lambda: led.lookup(payload, key_id))
        return [e for e in rows if e.payload == payload.hex and e.manifest_label]

    def by_manifest_id(self, manifest_id: str) -> LedgerEntry | None:
        led = self._ledger()
        return None if led is None else self._call(lambda: led.by_manifest_label(manifest_id))

    def close(self) -> None:
        """Close the calling thread's connection (the others close with their threads)."""
        led = getattr(self._local, "ledger", None)
        if led is not None:
            led.close()
            self._local.ledger = None


def matches(entries: list[LedgerEntry], score: int, max_results: int) -> dict:
    """The API's ``c2pa.softBindingQueryResult``: ``{"matches": [{"manifestId", "similarityScore"}]}`` (no
    ``endpoint``: the manifests are served here, at /manifests/{manifestId})."""
    seen: list[str] = []
    for entry in entries:
        if entry.manifest_label and entry.manifest_label not in seen:
            seen.append(entry.manifest_label)
    return {"matches": [{"manifestId": m, "similarityScore": score} for m in seen[:max_results]]}
