"""framemark: provenance for generative video.

The shared base lives here (media I/O, errors, configuration); the generator, the watermark codec and the
verifier are the subpackages ``framemark.generator``, ``framemark.watermark`` and ``framemark.detect``.
"""

__version__ = "0.1.0"
