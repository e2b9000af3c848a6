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


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def read_json_body(
    content_type: str | None, content_length: str | None, parts: AsyncIterator[bytes], limit: int
) -> bytes:
    """The request body, after the media-type (415) and size (413) checks.

    The declared Content-Length is checked before reading, and the running size while
    reading, so an oversized or endless body is cut off at `limit` bytes.
    """
    if not is_json(content_type):
        raise RequestError(
            415, "content-type", "media_type", f"must be application/json (got {content_type or 'none'!r})"
        )
    if content_length is not None:
        if not content_length.isdigit():
            raise RequestError(
                400, "content-length", "type", f"must be a byte count (got {content_length!r})"
            )
        if int(content_length) > limit:
            raise RequestError(
                413, "body", "max_bytes", f"is {int(content_length)} bytes, more than the limit of {limit}"
            )
    received, size = [], 0
    async for part in parts:
        size += len(part)
        if size > limit:
            raise RequestError(413, "body", "max_bytes", f"is more than the limit of {limit} bytes")
        received.append(part)
    return received[0] if len(received) == 1 else b"".join(received)


async def send_json(
    send: Send, status: int, payload: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
