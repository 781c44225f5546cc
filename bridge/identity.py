"""Who is who on the brain's wire: which connection may speak as which node, and which rigs it may see and steer.

Every frame reaches the brain with its connection's identity (ZeroMQ's ``User-Id``): with CurveZMQ the peer's
public key; without keys a random token the link made for itself (``bridge/security.py``). The book binds each
node id to one identity:

- a node id belongs to the identity that first claims it (its hello or first frame), or, with keys, to the key
  ``bridge.identities`` names for it; a frame from any other identity claiming that id is dropped and counted;
- a rig that restarts takes its id back at once: with keys, the same key; without, once its old connection has
  closed (the brain's ping to it fails; ZeroMQ heartbeats close a connection whose peer died silently);
- with keys, a key named ``rig:NAME`` in ``bridge.identities`` speaks only as NAME and sees only NAME, also when
  it says hello as a stage or tool, and controls nothing (:meth:`IdentityBook.rig_of_key`: a rig plays, tools
  steer, set tempo and ask for treats); ``tool`` sees and steers every rig, ``tool:A,B`` only A and B; a key not
  named there that owns a rig is that rig's key the same way; without keys every local process may watch and
  steer (the stage and ``neurojam steer`` are local tools), but only a rig's own connection plays as it;
- new ids are bounded: at most ``max_rigs`` rigs and ``max_stages`` stages and tools, and ``new_ids_per_minute``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

ROLES_WATCHING = ("stage", "tool")


@dataclass
class Claim:
    identity: str
    role: str
    connected: bool = True


@dataclass
class IdentityBook:
    identities: dict[str, str] = field(default_factory=dict)
    """Public key (Z85) → 'rig:NAME', 'tool' or 'tool:A,B' (``bridge.identities``)."""
    max_rigs: int = 64
    max_stages: int = 16
    new_ids_per_minute: int = 120
    keyed: bool = False
    """CurveZMQ: identities are public keys, and outlive a connection."""
    clock: Callable[[], float] = time.monotonic
    claims: dict[str, Claim] = field(default_factory=dict)
    refused: Counter = field(default_factory=Counter)
    _new: deque = field(default_factory=deque)

    def claim(self, node: str, identity: str, role: str, quiet: bool = False) -> str | None:
        """May ``identity`` speak as ``node`` (in role ``role``)? None if yes (and the id is now bound), else the
        reason code, counted. ``quiet``: the connection that owns the id is gone (without keys a new connection
        may then take the id over: a restart)."""
        reason = self._claim(node, identity, role, quiet)
        if reason:
            self.refused[reason] += 1
        return reason

    def _claim(self, node: str, identity: str, role: str, quiet: bool) -> str | None:
        named = self.identities.get(identity, "")
        if named.startswith("rig:") and (node != named[4:] and role == "rig"):
            return "identity_mismatch"  # this key is that rig's and no other's
        for key, what in self.identities.items():
            if what == f"rig:{node}" and key != identity:
                return "identity_mismatch"  # that rig id belongs to another key
        claim = self.claims.get(node)
        if claim is not None:
            if claim.identity == identity:
                claim.connected = True
                if role != claim.role and claim.role == "rig" and role in ROLES_WATCHING:
                    return "identity_mismatch"
                return None
            if self.keyed or (claim.connected and not quiet):
                return "identity_mismatch"
            del self.claims[node]  # its connection closed: a restart takes the id back
        watching = role in ROLES_WATCHING
        if watching and sum(c.role in ROLES_WATCHING for c in self.claims.values()) >= self.max_stages:
            return "too_many_stages"
        if not watching and sum(c.role not in ROLES_WATCHING for c in self.claims.values()) >= self.max_rigs:
            return "too_many_rigs"
        now = self.clock()
        while self._new and now - self._new[0] > 60:
            self._new.popleft()
        if len(self._new) >= self.new_ids_per_minute:
            return "new_id_rate"
        self._new.append(now)
        self.claims[node] = Claim(identity, role)
        return None

    def owns(self, node: str, identity: str) -> bool:
        claim = self.claims.get(node)
        return claim is not None and claim.identity == identity

    def disconnected(self, identity: str) -> list[str]:
        """A connection closed: without keys, its ids are free for the next to claim them (a restart)."""
        gone = [node for node, c in self.claims.items() if c.identity == identity]
        for node in gone:
            self.claims[node].connected = False
        return gone

    def release(self, node: str) -> None:
        """Forget a node id (an idle rig dropped); with keys a named key keeps its right to it."""
        self.claims.pop(node, None)

    @classmethod
    def from_config(cls, config, *, keyed: bool, clock: Callable[[], float] = time.monotonic) -> "IdentityBook":
        """The book a brain keeps, from its ``bridge`` section."""
        return cls(identities=dict(config.identities), max_rigs=config.max_rigs, max_stages=config.max_stages,
                   new_ids_per_minute=config.new_ids_per_minute, keyed=keyed, clock=clock)

    def rigs_of(self, node: str) -> set[str] | None:
        """The rigs ``node`` may see and steer; None means every rig. Without keys every local process may (the
        stage and ``neurojam steer`` are local tools); only who may *play* as a rig is checked."""
        if not self.keyed:
            return None
        claim = self.claims.get(node)
        if claim is None:
            return set()
        named = self.identities.get(claim.identity, "")
        if named.startswith("rig:"):
            return {named[4:]}
        if named == "tool":
            return None
        if named.startswith("tool:"):
            return {r.strip() for r in named[5:].split(",") if r.strip()}
        own = {n for n, c in self.claims.items() if c.identity == claim.identity and c.role not in ROLES_WATCHING}
        return own if own or claim.role not in ROLES_WATCHING else None

    def rig_of_key(self, node: str) -> str | None:
        """With keys, the rig whose key ``node`` speaks with (named ``rig:NAME``, or unnamed and owning a rig's id),
        else None. A rig's key plays; a control under it (tempo, treat, steer) is refused, whatever role it claims:
        a key stolen from one Pi must not retempo or treat another pet, nor its own from a hello as a tool."""
        if not self.keyed or (claim := self.claims.get(node)) is None:
            return None
        named = self.identities.get(claim.identity, "")
        if named.startswith("rig:"):
            return named[4:]
        if named:
            return None
        return next((n for n, c in sorted(self.claims.items()) if c.identity == claim.identity and c.role == "rig"),
                    None)

    def may_steer(self, node: str, rig: str) -> bool:
        """May ``node`` control rig ``rig`` ('' : every rig it may see)?"""
        rigs = self.rigs_of(node)
        return rigs is None or (bool(rig) and rig in rigs)

    def may_see(self, node: str, rig: str) -> bool:
        rigs = self.rigs_of(node)
        return rigs is None or rig in rigs
