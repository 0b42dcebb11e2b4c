"""Who may talk to a node: mutual TLS, a cluster secret, or plaintext (docs/security.md).

    import craft

    # A cluster secret: every node and client holds the same file (make it once, copy it with
    # the same care as a private key).
    craft.generate_secret("cluster.secret")
    node = craft.Node(1, "10.0.0.1:7001", "/var/lib/kv/1", KV(), peers=peers,
                      security=craft.Secret(file="cluster.secret"))

    # Mutual TLS 1.3: each server's certificate names its id (subjectAltName URI
    # craft:server:<id>), signed by a CA every node trusts.
    node = craft.Node(1, "10.0.0.1:7001", "/var/lib/kv/1", KV(), peers=peers,
                      security=craft.TLS(cert="n1.pem", key="n1.key", ca="ca.pem"))

security=None is plaintext: nothing is authenticated or encrypted, and the node's log says so.
Rotation without downtime: Node.set_security() with a CA bundle holding the old and the new CA,
or a Secret that also accepts the old secret (accept_file=), as docs/security.md describes.
"""

import os
from typing import Any, Dict, Optional, Union

from . import _craft
from ._errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["TLS", "Secret", "generate_secret", "Security"]


class TLS:
    """Mutual TLS 1.3 with certificates (PEM files).

    cert: this side's certificate (optionally followed by intermediates); key: its private key
    (unencrypted); ca: the CA certificate(s) the other side's certificate must chain to (a file
    with several CAs trusts them all: the window of a rotation). verify_id (default True): a
    server's certificate must name the server id it claims (subjectAltName URI
    "craft:server:<id>", or a subject CN "craft-server-<id>"); a client's certificate names
    none."""

    def __init__(self, cert: PathLike, key: PathLike, ca: PathLike, verify_id: bool = True):
        self.cert, self.key, self.ca = os.fspath(cert), os.fspath(key), os.fspath(ca)
        self.verify_id = bool(verify_id)

    def _to_c(self) -> Dict[str, Any]:
        return {"mode": _craft.SECURITY_TLS, "cert_file": self.cert, "key_file": self.key,
                "ca_file": self.ca, "verify_id": self.verify_id}

    def __repr__(self) -> str:
        return (f"craft.TLS(cert={self.cert!r}, key={self.key!r}, ca={self.ca!r}, "
                f"verify_id={self.verify_id})")


class Secret:
    """A cluster secret: TLS 1.3 with a pre-shared key derived from it (HKDF-SHA256; a
    passphrase is stretched with scrypt first). Every node and client of the cluster uses the
    same secret and the same cluster_id.

    file: a file whose bytes are the secret (craft.generate_secret makes one), or passphrase: a
    phrase of at least 8 characters (a generated file is better). accept_file /
    accept_passphrase: a second secret accepted from others, not used to connect (the window of
    a rotation)."""

    def __init__(self, file: Optional[PathLike] = None, *, passphrase: Optional[str] = None,
                 accept_file: Optional[PathLike] = None,
                 accept_passphrase: Optional[str] = None):
        if (file is None) == (passphrase is None):
            raise ConfigError("craft.Secret needs one of file= and passphrase=")
        if accept_file is not None and accept_passphrase is not None:
            raise ConfigError("craft.Secret takes at most one of accept_file= and "
                              "accept_passphrase=")
        self.file = os.fspath(file) if file is not None else None
        self.passphrase = passphrase
        self.accept_file = os.fspath(accept_file) if accept_file is not None else None
        self.accept_passphrase = accept_passphrase

    def _to_c(self) -> Dict[str, Any]:
        return {"mode": _craft.SECURITY_SECRET, "secret_file": self.file,
                "passphrase": self.passphrase, "accept_secret_file": self.accept_file,
                "accept_passphrase": self.accept_passphrase}

    def __repr__(self) -> str:
        what = f"file={self.file!r}" if self.file is not None else "passphrase=..."
        if self.accept_file is not None:
            what += f", accept_file={self.accept_file!r}"
        elif self.accept_passphrase is not None:
            what += ", accept_passphrase=..."
        return f"craft.Secret({what})"


Security = Union[TLS, Secret, None]


def _to_c(security: Security) -> Optional[Dict[str, Any]]:
    if security is None:
        return None
    if isinstance(security, (TLS, Secret)):
        return security._to_c()
    raise ConfigError(f"security must be craft.TLS(...), craft.Secret(...) or None, "
                      f"not {type(security).__name__}")


def generate_secret(path: PathLike) -> None:
    """Writes a new random cluster secret (32 bytes from the system's CSPRNG, base64) to a new
    file, readable by its owner only. Raises FileExistsError rather than replace a secret."""
    _craft.generate_secret(os.fspath(path))


def check(security: Security, cluster_id: int = 0) -> None:
    """Raises ConfigError when the settings cannot work (a missing file, a key that does not
    match its certificate, a secret too short, ...); the keys are derived as a node would."""
    _craft.check_security(_to_c(security), cluster_id)
