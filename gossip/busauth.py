"""Cluster bus authentication with a shared secret: pure, bytes in and out.

With ``cluster-bus-secret`` set, every bus link (either direction) runs this
layer between the socket and the frame codec.  Nothing here does I/O: a
:class:`LinkAuth` is fed what arrives and says what to send.

Theory of operation
-------------------
1. *Hello.*  Each side sends ``MAGIC`` + a fresh 16-byte nonce as soon as the
   link is up (the connecting side and the accepting side alike).
2. *Proof.*  Having the peer's nonce, each side sends one proof per secret it
   holds (a count byte, then 32 bytes each, in its own order of preference):
   ``HMAC-SHA256(secret, "proof" | role | own nonce | peer nonce)``.  The role
   ("O" for the side that connected, "I" for the side that accepted) keeps a
   proof from being reflected back; the peer's fresh nonce keeps a captured
   proof from being replayed on another link.
3. *Agreement.*  A proof is accepted when it matches one of our own secrets.
   The link's secret is the connecting side's first secret that both hold:
   the accepting side finds it as the first of the connecting side's proofs
   that verifies; the connecting side as its first secret matched by one of
   the peer's proofs.  Two secrets at once (``cluster-bus-secret new old``)
   make a rotation safe in two rounds: set "new old" on every node, then
   "new" on every node; any two nodes share a secret all along.
4. *Records.*  Then every frame travels as ``len (4, big endian) | frame |
   tag (16)`` with ``tag = HMAC-SHA256(key, seq | frame)[:16]``; the key is
   derived per direction from the agreed secret and both nonces, and ``seq``
   counts the records of that direction from 0 (implicit, never sent).  A
   frame replayed, reordered, dropped or moved to another link fails its tag.

Any failure raises :class:`AuthError`; the transport closes that link only
and nothing the peer sent reaches the state machine.  Frames given to
:meth:`LinkAuth.seal` before the handshake completes wait and leave sealed
once it does.
"""

from __future__ import annotations

import hashlib
import hmac
import os

MAGIC = b"PNBUSAUTH1"
NONCE_LEN = 16
HELLO_LEN = len(MAGIC) + NONCE_LEN
PROOF_LEN = 32
TAG_LEN = 16
MAX_SECRETS = 4
MAX_RECORD = (1 << 20) + 64    # the codec's largest frame plus its header

OUTBOUND, INBOUND = b"O", b"I"

HELLO, PROOF, OPEN = 0, 1, 2


class AuthError(Exception):
    """The peer did not prove the secret, or a record failed its check."""


def parse_secrets(value: str) -> list[bytes]:
    """``cluster-bus-secret`` value: space separated secrets, preferred first."""
    return [s.encode() for s in value.split()]


def check_secrets(value: str) -> None:
    """Raise ValueError (the reason CONFIG SET shows) for an unusable value."""
    secrets = value.split()
    if len(secrets) > MAX_SECRETS:
        raise ValueError("at most %d secrets (the current one first)" % MAX_SECRETS)
    for s in secrets:
        if len(s) < 8:
            raise ValueError("a cluster bus secret must be at least 8 characters long")
        if len(s) > 512:
            raise ValueError("a cluster bus secret must be at most 512 characters long")


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def _proof(secret: bytes, role: bytes, own: bytes, peer: bytes) -> bytes:
    return _mac(secret, b"pynode-bus-proof", role, own, peer)


def _key(secret: bytes, role: bytes, nonce_o: bytes, nonce_i: bytes) -> bytes:
    return _mac(secret, b"pynode-bus-key", role, nonce_o, nonce_i)


class LinkAuth:
    """One link's side of the handshake and record layer.

    ``outbound``: we connected.  ``secrets``: ours, preferred first (at least
    one).  ``nonce`` is injectable for tests (default: os.urandom).
    """

    __slots__ = ("role", "secrets", "nonce", "peer_nonce", "phase", "buf",
                 "queued", "key_out", "key_in", "seq_out", "seq_in", "secret")

    def __init__(self, outbound: bool, secrets: list[bytes], nonce: bytes | None = None) -> None:
        assert secrets, "a bus secret is needed to authenticate a link"
        self.role = OUTBOUND if outbound else INBOUND
        self.secrets = list(secrets[:MAX_SECRETS])
        self.nonce = nonce if nonce is not None else os.urandom(NONCE_LEN)
        assert len(self.nonce) == NONCE_LEN
        self.peer_nonce = b""
        self.phase = HELLO
        self.buf = bytearray()
        self.queued: list[bytes] = []
        self.key_out = self.key_in = b""
        self.seq_out = self.seq_in = 0
        self.secret = b""              # the agreed secret, once open

    @property
    def is_open(self) -> bool:
        return self.phase == OPEN

    def hello(self) -> bytes:
        """What to send as soon as the link is up."""
        return MAGIC + self.nonce

    def seal(self, frame: bytes) -> bytes:
        """A frame to send: its record, or b"" while the handshake runs (the
        frame is kept and comes out of the feed() that opens the link)."""
        if self.phase != OPEN:
            self.queued.append(frame)
            return b""
        return self._record(frame)

    def _record(self, frame: bytes) -> bytes:
        seq = self.seq_out
        self.seq_out = seq + 1
        tag = _mac(self.key_out, seq.to_bytes(8, "big"), frame)[:TAG_LEN]
        return len(frame).to_bytes(4, "big") + frame + tag

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Bytes from the peer -> (frames' bytes for the codec, bytes to send).
        Raises AuthError; after that the link must be closed."""
        self.buf += data
        out = []
        plain = []
        buf = self.buf
        while True:
            if self.phase == HELLO:
                if len(buf) < HELLO_LEN:
                    if not MAGIC.startswith(bytes(buf[:len(MAGIC)])):
                        raise AuthError("the peer did not start the bus authentication")
                    break
                if buf[:len(MAGIC)] != MAGIC:
                    raise AuthError("the peer did not start the bus authentication")
                self.peer_nonce = bytes(buf[len(MAGIC):HELLO_LEN])
                if self.peer_nonce == self.nonce:
                    raise AuthError("the peer echoed our nonce")
                del buf[:HELLO_LEN]
                self.phase = PROOF
                out.append(bytes([len(self.secrets)]) + b"".join(
                    _proof(s, self.role, self.nonce, self.peer_nonce) for s in self.secrets))
            elif self.phase == PROOF:
                if not buf:
                    break
                n = buf[0]
                if not 1 <= n <= MAX_SECRETS:
                    raise AuthError("bad proof count %d" % n)
                if len(buf) < 1 + n * PROOF_LEN:
                    break
                proofs = [bytes(buf[1 + i * PROOF_LEN:1 + (i + 1) * PROOF_LEN]) for i in range(n)]
                del buf[:1 + n * PROOF_LEN]
                self._open(proofs)
                for frame in self.queued:
                    out.append(self._record(frame))
                self.queued = []
            else:
                if len(buf) < 4:
                    break
                size = int.from_bytes(buf[:4], "big")
                if size > MAX_RECORD:
                    raise AuthError("record of %d bytes is too large" % size)
                end = 4 + size + TAG_LEN
                if len(buf) < end:
                    break
                frame = bytes(buf[4:4 + size])
                tag = bytes(buf[4 + size:end])
                want = _mac(self.key_in, self.seq_in.to_bytes(8, "big"), frame)[:TAG_LEN]
                if not hmac.compare_digest(tag, want):
                    raise AuthError("record %d failed its authentication (forged, replayed "
                                    "or out of order)" % self.seq_in)
                self.seq_in += 1
                del buf[:end]
                plain.append(frame)
        return b"".join(plain), b"".join(out)

    def _open(self, proofs: list[bytes]) -> None:
        peer_role = INBOUND if self.role == OUTBOUND else OUTBOUND
        valid = {s for s in self.secrets for p in proofs
                 if hmac.compare_digest(p, _proof(s, peer_role, self.peer_nonce, self.nonce))}
        if not valid:
            raise AuthError("the peer could not prove the cluster bus secret")
        if self.role == OUTBOUND:
            # our first secret the peer also holds
            secret = next(s for s in self.secrets if s in valid)
            nonce_o, nonce_i = self.nonce, self.peer_nonce
        else:
            # the peer's first proof we can verify names its first shared secret
            secret = b""
            for p in proofs:
                for s in self.secrets:
                    if hmac.compare_digest(p, _proof(s, peer_role, self.peer_nonce, self.nonce)):
                        secret = s
                        break
                if secret:
                    break
            nonce_o, nonce_i = self.peer_nonce, self.nonce
        self.secret = secret
        self.key_out = _key(secret, self.role, nonce_o, nonce_i)
        self.key_in = _key(secret, peer_role, nonce_o, nonce_i)
        self.phase = OPEN
