#!/bin/bash
# The rows of the edits other than crops, strip and mirror, after the crop phases (issue 18), 2026-12-03: the cache
# was runs/gpu7/cache (files/, clips.json and footage-128x128.npz). That run packed its rows as pack7.tgz.
# usage: bash docs/bench-results/platform50-phases-h200-b.sh "EDIT1;EDIT2;..." SECONDS
CACHE=runs/gpu7/cache exec bash "$(dirname "$0")/platform-edits-h200.sh" "$@"
