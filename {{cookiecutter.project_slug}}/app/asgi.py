"""Raw-ASGI pieces shared by every JSON endpoint: body limits, media type, JSON responses.

Kept free of any framework so the hot routes (`/predict`, the OIP infer call) can be
answered straight from the ASGI callable, and the framework routes reuse the same checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from app.validation import RequestError

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away before its body arrived; there is nobody to answer."""


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


# What an OIP client may declare for a body of binary tensor data (app/binary_tensors.py); the
# vendor type some Triton clients send ends in +json, so is_json already accepts it.
BINARY_MEDIA_TYPES = frozenset({"application/octet-stream"})


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    media = media_type(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check_media_type(content_type: str | None, oip: bool) -> None:
    """415 unless the body is declared JSON; the OIP infer call also takes no declaration and octet-stream.

    Why the difference: the protocol requires no Content-Type and tritonclient sends none (nor
    for its binary bodies), while /predict and /feedback keep the strict rule, so a browser's
    form or text post (which always declares its type) never reaches them.
    """
    if is_json(content_type) or (
        oip and (content_type is None or media_type(content_type) in BINARY_MEDIA_TYPES)
    ):
        return
    expected = "application/json, application/octet-stream or none" if oip else "application/json"
    raise RequestError(
        415, "content-type", "media_type", f"must be {expected} (got {content_type or 'none'!r})"
    )


async def chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def read_json_body(
    content_type: str | None,
    content_length: str | None,
    parts: AsyncIterator[bytes],
    limit: int,
    oip: bool = False,
) -> bytes:
    """The request body, after the media-type (415) and size (413) checks.

    The declared Content-Length is checked before reading, and the running size while
    reading, so an oversized or endless body is cut off at `limit` bytes. `oip`: the media
    types of the OIP infer call (check_media_type).
    """
    check_media_type(content_type, oip)
    if content_length is not None:
        if not (content_length.isascii() and content_length.isdigit()):
            raise RequestError(
                400, "content-length", "type", f"must be a byte count (got {content_length!r})"
            )
        if (
            len(content_length.lstrip("0")) > len(str(limit)) or int(content_length) > limit
        ):  # not int("9" * 5000)
            raise RequestError(
                413, "body", "max_bytes", f"is {content_length[:40]} bytes, more than the limit of {limit}"
            )
    received, size = [], 0
    async for part in parts:
        size += len(part)
        if size > limit:
            raise RequestError(413, "body", "max_bytes", f"is more than the limit of {limit} bytes")
        received.append(part)
    return received[0] if len(received) == 1 else b"".join(received)


async def send_json(
    send: Send,
    status: int,
    payload: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
