"""Machine activity (R9): bots, link scanners and prefetchers that are not people.

Their events are kept (the history is complete) but flagged ``machine=True`` with the reason,
so that scores and metrics can leave them out. Detection is a plain table of user-agent
fragments: easy to read, easy to extend, and cheap (results are cached per user agent).
"""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

# (lower-case fragment of the user agent, reason stored on the event). First match wins.
MACHINE_AGENTS: tuple[tuple[str, str], ...] = (
    # mail security scanners that open and click every link
    ("barracuda", "mail security scanner (Barracuda)"),
    ("proofpoint", "mail security scanner (Proofpoint)"),
    ("mimecast", "mail security scanner (Mimecast)"),
    ("safelinks", "mail security scanner (Microsoft Safe Links)"),
    ("symantec", "mail security scanner (Symantec)"),
    ("trendmicro", "mail security scanner (Trend Micro)"),
    ("googleimageproxy", "mail image proxy (Gmail)"),
    ("yahoomailproxy", "mail image proxy (Yahoo)"),
    # search engines, link previews and monitoring
    ("googlebot", "search engine crawler (Googlebot)"),
    ("bingbot", "search engine crawler (Bingbot)"),
    ("yandexbot", "search engine crawler (Yandex)"),
    ("baiduspider", "search engine crawler (Baidu)"),
    ("applebot", "search engine crawler (Applebot)"),
    ("duckduckbot", "search engine crawler (DuckDuckGo)"),
    ("facebookexternalhit", "link preview (Facebook)"),
    ("slackbot", "link preview (Slack)"),
    ("twitterbot", "link preview (X/Twitter)"),
    ("linkedinbot", "link preview (LinkedIn)"),
    ("discordbot", "link preview (Discord)"),
    ("line-poker", "link preview (LINE)"),
    ("whatsapp", "link preview (WhatsApp)"),
    ("pingdom", "uptime monitor (Pingdom)"),
    ("uptimerobot", "uptime monitor (UptimeRobot)"),
    # headless browsers and scripted HTTP clients
    ("headlesschrome", "headless browser"),
    ("phantomjs", "headless browser"),
    ("python-requests", "scripted HTTP client"),
    ("python-urllib", "scripted HTTP client"),
    ("curl/", "scripted HTTP client"),
    ("wget/", "scripted HTTP client"),
    ("go-http-client", "scripted HTTP client"),
    ("java/", "scripted HTTP client"),
    ("okhttp", "scripted HTTP client"),
    ("libwww-perl", "scripted HTTP client"),
    # generic words crawlers put in their names; checked last
    ("bot", "crawler (user agent says bot)"),
    ("crawler", "crawler (user agent says crawler)"),
    ("spider", "crawler (user agent says spider)"),
    ("scanner", "scanner (user agent says scanner)"),
)

_TABLET_FAMILIES = ("ipad", "kindle", "tablet", "galaxy tab", "nexus 7", "nexus 9", "nexus 10")


@lru_cache(maxsize=4096)
def machine_reason(user_agent: str | None) -> str | None:
    """Why this user agent is a machine, or None when it looks like a person's browser.

    An absent user agent is not treated as a machine: server-side SDKs send none for the
    people they report on."""
    if not user_agent:
        return None
    lowered = user_agent.lower()
    for fragment, reason in MACHINE_AGENTS:
        if fragment in lowered:
            return reason
    return None


@lru_cache(maxsize=4096)
def device_class(user_agent: str | None) -> str | None:
    """desktop | mobile | tablet | bot | other, as stored with an anonymous id; None without
    a user agent."""
    if not user_agent:
        return None
    if machine_reason(user_agent) is not None:
        return "bot"
    parsed = parse(user_agent)
    device = (parsed.device.family if parsed.device else "").lower()
    os_family = (parsed.os.family if parsed.os else "").lower()
    lowered = user_agent.lower()
    if any(name in device for name in _TABLET_FAMILIES) or (
        os_family == "android" and "mobile" not in lowered
    ):
        return "tablet"
    if os_family in ("ios", "android") or "mobile" in lowered or device == "iphone":
        return "mobile"
    if os_family in ("windows", "mac os x", "linux", "ubuntu", "chrome os", "fedora"):
        return "desktop"
    return "other"
