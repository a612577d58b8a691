"""Building the MIME message of rendered parts.

Headers are encoded and folded here (RFC 2047 encoded words, lines under 78 characters) and
stored with ``set_raw``; both parts are UTF-8 in base64. The result is an ordinary
``EmailMessage`` that also keeps its wire form: ``as_bytes`` returns it at no cost while the
message is unchanged, and serialises normally once someone edits it. Building it through
``EmailMessage.__setitem__`` / ``set_content`` gives the same bytes but costs several
milliseconds per message in header objects and refolding — most of the time of composing one.
"""

from __future__ import annotations

import base64
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import formataddr
from typing import cast

_WORD_BYTES = 39  # 52 base64 characters: "Subject: " plus one encoded word stays under 78


class _UrlListHeader(UnstructuredHeader):
    """List-Unsubscribe as receivers parse it: ``<url>`` entries folded after commas, never
    RFC 2047 encoded (the ``email`` package would encode a word longer than a line)."""

    def fold(self, *, policy: Policy) -> str:
        header = cast(BaseHeader, self)  # the registry mixes BaseHeader in
        entries = [entry.strip() for entry in str(header).split(",")]
        return f"{header.name}: " + ("," + policy.linesep + " ").join(entries) + policy.linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", cast("type[BaseHeader]", _UrlListHeader))
MAIL_POLICY = SMTP.clone(header_factory=_HEADERS)


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 ``=?utf-8?b?…?=`` words, never splitting a character."""
    words: list[str] = []
    chunk = b""
    for char in text:
        data = char.encode()
        if chunk and len(chunk) + len(data) > _WORD_BYTES:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
            chunk = b""
        chunk += data
    if chunk:
        words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
    return words


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and "=?" not in text


def header_text(text: str) -> str:
    """An unstructured header value (a subject): as is when plain ASCII, else encoded words
    on folded lines."""
    text = " ".join(text.split())
    if _plain(text):
        return text
    return "\r\n ".join(encoded_words(text))


def address(name: str, addr: str) -> str:
    """``Name <addr>`` with the name quoted or encoded as needed."""
    name = " ".join(name.split())
    if not name:
        return addr
    if _plain(name):
        return formataddr((name, addr))
    words = encoded_words(name)
    if len(words) == 1 and len(words[0]) + len(addr) < 66:
        return f"{words[0]} <{addr}>"
    return "\r\n ".join([*words, f"<{addr}>"])


def _part(content_type: str, body: str) -> tuple[EmailMessage, str]:
    """The part and its wire text."""
    canonical = body.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    payload = base64.encodebytes(canonical).decode().replace("\n", "\r\n")
    part = EmailMessage(policy=MAIL_POLICY)
    headers = [
        ("Content-Type", f'{content_type}; charset="utf-8"'),
        ("Content-Transfer-Encoding", "base64"),
    ]
    for name, value in headers:
        part.set_raw(name, value)
    part.set_payload(payload)
    return part, _head(headers) + "\r\n" + payload


def _head(headers: list[tuple[str, str]]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers)


class ComposedMessage(EmailMessage):
    """An ``EmailMessage`` that remembers its bytes as composed."""

    wire: bytes = b""
    snapshot: object = None

    def _state(self) -> object:
        parts = cast(list[EmailMessage], self.get_payload())
        return (
            tuple(self._headers),  # type: ignore[attr-defined]
            tuple((tuple(p._headers), p.get_payload()) for p in parts),  # type: ignore[attr-defined]
        )

    def as_bytes(self, unixfrom: bool = False, policy: Policy | None = None) -> bytes:
        if self.wire and not unixfrom and self._state() == self.snapshot:
            linesep = (policy or self.policy).linesep
            return self.wire if linesep == "\r\n" else self.wire.replace(b"\r\n", linesep.encode())
        return super().as_bytes(unixfrom=unixfrom, policy=policy)


BOUNDARY = "=_ekiden_alternative"  # "=_" never occurs in base64, the only content here


def build_message(headers: list[tuple[str, str]], text: str, html: str) -> EmailMessage:
    """A multipart/alternative message of ``text`` and ``html`` with ``headers`` (values
    already encoded and folded) first."""
    message = ComposedMessage(policy=MAIL_POLICY)
    headers = [
        *headers,
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative;\r\n boundary="{BOUNDARY}"'),
    ]
    for name, value in headers:
        message.set_raw(name, value)
    (text_part, text_wire), (html_part, html_wire) = (
        _part("text/plain", text),
        _part("text/html", html),
    )
    message.set_payload([text_part, html_part])
    message.wire = (
        f"{_head(headers)}\r\n--{BOUNDARY}\r\n{text_wire}\r\n--{BOUNDARY}\r\n{html_wire}"
        f"\r\n--{BOUNDARY}--\r\n"
    ).encode()
    message.snapshot = message._state()
    return message
