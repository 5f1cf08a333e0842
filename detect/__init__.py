"""Verification of uploaded videos: C2PA, watermark recovery, ledger lookup, passive classification."""
