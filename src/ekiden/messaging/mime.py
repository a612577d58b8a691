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


def _payload(body: str) -> str:
    """A text part's body with CRLF line ends, UTF-8 in base64 lines of 76 characters."""
    canonical = body.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    encoded = base64.b64encode(canonical).decode()
    # the lines base64.encodebytes writes (76 characters), in one join instead of a loop
    return "".join(f"{encoded[i : i + 76]}\r\n" for i in range(0, len(encoded), 76))


def _part_headers(content_type: str) -> list[tuple[str, str]]:
    return [
        ("Content-Type", f'{content_type}; charset="utf-8"'),
        ("Content-Transfer-Encoding", "base64"),
    ]


def _part(content_type: str, payload: str) -> EmailMessage:
    part = EmailMessage(policy=MAIL_POLICY)
    for name, value in _part_headers(content_type):
        part.set_raw(name, value)
    part.set_payload(payload)
    return part


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


def _top_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        *headers,
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative;\r\n boundary="{BOUNDARY}"'),
    ]


def _wire(headers: list[tuple[str, str]], text_payload: str, html_payload: str) -> bytes:
    text_head = _head(_part_headers("text/plain"))
    html_head = _head(_part_headers("text/html"))
    return (
        f"{_head(headers)}\r\n--{BOUNDARY}\r\n{text_head}\r\n{text_payload}\r\n--{BOUNDARY}\r\n"
        f"{html_head}\r\n{html_payload}\r\n--{BOUNDARY}--\r\n"
    ).encode()


def wire_form(headers: list[tuple[str, str]], text: str, html: str) -> bytes:
    """The bytes of ``build_message(headers, text, html)`` as they go on the wire, without
    building the message object (what the sender of a whole send needs)."""
    return _wire(_top_headers(headers), _payload(text), _payload(html))


def build_message(headers: list[tuple[str, str]], text: str, html: str) -> EmailMessage:
    """A multipart/alternative message of ``text`` and ``html`` with ``headers`` (values
    already encoded and folded) first."""
    message = ComposedMessage(policy=MAIL_POLICY)
    headers = _top_headers(headers)
    for name, value in headers:
        message.set_raw(name, value)
    text_payload, html_payload = _payload(text), _payload(html)
    message.set_payload([_part("text/plain", text_payload), _part("text/html", html_payload)])
    message.wire = _wire(headers, text_payload, html_payload)
    message.snapshot = message._state()
    return message
