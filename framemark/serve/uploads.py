"""Uploads: streamed to a temporary file with the size limit enforced while they arrive, then sniffed and probed.

Nothing here holds a whole upload in memory: the body is read chunk by chunk, parsed (multipart/form-data with a
``file`` field, or a raw body as the C2PA Soft Binding Resolution API's ``/matches/byContent`` sends it), hashed
and written to disk. A body that grows past the limit is refused with 413 the moment it does, without reading the
rest; one that stalls (no bytes for ``upload_timeout_s``) with 408, and its connection is closed, so a client that
sends headers and stops holds neither a connection nor a temporary file. Then, before any decoding, :func:`inspect` applies what `framemark audit` applies to files on disk: content
sniffing (``media.sniff_container``), a header probe (``media.probe_video``) and the duration/resolution limits
(``framemark.limits.Limits``). Every refusal is an :class:`~.errors.ApiError` with its stable code.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import ClientDisconnect

from framemark import media
from framemark.errors import FramemarkError
from framemark.limits import Limits, claimed_duration_s, format_bytes

from .errors import ApiError

try:  # python-multipart >= 0.0.13
    from python_multipart.multipart import MultipartParser, parse_options_header
    from python_multipart.exceptions import MultipartParseError
except ImportError:  # pragma: no cover - older python-multipart
    from multipart.multipart import MultipartParser, parse_options_header  # type: ignore
    from multipart.exceptions import MultipartParseError  # type: ignore

FIELD = "file"
# room for multipart boundaries and part headers on top of the file itself
MULTIPART_SLACK = 64 * 1024
MAX_OTHER_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
# what receive() accepts as a form, for the OpenAPI document
MULTIPART_FORM = {"schema": {"type": "object", "required": [FIELD],
                             "properties": {FIELD: {"type": "string", "format": "binary", "description": "the video"}}}}


@dataclass
class Upload:
    path: Path
    filename: str
    size: int
    sha256: str
    head: bytes
    content_type: str | None = None


def too_large(max_bytes: int) -> ApiError:
    return ApiError("upload_too_large",
                    f"the upload is larger than this service accepts ({format_bytes(max_bytes)})")


def safe_filename(name: str | None) -> str:
    """The client's file name, reduced to something safe to echo back and to log: no folders, no control
    characters, at most 200 characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()
    return name[:200] or "upload"


class _Sink:
    """Writes the file part to disk, counting and hashing as it goes; refuses past ``max_bytes``."""

    def __init__(self, directory: Path, max_bytes: int):
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".bin", dir=directory)
        self.path = Path(name)
        self.fh = os.fdopen(fd, "wb")
        self.size = 0
        self.max_bytes = max_bytes
        self.hash = hashlib.sha256()
        self.head = bytearray()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise too_large(self.max_bytes)
        if len(self.head) < media.SNIFF_BYTES:
            self.head += data[: media.SNIFF_BYTES - len(self.head)]
        self.hash.update(data)
        self.fh.write(data)

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()

    def discard(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class _MultipartFile:
    """Streaming multipart/form-data: the first part named ``file`` goes to a _Sink, other fields are skipped
    (bounded), anything malformed is a 400."""

    def __init__(self, boundary: bytes, sink: _Sink):
        self.sink = sink
        self.found = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self._target = False
        self._field, self._value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._parts = 0
        self._other = 0
        self.parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
        })

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ApiError("bad_multipart", f"too many parts in the form (at most {MAX_PARTS})")
        self._headers, self._target = {}, False

    def _header_field(self, data, start, end) -> None:
        self._field += data[start:end]

    def _header_value(self, data, start, end) -> None:
        self._value += data[start:end]
        if len(self._value) > 8192:
            raise ApiError("bad_multipart", "a form part header is too long")

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("latin-1")
        if name == FIELD and not self.found:
            self.found, self._target = True, True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None
            ctype = self._headers.get(b"content-type")
            self.content_type = ctype.decode("latin-1")[:100] if ctype else None

    def _part_data(self, data, start, end) -> None:
        if self._target:
            self.sink.write(data[start:end])
        else:
            self._other += end - start
            if self._other > MAX_OTHER_FIELD_BYTES:
                raise ApiError("bad_multipart", f"form fields other than {FIELD!r} are too large")

    def _part_end(self) -> None:
        self._target = False

    def write(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise ApiError("bad_multipart", f"the multipart body is malformed: {exc}") from None

    def finish(self) -> None:
        try:
            self.parser.finalize()
        except MultipartParseError as exc:
            raise ApiError("bad_multipart", f"the multipart body is malformed: {exc}") from None


def stalled(timeout_s: float) -> ApiError:
    return ApiError("upload_timeout", f"the upload stalled: no data arrived for {timeout_s:g} s")


async def _body(request, timeout_s: float | None):
    """The request body's chunks, each awaited at most ``timeout_s`` seconds (None: without a limit)."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise stalled(timeout_s or 0.0) from None
        yield chunk


async def receive(request, directory: Path, max_bytes: int, *, allow_raw: bool = True,
                  timeout_s: float | None = None) -> Upload:
    """Stream the request's upload into ``directory``; ``timeout_s``: the longest wait for the body's next bytes
    (408 after it). Raises ApiError (the file is then gone)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes + MULTIPART_SLACK:
                raise too_large(max_bytes)
        except ValueError:
            raise ApiError("bad_request", "the Content-Length header is not a number") from None
    ctype_header = request.headers.get("content-type", "")
    ctype, params = parse_options_header(ctype_header)
    ctype = ctype.decode("latin-1").lower() if isinstance(ctype, bytes) else str(ctype).lower()
    sink = _Sink(directory, max_bytes)
    try:
        if ctype == "multipart/form-data":
            boundary = params.get(b"boundary")
            if not boundary:
                raise ApiError("bad_multipart", "multipart/form-data without a boundary")
            form = _MultipartFile(boundary, sink)
            received = 0
            async for chunk in _body(request, timeout_s):
                received += len(chunk)
                if received > max_bytes + MULTIPART_SLACK:
                    raise too_large(max_bytes)
                form.write(chunk)
            form.finish()
            if not form.found:
                raise ApiError("missing_file", f"the form has no {FIELD!r} field with the video")
            filename, content_type = form.filename, form.content_type
        elif allow_raw:
            async for chunk in _body(request, timeout_s):
                sink.write(chunk)
            filename, content_type = request.headers.get("x-filename"), ctype or None
        else:
            raise ApiError("not_multipart", f"send the video as multipart/form-data, field {FIELD!r}")
        sink.close()
    except ClientDisconnect:
        sink.discard()
        raise ApiError("incomplete_upload", "the upload was interrupted before it was complete") from None
    except BaseException:
        sink.discard()
        raise
    return Upload(path=sink.path, filename=safe_filename(filename), size=sink.size,
                  sha256=sink.hash.hexdigest(), head=bytes(sink.head), content_type=content_type)


def _plain_limit(problem: str) -> str:
    """A ``Limits`` message without the command-line flag it names."""
    return re.sub(r"\s*\(--[a-z-]+\)\s*$", "", problem)


def inspect(upload: Upload, limits: Limits) -> dict:
    """Sniff, probe and check limits; returns the header facts (``video``) or raises ApiError.

    Blocking (a header probe may count packets): run it in a thread.
    """
    if upload.size == 0:
        raise ApiError("empty_upload", "the upload is empty (0 bytes)")
    container = media.sniff_container(upload.head)
    if container is None:  # the words `framemark verify` puts in its error entry for the same file
        raise ApiError("not_a_video", media.content_problem(upload.head) or "not a video")
    try:
        info = media.probe_video(upload.path)
    except FramemarkError as exc:
        raise ApiError("unreadable_video", scrub_text(str(exc), upload)) from None
    duration_s = claimed_duration_s(info)  # a lying header cannot promise unbounded decoding
    for code, problem in (("resolution_over_limit", limits.resolution_problem(info.width, info.height)),
                          ("duration_over_limit", limits.duration_problem(duration_s))):
        if problem is not None:
            raise ApiError(code, _plain_limit(problem))
    return {"container": container, "width": info.width, "height": info.height, "fps": round(info.fps, 3),
            "frames": info.num_frames, "duration_s": round(info.duration_s, 3), "codec": info.codec}


def scrub_text(text: str, upload: Upload) -> str:
    """Error texts name the file by its server-side temporary path: name it by what the client called it."""
    return text.replace(repr(str(upload.path)), repr(upload.filename)).replace(str(upload.path), upload.filename)


def scrub(value, upload: Upload):
    """``scrub_text`` over every string of a JSON-like value."""
    if isinstance(value, str):
        return scrub_text(value, upload)
    if isinstance(value, list):
        return [scrub(v, upload) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, upload) for k, v in value.items()}
    return value


def dispose(upload: Upload, keep_dir: str | None) -> str | None:
    """Delete the upload, or move it into ``keep_dir`` as ``<sha256>.bin``; returns where it was kept."""
    try:
        if keep_dir:
            target = Path(keep_dir) / f"{upload.sha256}.bin"
            Path(keep_dir).mkdir(parents=True, exist_ok=True)
            shutil.move(upload.path, target)
            return str(target)
        upload.path.unlink()
    except FileNotFoundError:
        pass
    return None
