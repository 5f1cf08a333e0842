"""C2PA signing credentials in the key directory: a local root CA, an ES256 signing certificate, or a chain the
user brings; and the trust anchors a verifier starts from.

Files in ``$FRAMEMARK_HOME`` (all mode 0600, written by :func:`framemark.keys.write_private`):

    c2pa-ca.pem          the local root CA certificate (a trust anchor for `framemark verify` on this machine)
    c2pa-ca-key.pem      its private key: kept so that a new signing certificate can be issued under the same root
    c2pa-signer.pem      signing certificate chain, leaf first
    c2pa-signer-key.pem  the signing private key
    c2pa-signer.json     {"version", "source": "local" | "imported", "alg", "tsa_url"}

Why a local CA rather than a self-signed leaf: C2PA validators refuse a self-signed signing certificate, and a
root that is separate from the signing key lets the signing certificate be renewed without changing the trust
anchor that verifiers were given. The extensions are the ones c2pa checks at sign time (shared/NOTES.md): the
root is a CA (BasicConstraints, keyCertSign); the leaf has digitalSignature (critical), the emailProtection
extended key usage, and subject/authority key identifiers.

Certificate construction is pure (``make_local_ca``, ``issue_signing_certificate``: data in, PEM out); the
functions that touch files are the ones taking ``home``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from framemark.errors import FramemarkError
from framemark.keys import framemark_home, write_private
from framemark.signer import LocalKeySigner, SignerError

CA_CERT_FILE = "c2pa-ca.pem"
CA_KEY_FILE = "c2pa-ca-key.pem"
SIGNER_CHAIN_FILE = "c2pa-signer.pem"
SIGNER_KEY_FILE = "c2pa-signer-key.pem"
SIGNER_CONFIG_FILE = "c2pa-signer.json"

CA_DAYS = 3650
SIGNER_DAYS = 730
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock differences between signer and verifier
_ORG = "framemark (local)"


class CredentialError(FramemarkError):
    """Signing credentials are missing, malformed, mismatched, expired, or would be overwritten."""


@dataclass(frozen=True)
class CredentialPaths:
    ca_cert: Path
    ca_key: Path
    signer_chain: Path
    signer_key: Path
    signer_config: Path

    @classmethod
    def of(cls, home: Path | None = None) -> "CredentialPaths":
        home = Path(home) if home is not None else framemark_home()
        return cls(home / CA_CERT_FILE, home / CA_KEY_FILE, home / SIGNER_CHAIN_FILE, home / SIGNER_KEY_FILE,
                   home / SIGNER_CONFIG_FILE)


# ------------------------------------------------------------------------------------------------ pure x509

def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG)])


def _key_usage(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def make_local_ca(now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A new P-256 root CA: (certificate PEM, private key PEM)."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"framemark local root CA {secrets.token_hex(4)}")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem(cert), _key_pem(key)


def issue_signing_certificate(ca_cert_pem: bytes, ca_key_pem: bytes,
                              now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A new ES256 (P-256) C2PA signing certificate under the given CA: (chain PEM leaf + CA, key PEM)."""
    now = now or _now()
    ca_cert = parse_certificates(ca_cert_pem, "CA certificate")[0]
    try:
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"the local CA key is not readable ({exc})") from exc
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + dt.timedelta(days=SIGNER_DAYS), ca_cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder().subject_name(_name(f"framemark signer {secrets.token_hex(4)}"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _pem(cert) + ca_cert_pem, _key_pem(key)


def parse_certificates(pem: bytes, what: str = "certificate file") -> list[x509.Certificate]:
    """Every certificate in a PEM blob, in order; CredentialError when there is none or one is malformed."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CredentialError(f"{what} is not a PEM certificate (chain): {exc}") from exc
    if not certs:
        raise CredentialError(f"{what} holds no certificate")
    return certs


def describe_certificate(cert: x509.Certificate) -> dict:
    """Public facts about a certificate, for `keys show` and reports (never anything secret)."""
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat(),
            "serial": format(cert.serial_number, "x"),
            "sha256": cert.fingerprint(hashes.SHA256()).hex()}


def check_signing_credentials(chain_pem: bytes, key_pem: bytes, now: dt.datetime | None = None) -> list:
    """Validate a signing chain and key before c2pa sees them; returns the parsed chain.

    Checks what c2pa would otherwise report obscurely or only at sign time: the key matches the leaf, the leaf
    is within its validity period, it allows digital signatures and names an extended key usage.
    """
    now = now or _now()
    chain = parse_certificates(chain_pem, "signing certificate chain")
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"the signing key is not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise CredentialError(f"{type(key).__name__} signing keys are not supported: use EC P-256 (ES256), "
                              f"P-384, P-521 or Ed25519")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, public)
            != leaf.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise CredentialError("the signing key does not belong to the first certificate of the chain "
                              f"({leaf.subject.rfc4514_string()})")
    if now < leaf.not_valid_before_utc:
        raise CredentialError(f"the signing certificate is not valid before {leaf.not_valid_before_utc.isoformat()}")
    if now > leaf.not_valid_after_utc:
        raise CredentialError(f"the signing certificate expired on {leaf.not_valid_after_utc.isoformat()}")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise CredentialError("the signing certificate's key usage does not allow digital signatures")
    except x509.ExtensionNotFound:
        pass
    try:
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise CredentialError("the signing certificate has no extended key usage; C2PA requires one (e.g. "
                              "emailProtection or documentSigning as its trust list allows)") from None
    return chain


def _check_tsa_url(tsa_url: str | None) -> str | None:
    if tsa_url is not None and not tsa_url.startswith(("http://", "https://")):
        raise CredentialError(f"time-stamp authority URL must be http(s)://..., got {tsa_url!r}")
    return tsa_url


# ------------------------------------------------------------------------------------------------ key directory

def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _write_signer(paths: CredentialPaths, chain_pem: bytes, key_pem: bytes, source: str,
                  tsa_url: str | None) -> None:
    alg = LocalKeySigner(chain_pem, key_pem).alg
    write_private(paths.signer_key, key_pem.decode())
    write_private(paths.signer_chain, chain_pem.decode())
    write_private(paths.signer_config, json.dumps({"version": 1, "source": source, "alg": alg,
                                                   "tsa_url": tsa_url}, indent=2) + "\n")


def create_local(home: Path | None = None, overwrite: bool = False, tsa_url: str | None = None) -> list[str]:
    """Create what is missing of the local CA and signing certificate (everything with ``overwrite``).

    Returns the names of the files written. A missing signing certificate is issued under the existing CA, so
    verifiers that trust this machine's CA keep trusting new clips.
    """
    paths = CredentialPaths.of(home)
    _check_tsa_url(tsa_url)
    written = []
    if overwrite or not paths.ca_cert.exists():
        ca_pem, ca_key = make_local_ca()
        write_private(paths.ca_key, ca_key.decode())
        write_private(paths.ca_cert, ca_pem.decode())
        written += [CA_CERT_FILE, CA_KEY_FILE]
    signer_missing = not (paths.signer_chain.exists() and paths.signer_key.exists())
    if overwrite or written or signer_missing:
        if not paths.ca_key.exists():
            raise CredentialError(f"the local CA key {paths.ca_key} is missing, so no signing certificate can be "
                                  f"issued under {paths.ca_cert}: run `framemark keys init --force` for a new CA")
        chain, key = issue_signing_certificate(_read(paths.ca_cert, "CA certificate"),
                                               _read(paths.ca_key, "CA key"))
        _write_signer(paths, chain, key, "local", tsa_url)
        written += [SIGNER_CHAIN_FILE, SIGNER_KEY_FILE, SIGNER_CONFIG_FILE]
    return written


def import_signer(chain_pem: bytes, key_pem: bytes, home: Path | None = None, tsa_url: str | None = None,
                  overwrite: bool = False) -> list[str]:
    """Store a chain and key the user brings (checked first) as this machine's signing credentials."""
    paths = CredentialPaths.of(home)
    _check_tsa_url(tsa_url)
    if paths.signer_chain.exists() and not overwrite:
        raise CredentialError(f"signing credentials already exist at {paths.signer_chain} (use --force to replace "
                              f"them; clips signed before stay valid)")
    check_signing_credentials(chain_pem, key_pem)
    try:
        _write_signer(paths, chain_pem, key_pem, "imported", tsa_url)
    except SignerError as exc:
        raise CredentialError(str(exc)) from exc
    return [SIGNER_CHAIN_FILE, SIGNER_KEY_FILE, SIGNER_CONFIG_FILE]


def signer_config(home: Path | None = None) -> dict:
    paths = CredentialPaths.of(home)
    if not paths.signer_config.exists():
        return {"source": "local", "tsa_url": None}
    try:
        return json.loads(_read(paths.signer_config, "signer settings"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CredentialError(f"signer settings {paths.signer_config} are not valid JSON: {exc}") from exc


def load_signer(home: Path | None = None, tsa_url: str | None = None) -> LocalKeySigner:
    """This machine's signer; ``tsa_url`` overrides the stored time-stamp authority."""
    paths = CredentialPaths.of(home)
    if not (paths.signer_chain.exists() and paths.signer_key.exists()):
        raise CredentialError(f"no C2PA signing credentials at {paths.signer_chain}: run `framemark keys init` "
                              f"(or `framemark keys init --cert chain.pem --key key.pem`)")
    chain_pem, key_pem = _read(paths.signer_chain, "signing chain"), _read(paths.signer_key, "signing key")
    try:
        check_signing_credentials(chain_pem, key_pem)
    except CredentialError as exc:
        raise CredentialError(f"{paths.signer_chain}: {exc}") from exc
    tsa = _check_tsa_url(tsa_url) if tsa_url is not None else signer_config(home).get("tsa_url")
    try:
        return LocalKeySigner(chain_pem, key_pem, tsa)
    except SignerError as exc:
        raise CredentialError(f"{paths.signer_key}: {exc}") from exc


@contextmanager
def _creation_lock(home: Path | None):
    """Serialise first-use creation between processes (several generators started at once on a fresh machine
    must not each write their own CA over the other's)."""
    folder = Path(home) if home is not None else framemark_home()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / ".c2pa-create.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_or_create_signer(home: Path | None = None, tsa_url: str | None = None) -> tuple[LocalKeySigner, bool]:
    """This machine's signer, creating a local CA and signing certificate first when there are none."""
    paths = CredentialPaths.of(home)
    created = False
    if not (paths.signer_chain.exists() and paths.signer_key.exists()):
        with _creation_lock(home):
            if not (paths.signer_chain.exists() and paths.signer_key.exists()):
                create_local(home)
                created = True
    return load_signer(home, tsa_url), created


def trust_anchors(home: Path | None = None) -> list[bytes]:
    """The key directory's own trust anchor (its local CA certificate), when there is one."""
    paths = CredentialPaths.of(home)
    return [_read(paths.ca_cert, "CA certificate")] if paths.ca_cert.exists() else []


def read_trust_file(path: Path) -> bytes:
    """A PEM file of trust anchors given by the user, checked to hold certificates."""
    pem = _read(Path(path), "trust anchors")
    parse_certificates(pem, f"trust anchor file {path}")
    return pem


def summary(home: Path | None = None) -> dict:
    """What `framemark keys show` prints: subjects, expiry, fingerprints, source; never key material."""
    paths = CredentialPaths.of(home)
    out: dict = {"ca": None, "signer": None}
    if paths.ca_cert.exists():
        out["ca"] = {"path": str(paths.ca_cert),
                     **describe_certificate(parse_certificates(_read(paths.ca_cert, "CA certificate"))[0])}
    if paths.signer_chain.exists():
        chain = parse_certificates(_read(paths.signer_chain, "signing chain"), f"{paths.signer_chain}")
        config = signer_config(home)
        out["signer"] = {"path": str(paths.signer_chain), "source": config.get("source"),
                         "alg": config.get("alg"), "tsa_url": config.get("tsa_url"),
                         "chain_length": len(chain), **describe_certificate(chain[0])}
    return out
