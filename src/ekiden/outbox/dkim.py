"""DKIM signing (RFC 6376) of outgoing messages.

dkimpy parses and canonicalises the message and builds the DKIM-Signature header; the RSA
operation itself goes through ``cryptography`` (OpenSSL), which is about twenty times faster
than dkimpy's pure-Python arithmetic and keeps signing far below a millisecond per message.
Signatures are rsa-sha256, relaxed/simple (dkimpy's default), verifiable with
``dkim.verify``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from ekiden.config import Settings

HEADER_NAME = b"DKIM-Signature"
CANONICALIZATION = b"relaxed/simple"


@lru_cache(maxsize=8)
def load_private_key(path: str) -> rsa.RSAPrivateKey:
    """The RSA private key in the PEM file at ``path``; ValueError says what is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the DKIM key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 1024:
        raise ValueError(f"{path} must hold an RSA key of at least 1024 bits (2048 advised)")
    return key


@dataclass(frozen=True)
class DkimSigner:
    domain: str
    selector: str
    key: rsa.RSAPrivateKey

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer the settings describe, or None when DKIM is not configured."""
        if not settings.dkim_private_key_path:
            return None
        missing = [name for name in ("dkim_domain", "dkim_selector") if not getattr(settings, name)]
        if missing:
            names = ", ".join(f"EKIDEN_{n.upper()}" for n in missing)
            raise ValueError(f"EKIDEN_DKIM_PRIVATE_KEY_PATH is set but {names} is not")
        return cls(
            settings.dkim_domain,
            settings.dkim_selector,
            load_private_key(settings.dkim_private_key_path),
        )

    def public_record(self) -> str:
        """The TXT record to publish at ``SELECTOR._domainkey.DOMAIN``."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def signature_header(self, message: bytes) -> bytes:
        """The ``DKIM-Signature: …\\r\\n`` line to put in front of ``message``."""
        parsed = dkim.DKIM(message)
        policy = dkim.CanonicalizationPolicy.from_c_value(CANONICALIZATION)
        include = tuple(h.lower() for h in parsed.default_sign_headers())
        body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(parsed.body)).digest())
        domain = self.domain.encode()
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", CANONICALIZATION),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector.encode()),
            # wall time: the signature's own timestamp, checked by receivers
            (b"t", str(int(time.time())).encode()),
            (b"h", b" : ".join(include)),
            (b"bh", body_hash),
            (b"b", b"0" * 60),  # folds b= onto its own line, as dkimpy does
        ]
        unsigned = dkim.fold(
            b"; ".join(b"=".join(f) for f in fields), namelen=len(HEADER_NAME), linesep=b"\r\n"
        )
        unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
        digest = hashlib.sha256()
        dkim.hash_headers(
            digest,
            policy,
            policy.canonicalize_headers(parsed.headers),
            include,
            (HEADER_NAME, b" " + unsigned),
            dict(fields),
        )
        signature = self.key.sign(
            digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        fields[-1] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
        folded = bytes(dkim.fold(value, namelen=len(HEADER_NAME), linesep=b"\r\n"))
        return HEADER_NAME + b": " + folded

    def sign(self, message: bytes) -> bytes:
        return self.signature_header(message) + message
