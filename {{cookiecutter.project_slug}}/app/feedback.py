"""Who may label a prediction: feedback tokens, and optional API keys for POST /feedback.

Why: the labels sent to /feedback become the retraining set (monitoring/dataset.py), so a
label for a prediction the sender never received is an attack on the next model. Request
ids are made to be unique, not secret, so every scored row gets a feedback token instead:

    token = "<request_id>.<row>." + base64url(HMAC-SHA256(key, "<request_id>:<row>")[:16])

The token names its prediction in plain text (the answer shows both anyway) and the tag makes
it unforgeable: the server checks it with the key alone (no lookup, no state shared between
replicas), so whoever holds it received that prediction, and nobody can make one for a
prediction, a row or a request they did not receive. The 128-bit tag is HMAC-SHA256 truncated
as RFC 2104 allows, costs about two microseconds per row, and is compared with
`hmac.compare_digest`.

The key is a mounted secret (FEEDBACK_KEY_FILE), the same file in every replica: one key per
line, the first signs and every line verifies, so a key is rotated without refusing the
tokens already handed out (add the new key as a second line, roll out; move it first, roll
out; drop the old one once its tokens no longer matter). In development, without a file, the
service makes a random key per process and says so: its tokens die with the process.

FEEDBACK_API_KEYS_FILE adds a second, independent check: /feedback then also needs
`Authorization: Bearer <key>` with one of the file's keys (one per line), and each label
records which key sent it (`labelled_by`, a fingerprint, never the key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.validation import RequestError, shown

log = logging.getLogger("app")
TAG_BYTES = 16
MIN_KEY_CHARS = 32  # `openssl rand -base64 32` gives 44
MIN_API_KEY_CHARS = 16
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# <request_id>.<row, no leading zero>.<16-byte tag: 22 base64url characters>; ASCII classes only
TOKEN = re.compile(r"([A-Za-z0-9_-]{1,128})\.(0|[1-9][0-9]{0,8})\.([A-Za-z0-9_-]{22})")
HOW_TO_MAKE_ONE = "make one with `openssl rand -base64 32`"


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and what is wrong."""


def read_keys(path: Path, min_chars: int) -> tuple[bytes, ...]:
    """The non-empty lines of a key file (lines starting with # are comments), each long enough."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError(f"{path} cannot be read: {error}") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise KeyFileError(f"{path} holds no key ({HOW_TO_MAKE_ONE})")
    for number, key in enumerate(keys, start=1):
        if len(key) < min_chars:
            raise KeyFileError(
                f"{path}: key {number} has {len(key)} characters, fewer than {min_chars} ({HOW_TO_MAKE_ONE})"
            )
    return tuple(key.encode() for key in keys)


def local_key(path: Path) -> Path:
    """A key file for `mlops serve` on a workstation: created once (mode 0600), then reused."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path


class FeedbackTokens:
    """Issue and verify feedback tokens with the keys of FEEDBACK_KEY_FILE (the first one signs)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self.keys = tuple(keys)
        # HMAC-SHA256 of the signing key as RFC 2104 defines it, H((K ^ opad) + H((K ^ ipad) + m)),
        # with both keyed states hashed once here: a row then costs two state copies, about half
        # of `hmac.digest` (which pads and hashes the key again on every call). `verify` uses the
        # hmac module itself, and the tests hold the two equal.
        key = self.keys[0]
        block = hashlib.sha256().block_size
        key = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    @classmethod
    def from_settings(cls, key_file: Path | None) -> FeedbackTokens:
        if key_file is not None:
            return cls(read_keys(key_file, MIN_KEY_CHARS))
        log.warning(
            "FEEDBACK_KEY_FILE is not set: feedback tokens are signed with a random key of this process "
            "(development only); they stop verifying when it restarts and on every other replica"
        )
        return cls([secrets.token_urlsafe(32).encode()])

    def issue(self, request_id: str, rows: int) -> list[str]:
        """The token of each row of one scored request, in row order (about 2 µs a row)."""
        if not REQUEST_ID.fullmatch(request_id):
            raise ValueError(f"request id {request_id!r} cannot be named in a feedback token")
        encode, outer = base64.urlsafe_b64encode, self._outer.copy
        inner = self._inner.copy()
        inner.update(f"{request_id}:".encode())  # the request's part of the message, hashed once
        tokens = []
        for row in range(rows):
            mac = inner.copy()
            mac.update(b"%d" % row)
            tag = outer()
            tag.update(mac.digest())
            tokens.append(f"{request_id}.{row}.{encode(tag.digest()[:TAG_BYTES])[:22].decode()}")
        return tokens

    def verify(self, token: Any, where: str) -> tuple[str, int]:
        """(request_id, row) named by a token this service issued, else a RequestError.

        422 `format`: not a token at all (wrong type or shape); 403 `signature`: shaped like one
        but not signed with any of the keys (guessed, altered, or issued by a deployment with
        another key).
        """
        match = TOKEN.fullmatch(token) if type(token) is str else None
        if match is None:
            raise RequestError(
                422,
                where,
                "format",
                "must be the feedback_token of a prediction, as /predict answered it: "
                f"<request_id>.<row>.<tag> (got {shown(token)})",
            )
        request_id, row, signature = match.groups()
        tag = base64.urlsafe_b64decode(signature + "==")  # 22 characters of the alphabet: always 16 bytes
        message = f"{request_id}:{row}".encode()
        valid = False
        for key in self.keys:  # every key is tried, so the time taken does not say which one matched
            valid |= hmac.compare_digest(hmac.digest(key, message, "sha256")[:TAG_BYTES], tag)
        if not valid:
            raise RequestError(
                403,
                where,
                "signature",
                "was not issued by this service (guessed, altered, or signed with another key)",
            )
        return request_id, int(row)


class ApiKeys:
    """The keys of FEEDBACK_API_KEYS_FILE; only their SHA-256 digests are kept in memory."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self.digests = tuple(hashlib.sha256(key).digest() for key in keys)

    @classmethod
    def from_settings(cls, keys_file: Path | None) -> ApiKeys | None:
        return cls(read_keys(keys_file, MIN_API_KEY_CHARS)) if keys_file is not None else None

    def check(self, authorization: str | None) -> str:
        """The fingerprint of the key an `Authorization: Bearer <key>` header carries, else 401."""
        if not authorization:
            raise RequestError(
                401, "authorization", "required", "is required: send `Authorization: Bearer <API key>`"
            )
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise RequestError(
                401, "authorization", "scheme", "must be `Bearer <API key>` (got another scheme or no key)"
            )
        digest = hashlib.sha256(credential.encode()).digest()
        found = None
        for known in self.digests:  # no early exit: the time taken does not say which key matched
            if hmac.compare_digest(known, digest):
                found = known
        if found is None:
            raise RequestError(401, "authorization", "unknown_key", "is not one of the service's API keys")
        return f"sha256:{found.hex()[:12]}"
