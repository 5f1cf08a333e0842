"""The project's error types.

Front doors (CLI, service) turn these into clear messages and exit codes; anything else that escapes is a bug.
"""


class FramemarkError(Exception):
    """Base class for errors that are the user's input, not our bug."""


class MediaError(FramemarkError):
    """A file could not be read or written as video (corrupt, truncated, not a video, unsupported)."""


class ModelError(FramemarkError):
    """A model folder is missing, incomplete or not loadable."""


class GenerationError(FramemarkError):
    """A generation request the model cannot serve (empty or over-long prompt, unsupported size)."""
