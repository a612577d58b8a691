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


# One token of well-formed HTML: a comment, a declaration or processing instruction, a start
# or end tag (attribute values may hold ">" inside quotes), or a run of text.
_TOKEN = re.compile(
    r"""<!--.*?-->"""
    r"""|<[!?][^>]*>"""
    r"""|<(/?)([a-zA-Z][^\t\n\r\f />\x00]*)((?:[^>"']|"[^"]*"|'[^']*')*)>"""
    r"""|[^<]+|<""",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(
    r"""(?<=['"\s/])([^\s/>][^\s/=>]*)\s*=+\s*(?:'([^']*)'|"([^"]*)"|(?!['"])([^>\s]*))"""
)
_RAW_END = {"script": re.compile(r"</script\s*>", re.I), "style": re.compile(r"</style\s*>", re.I)}
_BREAKS = {tag: "\n\n" if tag in ("p", "h1", "h2", "h3", "table") else "\n" for tag in _BLOCKS}


def _attribute(attributes: str, name: str) -> str | None:
    """The (last) value of attribute ``name``, unescaped, as ``html.parser`` gives it."""
    value = None
    for match in _ATTRIBUTE.finditer(attributes):
        if match.group(1).lower() == name:
            raw = next((g for g in match.groups()[1:] if g is not None), "")
            value = html.unescape(raw)
    return value


def _fast_text(document: str) -> str | None:
    """What ``_TextMaker`` writes for ``document``, read with one regular expression, or
    None when the document has something the expression does not read the way
    ``html.parser`` does (an unclosed tag or comment, a stray "<", an unclosed script or
    style): then the parser is used."""
    out: list[str] = []
    links: list[str | None] = []
    skipping = 0
    position, length = 0, len(document)
    match_token, unescape, space = _TOKEN.match, html.unescape, _SPACE.sub
    while position < length:
        match = match_token(document, position)
        assert match is not None  # the last alternatives match any character
        piece = match.group(0)
        position = match.end()
        if piece[0] != "<":
            if not skipping:
                if "&" in piece:
                    piece = unescape(piece)
                out.append(space(" ", piece.replace("\n", " ")))
            continue
        name = match.group(2)
        if name is None:
            if piece == "<" or (piece.startswith("<!--") and not piece.endswith("-->")):
                return None
            continue  # a comment, doctype or processing instruction
        attributes = match.group(3)
        if "<" in attributes:
            return None
        tag = name.lower()
        closing = True
        if not match.group(1):  # a start tag (and its end, when it closes itself)
            closing = attributes.endswith("/")
            if tag in _SKIP:
                skipping += 1
            elif tag == "br":
                out.append("\n")
            elif tag == "li":
                out.append("\n・")
            elif tag in _BREAKS:
                out.append(_BREAKS[tag])
            elif tag == "a":
                href = _attribute(attributes, "href")
                links.append(href if href and href.startswith(("http:", "https:")) else None)
            elif tag == "img":
                alt = _attribute(attributes, "alt")
                if alt:
                    out.append(alt)
            if tag in _RAW_END and not closing:
                end = _RAW_END[tag].search(document, position)
                if end is None:
                    return None
                position = end.start()  # the content is skipped (it is inside _SKIP)
        if closing:
            if tag in _SKIP:
                skipping = max(0, skipping - 1)
            elif tag in _BLOCKS:
                out.append("\n")
            elif tag in ("td", "th"):
                out.append(" ")
            elif tag == "a" and links:
                href = links.pop()
                if href:
                    out.append(f" ({href})")
    return "".join(out)


def html_to_text(document: str) -> str:
    """A readable plain-text version of an HTML part. The regular expression reading is
    several times faster than ``html.parser`` (a send converts every recipient's HTML) and
    gives the same text for the markup it accepts; anything else goes to the parser."""
    out = _fast_text(document)
    if out is None:
        maker = _TextMaker()
        maker.feed(document)
        maker.close()
        out = "".join(maker.out)
    lines = [line.strip() for line in out.split("\n")]
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
