#!/bin/bash
# The crop, strip and mirror rows after the crop phases (issue 18), 2026-12-03: the cache was runs/gpu6/cache
# (files/, clips.json and the crop_area* CRF 28 files). That run wrote its rows into $OUT unpacked.
# usage: bash docs/bench-results/platform50-phases-h200.sh "EDIT1;EDIT2;..." SECONDS
CACHE=runs/gpu6/cache exec bash "$(dirname "$0")/platform-edits-h200.sh" "$@"
