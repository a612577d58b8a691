"""Machine activity on email links (R9): security scanners and privacy proxies that open and
click on the recipient's behalf.

Each rule gives a reason stored on the event (``machine_reason``); the events are kept, so
both counts can be reported, but scores, triggers and human metrics leave them out. Rules:

- the hidden honeypot link: no person can see it, so whoever follows it is a machine;
- a click within ``EKIDEN_EMAIL_MACHINE_CLICK_SECONDS`` of delivery (people need longer to
  open, read and click; scanners fetch links while the message is being delivered);
- every link of a message clicked within that many seconds (a scanner following each link);
- known scanner user agents (``ekiden.tracking.machine``, shared with web tracking);
- known scanner address ranges (below, with their sources);
- Apple Mail Privacy Protection: Apple's proxy prefetches every image at delivery with the bare
  user agent ``Mozilla/5.0`` from Apple's network, whether or not the recipient reads it.

Gmail's and Yahoo's image proxies fetch the pixel when the recipient opens the message, so for
opens they are people, not machines.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from functools import lru_cache

from ekiden.tracking.machine import machine_reason as agent_reason

HONEYPOT = "hidden honeypot link"
APPLE_PRIVACY = "Apple Mail Privacy Protection prefetch"
APPLE_PROXY_AGENT = "Mozilla/5.0"

# (network, reason). Maintained by hand; each entry names where the range is published.
SCANNER_NETWORKS: tuple[tuple[str, str], ...] = (
    # Microsoft 365 "URLs and IP address ranges", Exchange Online (ids 9 and 10): Exchange
    # Online Protection and Defender for Office 365 Safe Links detonation
    ("40.92.0.0/15", "mail security scanner (Microsoft Defender)"),
    ("40.107.0.0/16", "mail security scanner (Microsoft Defender)"),
    ("52.100.0.0/14", "mail security scanner (Microsoft Defender)"),
    ("104.47.0.0/17", "mail security scanner (Microsoft Defender)"),
    # Barracuda Campus "Barracuda Email Security Service IP ranges"
    ("64.235.144.0/20", "mail security scanner (Barracuda)"),
    ("209.222.80.0/21", "mail security scanner (Barracuda)"),
    # Mimecast knowledge base "Data Centers and URLs" (US and UK grids)
    ("205.139.110.0/24", "mail security scanner (Mimecast)"),
    ("207.211.30.0/24", "mail security scanner (Mimecast)"),
    ("91.220.42.0/24", "mail security scanner (Mimecast)"),
    # Proofpoint Essentials "IP addresses to allow" (US)
    ("148.163.128.0/19", "mail security scanner (Proofpoint)"),
    ("67.231.144.0/20", "mail security scanner (Proofpoint)"),
)
# Apple's own network (ARIN: 17.0.0.0/8, Apple Inc.), where Mail Privacy Protection fetches
# originate according to Apple's "Mail Privacy Protection" notes for senders
APPLE_NETWORKS: tuple[str, ...] = ("17.0.0.0/8",)

_SCANNERS = tuple((ipaddress.ip_network(n), reason) for n, reason in SCANNER_NETWORKS)
_APPLE = tuple(ipaddress.ip_network(n) for n in APPLE_NETWORKS)
_OPEN_PROXIES = ("googleimageproxy", "yahoomailproxy")


@lru_cache(maxsize=4096)
def network_reason(ip: str | None) -> str | None:
    """The scanner whose published range holds ``ip``; None otherwise or for a bad address."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    for network, reason in _SCANNERS:
        if address in network:
            return reason
    return None


def _apple_proxy(ip: str | None, user_agent: str | None) -> bool:
    if (user_agent or "").strip() == APPLE_PROXY_AGENT:
        return True
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in _APPLE)


def open_reason(ip: str | None, user_agent: str | None) -> str | None:
    """Why an open-pixel fetch is a machine's, or None for a person's."""
    lowered = (user_agent or "").lower()
    if any(proxy in lowered for proxy in _OPEN_PROXIES):
        return None
    if _apple_proxy(ip, user_agent):
        return APPLE_PRIVACY
    return agent_reason(user_agent) or network_reason(ip)


def click_reason(
    *,
    ip: str | None,
    user_agent: str | None,
    delivered_at: datetime,
    clicked_at: datetime,
    window: timedelta,
) -> str | None:
    """Why a click is a machine's from the request alone (the burst rule needs the history
    and is applied by the caller), or None."""
    reason = agent_reason(user_agent) or network_reason(ip)
    if reason:
        return reason
    if _apple_proxy(ip, user_agent):
        return APPLE_PRIVACY
    if clicked_at - delivered_at < window:
        seconds = int(window.total_seconds())
        return f"clicked within {seconds} s of delivery"
    return None


def every_link_reason(window: timedelta) -> str:
    return f"every link clicked within {int(window.total_seconds())} s"
