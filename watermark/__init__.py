"""The latent watermark codec (pure numpy/torch: no diffusers, no c2pa, no file I/O)."""
