"""A realistic stream of Segment messages for the ingestion benchmark.

Visitors browse a B2B site's sections (landing pages with UTM parameters, products, pricing,
case studies, blog, whitepapers), fire track events, and about a quarter of them identify
with a user id and an email; from then on their messages carry the user id. The stream is
seeded, so two runs with the same arguments post the same kind of data.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SECTIONS = (
    ("/", "トップ | Example"),
    ("/products/analytics", "アナリティクス | 製品"),
    ("/products/automation", "オートメーション | 製品"),
    ("/pricing", "料金プラン"),
    ("/case-studies/manufacturing", "導入事例: 製造業"),
    ("/case-studies/retail", "導入事例: 小売"),
    ("/blog/lead-scoring-basics", "リードスコアリング入門"),
    ("/blog/nurturing-emails", "ナーチャリングメールの書き方"),
    ("/whitepapers/ma-guide-2026", "MA 導入ガイド 2026"),
    ("/seminars/2026-12-webinar", "12月ウェビナー"),
    ("/contact", "お問い合わせ"),
)
CAMPAIGNS = (
    ("google", "cpc", "brand-2026", "マーケティングオートメーション"),
    ("newsletter", "email", "autumn-nurture", None),
    ("linkedin", "social", "webinar-dec", None),
    ("facebook", "paid_social", "whitepaper-q4", None),
)
REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "https://t.co/", "")
TRACKS = (
    ("Downloaded Whitepaper", {"document": "ma-guide-2026"}),
    ("Registered Webinar", {"seminar": "2026-12-webinar"}),
    ("Watched Video", {"video": "product-tour", "seconds": 95}),
    ("Clicked CTA", {"cta": "request-demo"}),
    ("Started Trial", {"plan": "standard"}),
)
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
SITE = "https://www.example.jp"


@dataclass
class _Visitor:
    anonymous_id: str
    agent: str
    ip: str
    user_id: str | None = None
    identified: bool = False
    campaign: tuple[str, str, str, str | None] | None = None
    seen: int = field(default=0)


def generate_messages(count: int, *, seed: int = 2026, run: str = "") -> list[dict[str, Any]]:
    """``count`` messages (pages ~70%, tracks ~20%, identifies ~10% at most)."""
    rng = random.Random(seed)
    visitors = [
        _Visitor(
            anonymous_id=str(uuid.UUID(int=rng.getrandbits(128))),
            agent=rng.choice(AGENTS),
            ip=f"203.0.113.{rng.randrange(1, 255)}",
            user_id=f"user-{run}{n}" if rng.random() < 0.25 else None,
            campaign=rng.choice(CAMPAIGNS) if rng.random() < 0.5 else None,
        )
        for n in range(max(1, count // 8))
    ]
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    messages: list[dict[str, Any]] = []
    for n in range(count):
        visitor = rng.choice(visitors)
        moment = start + timedelta(milliseconds=n * 37)
        message = _message(rng, visitor, moment)
        message["messageId"] = f"bench-{run}{n}"
        messages.append(message)
        visitor.seen += 1
    return messages


def _message(rng: random.Random, visitor: _Visitor, moment: datetime) -> dict[str, Any]:
    base: dict[str, Any] = {
        "anonymousId": visitor.anonymous_id,
        "timestamp": moment.isoformat(),
        "context": {
            "ip": visitor.ip,
            "userAgent": visitor.agent,
            "locale": "ja-JP",
            "library": {"name": "ekiden-bench", "version": "1"},
        },
    }
    if visitor.identified:
        base["userId"] = visitor.user_id
    roll = rng.random()
    if visitor.user_id and not visitor.identified and visitor.seen >= 2:
        visitor.identified = True
        number = visitor.user_id.rsplit("-", 1)[-1]
        traits = {
            # the run's prefix keeps repeats on one database about new people too
            "email": f"lead-{visitor.user_id}@example-{int(number) % 97}.co.jp",
            "lastName": "山田",
            "firstName": "太郎",
            "company": f"株式会社サンプル{int(number) % 97}",
            "title": rng.choice(("部長", "課長", "担当")),
            "industry": rng.choice(("製造", "小売", "IT")),
        }
        return {**base, "type": "identify", "userId": visitor.user_id, "traits": traits}
    if roll < 0.22:
        event, properties = rng.choice(TRACKS)
        return {**base, "type": "track", "event": event, "properties": dict(properties)}
    path, title = SECTIONS[0] if visitor.seen == 0 else rng.choice(SECTIONS)
    url = SITE + path
    if visitor.seen == 0 and visitor.campaign is not None:
        source, medium, name, term = visitor.campaign
        url += f"?utm_source={source}&utm_medium={medium}&utm_campaign={name}"
        if term:
            base["context"]["campaign"] = {"source": source, "medium": medium, "term": term}
    base["context"]["page"] = {
        "url": url,
        "path": path,
        "title": title,
        "referrer": rng.choice(REFERRERS) if visitor.seen == 0 else SITE + "/",
    }
    return {**base, "type": "page", "name": title, "properties": {}}
