"""Bearer tokens for `framemark serve`: a file of token hashes with scopes, never the tokens themselves.

A token is ``fmk_<id>_<secret>``: ``id`` (8 hex digits) names it in `token list` and `token revoke` and in
nothing else; ``secret`` is 32 random bytes (base64url). The file keeps, per token, its id, a label, its scopes,
its creation time and the SHA-256 of the whole token string. SHA-256 (not a slow password hash) is enough: the
token has 256 bits of entropy, so a stolen file cannot be brute-forced back into tokens. A presented token is
checked by hashing it and comparing in constant time with the hash stored under its id.

The file (default ``$FRAMEMARK_HOME/tokens``) is JSON, mode 0600 from the start, and rewritten atomically
(temporary file in the same folder, fsync, rename), so a server reading it never sees half a file. The server
re-reads it when its modification time or size changes: `token revoke` takes effect on the next request.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from framemark.errors import FramemarkError

SCOPES = ("verify", "generate")
FILE_VERSION = 1
PREFIX = "fmk_"
_TOKEN_RE = re.compile(r"fmk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")


class TokenError(FramemarkError):
    """The tokens file is unreadable or malformed, or a command names an unknown token or scope."""


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: str
    sha256: str

    def public(self) -> dict:
        """What `token list` shows: everything but the hash."""
        d = asdict(self)
        d.pop("sha256")
        d["scopes"] = list(self.scopes)
        return d


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """(id, token) for a fresh token."""
    token_id = secrets.token_hex(4)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return token_id, f"{PREFIX}{token_id}_{secret}"


def check_scopes(scopes) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip().lower() for s in scopes if s and s.strip()))
    if not scopes:
        raise TokenError(f"give at least one scope ({', '.join(SCOPES)})")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise TokenError(f"unknown scope {unknown[0]!r} (scopes: {', '.join(SCOPES)})")
    return scopes


def read_records(path: Path) -> list[TokenRecord]:
    """The records of a tokens file; an absent file has none."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the tokens file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            raise ValueError(f"expected a version {FILE_VERSION} tokens file")
        records = []
        for raw in data.get("tokens", []):
            scopes = tuple(raw["scopes"])
            if not re.fullmatch(r"[0-9a-f]{8}", raw["id"]) or not re.fullmatch(r"[0-9a-f]{64}", raw["sha256"]):
                raise ValueError(f"malformed entry {raw.get('id')!r}")
            records.append(TokenRecord(id=raw["id"], name=str(raw.get("name", "")), scopes=scopes,
                                       created_at=str(raw.get("created_at", "")), sha256=raw["sha256"]))
        return records
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError(f"the tokens file {path} is malformed: {exc}") from exc


def write_records(path: Path, records: list[TokenRecord]) -> None:
    """Replace the file atomically; created 0600 from the start (folder 0700 when created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"version": FILE_VERSION, "tokens": [asdict(r) | {"scopes": list(r.scopes)} for r in records]},
                      indent=2) + "\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def add_token(path: Path, scopes, name: str = "") -> tuple[str, TokenRecord]:
    """Create a token with ``scopes``; returns (the token, shown once; its record, as stored)."""
    scopes = check_scopes(scopes)
    records = read_records(path)
    token_id, token = new_token()
    while any(r.id == token_id for r in records):  # 1 in 4 billion, but cheap to rule out
        token_id, token = new_token()
    record = TokenRecord(id=token_id, name=name, scopes=scopes,
                         created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                         sha256=hash_token(token))
    write_records(path, records + [record])
    return token, record


def revoke_token(path: Path, token_id: str) -> TokenRecord:
    token_id = token_id.strip().lower()
    match = _TOKEN_RE.fullmatch(token_id)  # accept the whole token too
    if match:
        token_id = match.group(1)
    records = read_records(path)
    keep = [r for r in records if r.id != token_id]
    if len(keep) == len(records):
        raise TokenError(f"no token with id {token_id!r} in {path}")
    write_records(path, keep)
    return next(r for r in records if r.id == token_id)


class TokenStore:
    """The server's view of a tokens file: re-read when it changes, checked in constant time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._by_id: dict[str, TokenRecord] = {}

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._stamp and self._stamp is not None:
                return
            records = read_records(self.path) if stamp is not None else []
            self._by_id = {r.id: r for r in records}
            self._stamp = stamp

    def count(self) -> int:
        self._refresh()
        return len(self._by_id)

    def authenticate(self, token: str | None) -> TokenRecord | None:
        """The record of a valid token, or None (unknown, revoked, malformed)."""
        if not token:
            return None
        match = _TOKEN_RE.fullmatch(token.strip())
        if not match:
            return None
        self._refresh()
        record = self._by_id.get(match.group(1))
        if record is None:
            return None
        return record if hmac.compare_digest(record.sha256, hash_token(token.strip())) else None
