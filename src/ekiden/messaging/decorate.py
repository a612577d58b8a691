"""What Ekiden adds to a rendered HTML part: tracked links, the honeypot link, the open pixel,
the hidden preheader and the sender's footer."""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from functools import lru_cache

from ekiden.config import Settings
from ekiden.i18n import gettext
from ekiden.messaging.htmlparts import (
    insert_after_body_open,
    insert_before_body_close,
    rewrite_html_links,
    rewrite_text_links,
    with_utm,
)
from ekiden.messaging.tokens import EmailToken, seal

HIDDEN = (
    "display:none;max-height:0;max-width:0;overflow:hidden;mso-hide:all;font-size:1px;"
    "line-height:1px;opacity:0;color:transparent"
)


class LinkTracker:
    """Numbers the distinct links of a message and turns each into a tracked URL whose token
    seals the target (with UTM parameters for the company's sites)."""

    def __init__(self, settings: Settings, base: EmailToken, campaign: str) -> None:
        self.settings = settings
        self.base = base
        self.campaign = campaign
        self.domains = settings.site_domains
        self.own = (settings.base_url + "/u/", settings.base_url + "/t/")
        self.numbers: dict[str, int] = {}
        self.counted = 0  # the links of the HTML part: what a scanner clicking all would hit
        self.made: dict[str, str] = {}  # target -> tracked URL (the text part repeats them)

    def _target(self, url: str) -> str | None:
        if not url.lower().startswith(("http://", "https://")):
            return None
        if url.startswith(self.own):
            return None
        return with_utm(url, self.domains, self.campaign)

    def _collect(self, url: str) -> None:
        target = self._target(url)
        if target is not None and target not in self.numbers:
            self.numbers[target] = len(self.numbers)

    def _tracked(self, url: str) -> str | None:
        target = self._target(url)
        if target is None:
            return None
        made = self.made.get(target)
        if made is None:
            number = self.numbers.setdefault(target, len(self.numbers))
            token = replace(self.base, kind="c", link=number, links=self.counted, url=target)
            made = f"{self.settings.base_url}/t/c/{seal(self.settings.signing_key, token)}"
            self.made[target] = made
        return made

    def track(self, document: str, text: str) -> tuple[str, str]:
        """Both parts with every http(s) link tracked."""
        rewrite_html_links(document, self._collect)
        self.counted = len(self.numbers)
        return rewrite_html_links(document, self._tracked), rewrite_text_links(text, self._tracked)


def add_machine_traps(document: str, settings: Settings, base: EmailToken) -> str:
    """The hidden honeypot link first in the body (no text, hidden from screen readers:
    only software follows it) and the open pixel last."""
    key = settings.signing_key
    honeypot = seal(key, replace(base, kind="h"))
    pixel = seal(key, replace(base, kind="o"))
    document = insert_after_body_open(
        document,
        f'<a href="{settings.base_url}/t/c/{honeypot}" style="{HIDDEN}" '
        'aria-hidden="true" tabindex="-1"></a>',
    )
    return insert_before_body_close(
        document,
        f'<img src="{settings.base_url}/t/o/{pixel}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0">',
    )


def add_preheader(document: str, preheader: str) -> str:
    """The preheader as hidden text opening the body; the padding keeps mail clients from
    filling the preview with the body's first words."""
    if not preheader:
        return document
    padding = "&#8199;&#847;" * 40
    hidden = f'<div style="{HIDDEN}">{html.escape(preheader)}{padding}</div>'
    return insert_after_body_open(document, hidden)


@lru_cache(maxsize=64)
def _footer_texts(
    locale: str, name: str, address: str, postal_address: str
) -> tuple[tuple[str, ...], str, str]:
    """The footer's translated lines and link labels (the same for every message of a
    sender: translated once)."""
    lines = [gettext(locale, "Sender: %(name)s", name=name)]
    if postal_address:
        lines.append(gettext(locale, "Address: %(address)s", address=postal_address))
    lines.append(gettext(locale, "Contact: %(email)s", email=address))
    return tuple(lines), gettext(locale, "Unsubscribe"), gettext(locale, "Email preferences")


@dataclass(frozen=True)
class Footer:
    """Who sends (特定電子メール法) and, for marketing mail, how to stop it."""

    sender_name: str
    sender_address: str
    postal_address: str
    unsubscribe_url: str | None
    preferences_url: str | None

    def parts(self, locale: str) -> tuple[str, str]:
        """(HTML, text) of the footer."""
        lines, unsubscribe, preferences = _footer_texts(
            locale, self.sender_name, self.sender_address, self.postal_address
        )
        html_lines = [html.escape(line) for line in lines]
        text_lines = list(lines)
        if self.unsubscribe_url and self.preferences_url:
            html_lines.append(
                f'<a href="{html.escape(self.unsubscribe_url)}">{html.escape(unsubscribe)}</a>'
                f' | <a href="{html.escape(self.preferences_url)}">{html.escape(preferences)}</a>'
            )
            text_lines.append(f"{unsubscribe}: {self.unsubscribe_url}")
            text_lines.append(f"{preferences}: {self.preferences_url}")
        footer_html = (
            '<div style="margin-top:24px;padding-top:12px;border-top:1px solid #ddd;'
            'font-size:12px;line-height:1.6;color:#666">' + "<br>".join(html_lines) + "</div>"
        )
        return footer_html, "\n-- \n" + "\n".join(text_lines) + "\n"
