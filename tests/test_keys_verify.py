"""Key storage, marking by default, and `framemark verify` on real files (good, corrupt, not video)."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from framemark import credentials, keys
from framemark.generator import emit
from framemark.generator.models import GenerationRequest
from framemark.watermark import Payload, extract


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A $FRAMEMARK_HOME that does not exist yet: `keys init` and the first `generate` create it (mode 0700)."""
    monkeypatch.setenv("FRAMEMARK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


SECRET_FILES = [keys.WATERMARK_KEY_FILE, credentials.CA_CERT_FILE, credentials.CA_KEY_FILE,
                credentials.SIGNER_CHAIN_FILE, credentials.SIGNER_KEY_FILE, credentials.SIGNER_CONFIG_FILE]


def test_keys_init_writes_private_keys_and_refuses_to_overwrite(home, cli):
    result = cli("keys", "init")
    assert result.exit_code == 0, result.output
    for name in SECRET_FILES:
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    key = keys.load_watermark_key()
    assert key.key_id in result.output and key.secret.hex() not in result.output
    ca = (home / credentials.CA_CERT_FILE).read_bytes()
    again = cli("keys", "init")
    assert again.exit_code == 2 and "already exists" in again.output
    assert keys.load_watermark_key() == key and (home / credentials.CA_CERT_FILE).read_bytes() == ca
    assert cli("keys", "init", "--force").exit_code == 0
    assert keys.load_watermark_key() != key and (home / credentials.CA_CERT_FILE).read_bytes() != ca


def test_keys_init_creates_only_what_is_missing(home, cli):
    assert cli("keys", "init").exit_code == 0
    key, ca = keys.load_watermark_key(), (home / credentials.CA_CERT_FILE).read_bytes()
    old_signer = (home / credentials.SIGNER_CHAIN_FILE).read_bytes()
    (home / credentials.SIGNER_CHAIN_FILE).unlink()
    (home / credentials.SIGNER_KEY_FILE).unlink()
    result = cli("keys", "init")
    assert result.exit_code == 0 and credentials.SIGNER_CHAIN_FILE in result.output
    assert "watermark" not in result.output and credentials.CA_CERT_FILE + " " not in result.output
    assert keys.load_watermark_key() == key and (home / credentials.CA_CERT_FILE).read_bytes() == ca
    new_chain = (home / credentials.SIGNER_CHAIN_FILE).read_bytes()
    assert new_chain != old_signer and new_chain.endswith(ca)  # re-issued under the same root


def test_keys_show_prints_subjects_and_expiry_never_secrets(home, cli):
    assert cli("keys", "show").exit_code == 2  # nothing yet
    cli("keys", "init")
    shown = cli("keys", "show")
    assert shown.exit_code == 0, shown.output
    assert "framemark local root CA" in shown.output and "framemark signer" in shown.output
    assert "expires" in shown.output and keys.load_watermark_key().key_id in shown.output
    assert "PRIVATE KEY" not in shown.output and keys.load_watermark_key().secret.hex() not in shown.output
    info = json.loads(cli("keys", "show", "--json").output)
    assert info["signer"]["alg"] == "es256" and info["signer"]["source"] == "local"
    assert info["signer"]["issuer"] == info["ca"]["subject"]


def test_bring_your_own_chain_and_key(home, tmp_path, cli):
    ca_pem, ca_key = credentials.make_local_ca()
    chain, key_pem = credentials.issue_signing_certificate(ca_pem, ca_key)
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key_pem)
    (tmp_path / "other.pem").write_bytes(credentials.issue_signing_certificate(ca_pem, ca_key)[1])
    mismatched = cli("keys", "init", "--cert", tmp_path / "chain.pem", "--key", tmp_path / "other.pem")
    assert mismatched.exit_code == 2 and "does not belong" in mismatched.output
    bad_tsa = cli("keys", "init", "--cert", tmp_path / "chain.pem", "--key", tmp_path / "key.pem", "--tsa-url", "ftp://x")
    assert bad_tsa.exit_code == 2 and "time-stamp" in bad_tsa.output
    result = cli("keys", "init", "--cert", tmp_path / "chain.pem", "--key", tmp_path / "key.pem",
                 "--tsa-url", "http://tsa.example/")
    assert result.exit_code == 0, result.output
    assert not (home / credentials.CA_CERT_FILE).exists()  # no local CA when the user brings a chain
    info = json.loads(cli("keys", "show", "--json").output)
    assert info["signer"]["source"] == "imported" and info["signer"]["tsa_url"] == "http://tsa.example/"
    assert stat.S_IMODE((home / credentials.SIGNER_KEY_FILE).stat().st_mode) == 0o600
    again = cli("keys", "init", "--cert", tmp_path / "chain.pem", "--key", tmp_path / "key.pem")
    assert again.exit_code == 2 and "already exist" in again.output
    assert cli("keys", "init", "--cert", tmp_path / "chain.pem").exit_code == 2  # --key missing


def test_a_chain_without_extended_key_usage_is_refused(home, tmp_path, cli):
    """c2pa refuses such a leaf at sign time; we say so at import, in words."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no eku")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    result = cli("keys", "init", "--cert", tmp_path / "c.pem", "--key", tmp_path / "k.pem")
    assert result.exit_code == 2 and "extended key usage" in result.output


def test_malformed_key_file_is_a_clear_error(home):
    home.mkdir(parents=True)
    (home / keys.WATERMARK_KEY_FILE).write_text('{"version": 1, "secret": "zz"}')
    with pytest.raises(keys.KeyError_, match="not usable"):
        keys.load_watermark_key()


def test_first_generate_creates_the_key_and_marks_the_clip(home, tmp_path, cli):
    out = tmp_path / "c.mp4"
    result = cli("generate", "a red circle moving left", "-o", str(out), "--steps", "3", "--json")
    assert result.exit_code == 0, result.output
    assert "created a watermark key" in result.output and "created a local C2PA root CA" in result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    key = keys.load_watermark_key()
    assert record["watermark"]["key_id"] == key.key_id
    assert record["c2pa"]["signer"].startswith("framemark signer") and record["ledger"]["row"] == 1
    again = cli("generate", "a red circle moving left", "-o", str(tmp_path / "d.mp4"), "--steps", "3")
    assert "created" not in again.output  # the second run reuses what the first made
    unmarked = cli("generate", "a red circle moving left", "-o", str(tmp_path / "u.mp4"), "--steps", "3",
                   "--no-watermark", "--json")
    assert json.loads(unmarked.output.strip().splitlines()[-1])["watermark"] is None


def test_generation_starts_from_the_marked_noise(model, watermark_key):
    """The marked z_T is what the sampler starts from: frames equal a direct call with those latents, and the
    latents themselves carry the payload."""
    key, payload = watermark_key, Payload(0x123456789ABC)
    request = model.check_inputs(GenerationRequest("a blue square moving right", seed=4, steps=3))
    z_t = emit.watermarked_latents(model, request, key, payload)
    assert z_t.shape == model.latent_shape(request.frames, request.height, request.width)
    assert extract(key, z_t).payload == payload
    plain = model.generate(request)
    marked = model.generate(request, latents=z_t)
    assert not np.array_equal(plain, marked)
    assert np.array_equal(marked, model.generate(request, latents=z_t.clone()))


def test_verify_reports_each_file_and_exits_3_on_bad_ones(keyed_home, make_clip, cli, tmp_path):
    home = keyed_home("verify")
    good = tmp_path / "good.mp4"
    make_clip(good, "a red circle moving left", home=home, steps=3)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    result = cli("verify", good, corrupt, text, "--json", "--steps", "2", home=home)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    reports = json.loads(result.stdout)
    assert [r["file"] for r in reports] == [str(good), str(corrupt), str(text)]
    assert reports[0]["errors"] == [] and reports[0]["watermark"]["key_id"] == keys.load_watermark_key(
        keys.watermark_key_path(home)).key_id
    assert 0.0 <= reports[0]["watermark"]["p_value"] <= 1.0
    assert reports[1]["errors"] and reports[2]["errors"]


def test_verify_with_a_missing_key_file_exits_2(home, tmp_path, cli):
    result = cli("verify", str(tmp_path / "x.mp4"), "--key", str(tmp_path / "nokey.json"))
    assert result.exit_code == 2 and "framemark keys init" in result.output


def test_verify_without_any_key_checks_c2pa_only_and_exits_3(home, tmp_path, cli):
    result = cli("verify", str(tmp_path / "x.mp4"), "--json")
    assert result.exit_code == 3 and "checking C2PA manifests only" in result.output
    (report,) = json.loads(result.stdout)
    assert report["verdict"] is None and "file not found" in report["errors"][0]
