"""Turning a rendered HTML part into what mail clients need.

- CSS is inlined with css-inline (Rust, fast, maintained; premailer is unmaintained since 2021
  and slow): mail clients such as Gmail drop ``<style>`` rules. ``@media`` rules stay in a
  ``<style>`` element for the clients that honour them. Remote stylesheets are never fetched.
- The text part, when the template has none, is made from the HTML by a small converter on
  the standard library's ``html.parser`` (html2text is GPL-licensed): blocks become lines,
  links become "text (URL)", list items get a bullet.
- Links are rewritten with a function the caller gives (tracking), in both parts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import css_inline

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

_BLOCKS = frozenset(
    (
        *("p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "table", "tr"),
        *("blockquote", "section", "article", "header", "footer", "hr", "pre", "address"),
        *("center", "main", "nav", "aside"),
    )
)
_SKIP = frozenset(("style", "script", "head", "title"))
_SPACE = re.compile(r"[ \t\r\f\v]+")
_ANCHOR_HREF = re.compile(
    r"""(<a\b[^>]*?\bhref\s*=\s*)("([^"]*)"|'([^']*)')""", re.IGNORECASE | re.DOTALL
)
_TEXT_URL = re.compile(r"https?://[^\s<>\"'）)」』】]+")


def inline_css(document: str) -> str:
    """The document with its CSS rules moved into style attributes (a whole document with
    html, head and body elements, also for a fragment)."""
    return str(_INLINER.inline(document))


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n・")
        elif tag in _BLOCKS:
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "table") else "\n")
        elif tag == "a":
            href = dict(attrs).get("href")
            self.links.append(href if href and href.startswith(("http:", "https:")) else None)
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href:
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(_SPACE.sub(" ", data.replace("\n", " ")))


def html_to_text(document: str) -> str:
    """A readable plain-text version of an HTML part."""
    maker = _TextMaker()
    maker.feed(document)
    maker.close()
    lines = [line.strip() for line in "".join(maker.out).split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def rewrite_html_links(document: str, rewrite: Callable[[str], str | None]) -> str:
    """Replace the href of every ``<a>`` with ``rewrite(url)`` (unescaped URL in, raw URL
    out); a None answer leaves the link as it is. Links carrying ``data-ekiden-notrack``
    are left alone."""

    def replace(match: re.Match[str]) -> str:
        opening = match.group(1)
        if "data-ekiden-notrack" in opening.lower():
            return match.group(0)
        raw = match.group(3) if match.group(3) is not None else match.group(4)
        new = rewrite(html.unescape(raw).strip())
        if new is None:
            return match.group(0)
        return f'{opening}"{html.escape(new, quote=True)}"'

    return _ANCHOR_HREF.sub(replace, document)


def rewrite_text_links(text: str, rewrite: Callable[[str], str | None]) -> str:
    """Replace every http(s) URL in a text part with ``rewrite(url)`` (None keeps it)."""

    def replace(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(".,;:!?、。")
        tail = match.group(0)[len(url) :]
        new = rewrite(url)
        return (new if new is not None else url) + tail

    return _TEXT_URL.sub(replace, text)


@lru_cache(maxsize=4096)
def with_utm(url: str, domains: tuple[str, ...], campaign: str) -> str:
    """``url`` with utm_source=ekiden, utm_medium=email and utm_campaign appended when it
    points into one of the company's ``domains`` (or their subdomains); parameters the link
    already has are kept."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not any(host == d or host.endswith("." + d) for d in domains):
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    for name, value in (
        ("utm_source", "ekiden"),
        ("utm_medium", "email"),
        ("utm_campaign", campaign),
    ):
        if name not in present:
            query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def insert_after_body_open(document: str, fragment: str) -> str:
    match = re.search(r"<body\b[^>]*>", document, re.IGNORECASE)
    if match is None:
        return fragment + document
    return document[: match.end()] + fragment + document[match.end() :]


def insert_before_body_close(document: str, fragment: str) -> str:
    index = document.lower().rfind("</body>")
    if index < 0:
        return document + fragment
    return document[:index] + fragment + document[index:]
