"""Verification of uploaded videos: C2PA, watermark recovery, ledger lookup, passive classification."""

# Defaults shared by the library and the CLI; kept here, free of imports, so the CLI can show them in --help
# without loading torch.
DEFAULT_FPR = 1e-6
# Euler inversion steps. On exact sampler latents 10 steps recover 0.61 of the signs against 0.64 at 20, at
# half the cost (see docs/watermark.md, "On the default model").
DEFAULT_INVERSION_STEPS = 10
# Frames decoded per file (two minutes at 30 fps): longer clips are checked on their start. At the working size
# (256 pixels for the embedded model) 3,600 frames are about 400 MB; without one DEFAULT_MAX_DECODED_BYTES binds.
DEFAULT_MAX_FRAMES = 3600
# Bytes of decoded frames one file may hold: a longer or larger clip is checked on its start (4K: 43 frames). With
# a working size (``VerifySettings.fit``) frames are small and this is never reached; without one it keeps a 4K
# upload from holding 600 full-size frames (15 GB).
DEFAULT_MAX_DECODED_BYTES = 1 << 30
