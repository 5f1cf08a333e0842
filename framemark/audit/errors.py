"""The one error an audit raises (everything else about a bad file goes into that file's row)."""

from __future__ import annotations

from framemark.errors import FramemarkError


class AuditError(FramemarkError):
    """The audit as asked cannot run: unusable input, list or labels, an output folder made with other settings
    or in use, a worker that does not start. Never raised for one bad file (that file gets a row)."""
