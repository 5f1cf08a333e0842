"""Benchmark the provenance layer: what C2PA signing, C2PA verification and the ledger add per clip.

    python bench/provenance.py [--clips 50] [--prefill 10000] [--json]

One real clip is generated with the default model (marked with the bench key); then, for each of --clips
payloads, the clip is signed the way `framemark generate` signs (manifest + middle-frame JPEG thumbnail +
c2pa ES256 signature, written to a new file), read back and validated with c2pa against the local CA, recorded
in a ledger that already holds --prefill rows, and looked up again (row + detached manifest validation, as
`framemark verify` does for a stripped clip). Prints a table of medians, then (with --json) one JSON object as
the last line:

  sign_ms            median ms to build, thumbnail and sign one 17x128x128 clip (c2pa Builder.sign, ES256)
  c2pa_verify_ms     median ms for c2pa to read and validate one signed file (Trusted)
  ledger_insert_ms   median ms for one ledger insert (one BEGIN IMMEDIATE transaction, WAL, manifest blob)
  ledger_lookup_ms   median ms to look a clip id up (index on clip_id, key_id)
  recover_ms         median ms for lookup + validation of the stored manifest store (the ledger part of verify)
  manifest_store_bytes  median size of the manifest store embedded in each clip (and kept in the ledger)
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from framemark import credentials, manifest, media, provenance
from framemark.generator import emit
from framemark.generator.models import GenerationRequest
from framemark.ledger import Ledger
from framemark.watermark import Payload

from common import BENCH_KEY, add_model_arguments, load_model


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - start) * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=50, help="clips signed, verified, recorded and looked up")
    ap.add_argument("--prefill", type=int, default=10_000, help="rows in the ledger before timing starts")
    add_model_arguments(ap)
    args = ap.parse_args(argv)

    model = load_model(args)
    rng = random.Random(7)
    times: dict[str, list[float]] = {k: [] for k in ("sign_ms", "c2pa_verify_ms", "ledger_insert_ms",
                                                     "ledger_lookup_ms", "recover_ms")}
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        credentials.create_local(tmp)
        signer, anchors = credentials.load_signer(tmp), tuple(credentials.trust_anchors(tmp))
        request = model.check_inputs(GenerationRequest(prompt="a red circle moving left", seed=1))
        source = tmp / "clip.mp4"
        clip = emit.emit_clip(model, request, source, key=BENCH_KEY, payload=Payload(1))
        frames = media.read_video(source).frames
        identity = clip.model
        with Ledger(tmp / "ledger.db") as ledger:
            filler = bytes(16_000)
            for i in range(args.prefill):
                ledger.record(payload=Payload(rng.getrandbits(48)), key_id=BENCH_KEY.key_id, model=identity,
                              manifest_store=filler)
            for i in range(args.clips):
                payload = Payload(rng.getrandbits(48))
                target = tmp / f"signed-{i}.mp4"

                def sign():
                    definition = manifest.build_manifest(
                        title=target.name, model=identity, prompt=request.prompt,
                        generation={"seed": request.seed, "steps": request.steps, "frames": request.frames},
                        payload=payload.to_bytes(), key_id=BENCH_KEY.key_id, duration_ms=2125)
                    thumbnail = media.jpeg(frames[len(frames) // 2])
                    return provenance.sign_file(source, target, definition, signer, thumbnail)

                store, ms = timed(sign)
                times["sign_ms"].append(ms)
                sizes.append(len(store))
                checked, ms = timed(provenance.read_file, target, anchors)
                assert checked["state"] == "Trusted", checked
                times["c2pa_verify_ms"].append(ms)
                _, ms = timed(ledger.record, payload=payload, key_id=BENCH_KEY.key_id, model=identity,
                              manifest_store=store)
                times["ledger_insert_ms"].append(ms)
                found, ms = timed(ledger.lookup, payload, key_id=BENCH_KEY.key_id)
                assert found and found[0].manifest_store == store
                times["ledger_lookup_ms"].append(ms)

                def recover():
                    entry = ledger.lookup(payload, key_id=BENCH_KEY.key_id)[0]
                    return provenance.read_manifest_store(entry.manifest_store, anchors)

                recovered, ms = timed(recover)
                assert recovered["state"] == "Trusted", recovered["codes"]
                times["recover_ms"].append(ms)
                target.unlink()
                print(f"\r  {i + 1}/{args.clips} clips", end="", file=sys.stderr, flush=True)
            rows = ledger.count()
    print(file=sys.stderr)

    result = {name: round(statistics.median(values), 3) for name, values in times.items()}
    result.update(manifest_store_bytes=int(statistics.median(sizes)), clips=args.clips, ledger_rows=rows,
                  threads=args.threads, cpu=platform.processor() or platform.machine(),
                  c2pa_python=provenance.c2pa_version())
    print(f"{'metric (median over ' + str(args.clips) + ' clips)':<36}{'value':>10}")
    for name in times:
        print(f"{name:<36}{result[name]:>10.2f}")
    print(f"{'manifest_store_bytes':<36}{result['manifest_store_bytes']:>10d}")
    print(f"{'ledger rows at the end':<36}{rows:>10d}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
