"""User-facing text in Japanese and English through gettext catalogues.

Catalogues live in ``locales/<lang>/LC_MESSAGES/messages.po`` and are read with Babel at
first use (no compile step needed). Source strings are English; ``ja`` is the default locale.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po
from babel.support import Translations

from ekiden.config import SUPPORTED_LOCALES

LOCALES_DIR = Path(__file__).parent / "locales"
DEFAULT_LOCALE = "ja"


@cache
def translations(locale: str) -> Translations:
    """The catalogue for ``locale``; English (the source language) is the identity."""
    path = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    translations = Translations()
    if path.exists():
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        translations._catalog = {
            m.id: m.string
            for m in catalog
            if isinstance(m.id, str) and isinstance(m.string, str) and m.string and not m.fuzzy
        }
    return translations


def gettext(locale: str, message: str, **params: object) -> str:
    """Translate ``message`` into ``locale`` and fill ``%(name)s`` placeholders."""
    text = translations(locale).gettext(message)
    return text % params if params else text


def pick_locale(accept_language: str | None, default: str = DEFAULT_LOCALE) -> str:
    """Choose ja or en from an Accept-Language header; ``default`` when neither is asked for."""
    if not accept_language:
        return default
    weighted = []
    for part in accept_language.split(","):
        lang, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        weighted.append((weight, lang.split("-")[0].lower()))
    for _, lang in sorted(weighted, reverse=True):
        if lang in SUPPORTED_LOCALES:
            return lang
    return default
