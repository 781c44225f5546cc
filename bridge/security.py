"""Who may talk to the brain: CurveZMQ keys and an allow-list, checked by pyzmq's ZAP authenticator.

Off by default on loopback (the demo and the tests need no keys); on by
default as soon as the brain listens on, or the rig dials, a non-loopback
address. The brain is the CURVE server: each rig (and tool) proves it holds a
secret key whose public half is in ``bridge.allowed_keys``; a peer without
such a key completes no handshake, so it receives nothing and injects
nothing, and the refusal is counted. Keys are made by ``neurojam keys init``
with pyzmq's own ``zmq.auth.create_certificates`` (secret files mode 0600).

Every socket passes through :meth:`Security.apply` before it binds or connects.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth

from core.errors import ConfigError

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

log = logging.getLogger("neurojam.bridge")

TOOL_KEY = "tool"
"""The key name tools (steer, doctor) use when CurveZMQ is on: ``neurojam keys init --node tool``."""


LOCAL_DOMAIN = "neurojam-local"
"""The ZAP domain of key-less links: any credentials pass, and each connection is known by its own."""


class _Authenticator:
    """One ZAP handler per ZeroMQ context (ZeroMQ allows no second), shared by every server socket in the process
    and kept for the process's life (a daemon thread; stopping and restarting one races ZeroMQ's own teardown):
    PLAIN in the local domain lets anyone in under the token they present; CURVE checks each brain's own allow-list
    in that brain's own domain."""

    _lock = threading.Lock()
    _shared: dict[int, "_Authenticator"] = {}

    def __init__(self, ctx: zmq.Context) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        class AnyPlain(ThreadAuthenticator):
            def _authenticate_plain(self, domain, username, password):  # noqa: ARG002
                return domain == LOCAL_DOMAIN, b"OK" if domain == LOCAL_DOMAIN else b"Unknown domain"

        self.auth = AnyPlain(ctx)
        self.auth.start()

    @classmethod
    def of(cls, ctx: zmq.Context) -> "_Authenticator":
        with cls._lock:
            auth = cls._shared.get(id(ctx))
            if auth is None:
                auth = cls._shared[id(ctx)] = cls(ctx)
            return auth


class Security:
    """No keys (loopback, or ``bridge.curve: off`` on purpose). Each link still proves it is *itself*: a client
    connects with PLAIN credentials holding a random token made for this link (never written anywhere), and the
    brain's ZAP handler lets any token in, so every frame arrives with its connection's ``User-Id``. The brain
    binds a node id to the connection that first claims it: a local process that did not start a rig cannot play
    into its jam. (PLAIN is not encryption: on a network use CurveZMQ.)"""

    name = "none"

    def __init__(self, ctx: zmq.Context | None = None) -> None:
        self.token = secrets.token_hex(16)
        self._ctx = ctx

    def apply(self, sock: zmq.Socket, *, server: bool) -> None:
        if server:
            _Authenticator.of(self._ctx or zmq.Context.instance())
            sock.zap_domain = LOCAL_DOMAIN.encode()
            sock.plain_server = True
        else:
            sock.plain_username = f"local:{self.token}".encode()
            sock.plain_password = b"neurojam"

    def close(self) -> None:
        return None


class AllowList:
    """The ZAP callback: a client key is let in only if it is listed. Refusals are counted and logged once."""

    def __init__(self, allowed: list[str]) -> None:
        self.allowed = {k.strip().encode() for k in allowed if k.strip()}
        self.refused = 0
        self._lock = threading.Lock()

    def callback(self, domain: str, key: bytes) -> bool:  # noqa: ARG002
        if key in self.allowed:
            return True
        with self._lock:
            self.refused += 1
            first = self.refused == 1
        if first:
            log.warning("refused a peer whose CurveZMQ key %s is not in bridge.allowed_keys (further refusals "
                        "counted in the link stats)", key.decode(errors="replace"))
        return False


class CurveServer(Security):
    """The brain: CURVE server; the shared ZAP handler checks each client's key against this brain's allow-list,
    and every frame arrives with the client's public key as its ``User-Id``."""

    name = "curve"

    def __init__(self, ctx: zmq.Context, public: bytes, secret: bytes, allowed: list[str]) -> None:
        super().__init__(ctx)
        self.public, self.secret = public, secret
        self.allow = AllowList(allowed)
        self.domain = f"neurojam-curve-{secrets.token_hex(4)}"
        self._auth = _Authenticator.of(ctx).auth
        self._auth.configure_curve_callback(domain=self.domain, credentials_provider=self.allow)

    def apply(self, sock: zmq.Socket, *, server: bool) -> None:
        sock.zap_domain = self.domain.encode()
        sock.curve_secretkey, sock.curve_publickey, sock.curve_server = self.secret, self.public, True

    def close(self) -> None:
        self._auth.credentials_providers.pop(self.domain, None)


class CurveClient(Security):
    """A rig or a tool: proves its key and pins the brain's."""

    name = "curve"

    def __init__(self, public: bytes, secret: bytes, server_public: bytes) -> None:
        super().__init__()
        self.public, self.secret, self.server_public = public, secret, server_public

    def apply(self, sock: zmq.Socket, *, server: bool) -> None:
        sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = self.secret, self.public, self.server_public


# -- keys ------------------------------------------------------------------------------------

def keys_dir(config: "BridgeConfig") -> Path:
    return Path(os.path.expanduser(config.keys_dir))


def create_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """A keypair for node ``name``: ``name.key`` (public, shareable) and ``name.key_secret`` (mode 0600)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def load_keys(directory: Path, name: str) -> tuple[bytes, bytes]:
    """(public, secret) of node ``name``, with a message that says how to make them if they are missing."""
    secret_file = directory / f"{name}.key_secret"
    if not secret_file.exists():
        raise ConfigError(f"CurveZMQ is on but {secret_file} does not exist: make this node's keys with "
                          f"`neurojam keys init --node {name}` (or set bridge.keys_dir to where they are).")
    try:
        public, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{secret_file}: not a readable CurveZMQ secret key file ({exc}).") from exc
    if secret is None:
        raise ConfigError(f"{secret_file}: holds no secret key; run `neurojam keys init --node {name}` again.")
    return public, secret


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name such as brain.local: the network


def curve_wanted(config: "BridgeConfig", server: bool) -> bool:
    if config.curve != "auto":
        return bool(config.curve)
    return not is_loopback(config.bind_host if server else config.host)


def security_for(config: "BridgeConfig", node: str, *, server: bool, ctx: zmq.Context | None = None) -> Security:
    """The security a node's link uses, from its config: none, a CURVE server (the brain) or a CURVE client."""
    if not curve_wanted(config, server):
        return Security()
    public, secret = load_keys(keys_dir(config), node)
    if server:
        if not config.allowed_keys:
            raise ConfigError("CurveZMQ is on but bridge.allowed_keys is empty, so no rig could connect: add each "
                              "rig's public key (the text `neurojam keys init --node RIG` prints, or the contents of "
                              "its RIG.key file's public-key line).")
        return CurveServer(ctx or zmq.Context.instance(), public, secret, config.allowed_keys)
    if not config.brain_public_key:
        raise ConfigError("CurveZMQ is on but bridge.brain_public_key is empty: paste the brain's public key (the "
                          "text `neurojam keys init --node brain` printed on the brain machine).")
    return CurveClient(public, secret, config.brain_public_key.strip().encode())


def public_key_text(public_file: Path) -> str:
    public, _ = zmq.auth.load_certificate(str(public_file))
    return public.decode()
