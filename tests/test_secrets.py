"""No repr, log line, error message, printed line or written file carries the watermark secret or a private key.

One key directory goes through what a user does with it: `keys init`, `keys show`, a signed and marked `generate`,
`verify` of the clip and of a bad file, `ledger lookup`, an `audit` with its HTML report, and runs given a wrong
--key file (a key file whose id does not match its secret, the bare secret, a PEM private key). Everything they
print (stdout, stderr, the audit workers' stderr, log records) and every file they write (apart from the key files
themselves) is searched for the secret in every form it could leak in: hex in either case, base64, the raw bytes,
Python's bytes repr; and for each private key: its PEM body lines, its base64 DER and the DER bytes.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from framemark import credentials, keys

KEY_FILES = {keys.WATERMARK_KEY_FILE, credentials.CA_KEY_FILE, credentials.SIGNER_KEY_FILE}
PROMPT = "a red circle moving left"


# ------------------------------------------------------------------------------------------------ the search

@dataclass(frozen=True)
class Secrets:
    """What must never leave the key files, as (what it is, the bytes to search for)."""

    needles: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, home: Path) -> "Secrets":
        secret = keys.load_watermark_key(keys.watermark_key_path(home)).secret
        needles = [("watermark secret, hex", secret.hex().encode()),
                   ("watermark secret, HEX", secret.hex().upper().encode()),
                   ("watermark secret, base64", base64.b64encode(secret)),
                   ("watermark secret, base64 without padding", base64.b64encode(secret).rstrip(b"=")),
                   ("watermark secret, urlsafe base64", base64.urlsafe_b64encode(secret).rstrip(b"=")),
                   ("watermark secret, raw bytes", secret),
                   ("watermark secret, bytes repr", repr(secret)[2:-1].encode())]
        for name in (credentials.CA_KEY_FILE, credentials.SIGNER_KEY_FILE):
            pem = (home / name).read_bytes()
            body = [line.strip() for line in pem.splitlines() if line.strip() and not line.startswith(b"-----")]
            # a short last line could occur by chance in a binary file; the full lines and the DER cannot
            needles += [(f"{name}, PEM line {i + 1}", line) for i, line in enumerate(body) if len(line) >= 16]
            der = base64.b64decode(b"".join(body))
            needles += [(f"{name}, base64 DER", base64.b64encode(der)), (f"{name}, DER bytes", der)]
        return cls(tuple(needles))

    def found_in(self, data: bytes | str) -> list[str]:
        data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        found = [what for what, needle in self.needles if needle in data]
        if b"PRIVATE KEY" in data:
            found.append("a PEM private key header")
        return found

    def assert_absent(self, data: bytes | str, where: str) -> None:
        found = self.found_in(data)
        assert not found, f"{where} carries {', '.join(found)}"


def output_of(result) -> str:
    """All a click run showed: stdout and stderr, and the exception it ended with."""
    parts = [result.output]
    for stream in ("stdout", "stderr"):
        try:
            parts.append(getattr(result, stream))
        except ValueError:  # stderr not captured separately by this click
            pass
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        parts.append(repr(result.exception))
    return "\n".join(parts)


class Records(logging.Handler):
    """Every log record of the process, formatted as a handler would write it (tracebacks included)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


# ------------------------------------------------------------------------------------------------ the session

@pytest.fixture(scope="module")
def session(tmp_path_factory, cli):
    work = tmp_path_factory.mktemp("secrets")
    home = work / "home"
    printed: dict[str, str] = {}
    records = Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)

    def run(name, *args, code=0, in_home=home):
        result = cli(*args, home=in_home)
        printed[name] = output_of(result)
        assert result.exit_code == code, f"{name}: {printed[name]}"
        return result

    try:
        run("keys init", "keys", "init")
        secrets = Secrets.of(home)
        run("keys show", "keys", "show")
        run("keys show --json", "keys", "show", "--json")
        clips = work / "clips"
        clips.mkdir()
        clip = clips / "clip.mp4"
        made = run("generate --json", "generate", PROMPT, "-o", clip, "--steps", 3, "--json")
        record = json.loads(made.stdout.strip().splitlines()[-1])
        assert record["watermark"] and record["c2pa"] and record["ledger"]  # marked, signed, recorded
        bad = clips / "bad.mp4"
        bad.write_bytes(clip.read_bytes()[:2000])
        (clips / "notes.txt").write_text("not a video\n")
        run("verify --json", "verify", clip, bad, "--json", "--steps", 2, code=3)
        run("verify", "verify", clip, "--steps", 2)
        run("ledger lookup --json", "ledger", "lookup", record["watermark"]["payload"], "--json")
        run("ledger lookup", "ledger", "lookup", record["watermark"]["payload"])

        # wrong --key files: an id that does not match the secret, the bare secret, a PEM private key
        wrong = work / "wrong"
        wrong.mkdir()
        mismatched = wrong / "mismatched.json"
        key_dict = json.loads((home / keys.WATERMARK_KEY_FILE).read_text())
        mismatched.write_text(json.dumps({**key_dict, "key_id": "00000000"}))
        bare = wrong / "bare.json"
        bare.write_text(key_dict["secret"] + "\n")
        signer_pem = home / credentials.SIGNER_KEY_FILE
        for label, key_file in (("mismatched", mismatched), ("bare secret", bare), ("PEM", signer_pem)):
            run(f"verify --key {label}", "verify", clip, "--key", key_file, code=2)
            run(f"generate --key {label}", "generate", PROMPT, "-o", wrong / "x.mp4", "--key", key_file, code=2)
        run("keys init --key <watermark key>", "keys", "init", "--cert", home / credentials.SIGNER_CHAIN_FILE,
            "--key", home / keys.WATERMARK_KEY_FILE, code=2, in_home=work / "other-home")

    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
    return {"home": home, "work": work, "printed": printed, "logs": records.lines, "secrets": secrets,
            "clip": clip, "bad": bad, "clips": clips}


@pytest.fixture(scope="module")
def audited(session, tmp_path_factory):
    """`framemark audit` of the clips folder with an HTML report, run as the console script (its worker processes
    write to the real stderr, which a click runner would not see)."""
    work = tmp_path_factory.mktemp("secrets-audit")
    out, report = work / "audit", work / "report" / "audit.html"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("framemark")), "audit", str(session["clips"]), "--out", str(out),
         "--report", str(report), "--steps", "2", "--threads", "1", "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "FRAMEMARK_HOME": str(session["home"])})
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    return {"work": work, "out": out, "report": report, "printed": printed}


def test_the_search_finds_every_form_of_every_secret(session):
    """The check can fail: each needle, printed inside other text, is found."""
    secrets: Secrets = session["secrets"]
    for what, needle in secrets.needles:
        with pytest.raises(AssertionError, match="carries"):
            secrets.assert_absent(b"error: " + needle + b" is not a key\n", "a made-up message")
    assert any(what.startswith(credentials.SIGNER_KEY_FILE) for what, _ in secrets.needles)
    assert any(what.startswith(credentials.CA_KEY_FILE) for what, _ in secrets.needles)


def test_no_command_prints_a_secret(session):
    expected = {"keys init", "keys show --json", "generate --json", "verify --json", "ledger lookup --json",
                "verify --key mismatched", "verify --key bare secret", "verify --key PEM"}
    assert expected <= set(session["printed"])
    for name, text in session["printed"].items():
        session["secrets"].assert_absent(text, f"the output of `{name}`")


def test_no_log_line_carries_a_secret(session):
    for line in session["logs"]:
        session["secrets"].assert_absent(line, f"the log line {line[:120]!r}")


def test_no_written_file_carries_a_secret(session):
    """The clip, its manifest, the ledger, the audit's rows, settings, thumbnails and report, and anything else
    under the key directory and the work folder, apart from the key files themselves."""
    written = [p for root in (session["home"], session["work"]) for p in sorted(root.rglob("*"))
               if p.is_file() and not (p.parent == session["home"] and p.name in KEY_FILES)]
    names = {p.name for p in written}
    assert {"clip.mp4", "ledger.db", credentials.SIGNER_CHAIN_FILE} <= names, sorted(names)
    for path in written:
        if path.name in ("mismatched.json", "bare.json"):  # the test's own wrong key files hold the secret
            continue
        session["secrets"].assert_absent(path.read_bytes(), str(path))


def test_the_audit_prints_and_writes_no_secret(session, audited):
    """What `audit` prints (its workers' stderr included), its results.jsonl, audit.json, thumbnails and report."""
    session["secrets"].assert_absent(audited["printed"], "the output of `audit`")
    written = sorted(p for p in audited["work"].rglob("*") if p.is_file())
    names = {p.name for p in written}
    assert {"results.jsonl", "audit.json", "audit.html"} <= names, sorted(names)
    for path in written:
        session["secrets"].assert_absent(path.read_bytes(), str(path))


def test_reprs_of_what_holds_a_secret_show_none(session, monkeypatch):
    from framemark import runtime
    from framemark.audit import AuditConfig
    from framemark.limits import Limits

    monkeypatch.setenv("FRAMEMARK_HOME", str(session["home"]))
    resolved = runtime.resolve(runtime.Options(classifier=False), "verify")
    assert resolved.key is not None
    config = AuditConfig(resolved=resolved, limits=Limits(max_frames=resolved.options.max_frames), threads=1)
    signer = credentials.load_signer(session["home"])
    shown = {"WatermarkKey": resolved.key, "Resolved": resolved, "Options": resolved.options, "AuditConfig": config,
             "LocalKeySigner": signer}
    with resolved.load() as rt:
        shown["Runtime"] = rt
        for name, thing in shown.items():
            for text in (repr(thing), str(thing), f"{thing}", f"{thing!r}"):
                session["secrets"].assert_absent(text, f"repr/str of {name}")
        assert resolved.key.key_id in repr(resolved.key)  # it still says which key
    generating = runtime.resolve(runtime.Options(), "generate")
    with generating.load() as rt:
        assert rt.signer is not None
        for thing in (generating, rt, rt.signer):
            session["secrets"].assert_absent(repr(thing) + str(thing), f"repr/str of {type(thing).__name__}")


def test_the_service_logs_no_secret(session, monkeypatch, caplog):
    """`framemark serve`'s log lines and answers, for a verify, a bad upload, a generate and the info page."""
    from fastapi.testclient import TestClient

    from framemark.serve.app import create_app
    from framemark.serve.settings import Settings

    monkeypatch.setenv("FRAMEMARK_HOME", str(session["home"]))
    answers = []
    with caplog.at_level(logging.DEBUG):
        app = create_app(Settings(auth=False, queue_limit=2, max_generate_steps=2, max_generate_frames=5, steps=2))
        with TestClient(app, raise_server_exceptions=False) as client:
            for name, path in (("clip.mp4", session["clip"]), ("bad.mp4", session["bad"])):
                answers.append(client.post("/v1/verify", files={"file": (name, path.read_bytes(), "video/mp4")}))
            answers.append(client.post("/v1/verify", files={"file": ("x.mp4", b"junk" * 100, "video/mp4")}))
            answers.append(client.post("/v1/generate", json={"prompt": PROMPT, "steps": 2, "frames": 5}))
            answers.append(client.get("/v1/info"))
    assert answers[0].status_code == 200 and answers[3].status_code == 200, [a.status_code for a in answers]
    for answer in answers:
        session["secrets"].assert_absent(answer.content + json.dumps(dict(answer.headers)).encode(),
                                         f"the answer to {answer.request.method} {answer.request.url.path}")
    assert caplog.records
    for record in caplog.records:
        text = caplog.handler.format(record)
        session["secrets"].assert_absent(text, f"the service's log line {text[:120]!r}")
