"""Weeks of realistic B2B website traffic, played through the real ingestion, form and
import services in simulated time (deterministic: the same seed gives the same demo)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.importer import ImportOptions, run_import
from ekiden.forms.service import submit_form
from ekiden.forms.store import get_form
from ekiden.tracking.ingest import ingest_messages

SECTIONS: list[tuple[str, str, int]] = [
    ("/", "ホーム", 30),
    ("/products/ma", "MA ツールの機能", 14),
    ("/products/ma/integrations", "連携", 5),
    ("/pricing", "料金プラン", 9),
    ("/pricing/enterprise", "エンタープライズプラン", 3),
    ("/case-studies/ekiden-shoji", "導入事例: 駅伝商事", 6),
    ("/case-studies/acme", "導入事例: アクメ工業", 5),
    ("/blog/scoring", "スコアリングの始め方", 8),
    ("/blog/nurturing", "ナーチャリング入門", 7),
    ("/webinars/2026-12", "12月ウェビナー", 4),
    ("/careers", "採用情報", 2),
]
SOURCES = [
    ({"source": "google", "medium": "cpc", "name": "ma-search"}, "https://www.google.com/"),
    ({"source": "newsletter", "medium": "email", "name": "nov-news"}, ""),
    (
        {"source": "facebook", "medium": "social", "name": "webinar-dec"},
        "https://www.facebook.com/",
    ),
    ({}, "https://www.google.com/"),
    ({}, ""),
]
FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "健一", "美咲", "大輔", "陽子", "翔太", "由美", "誠", "愛"]
INDUSTRIES = {
    "駅伝商事": "卸売業",
    "アクメ工業": "製造業",
    "北斗製作所": "製造業",
    "さくら物流": "運輸業",
    "みなと銀行": "金融業",
    "青葉システム": "情報通信業",
}
COMPANIES = list(INDUSTRIES)
TITLES = ["部長", "本部長", "課長", "一般社員", "経営者・役員"]
FORMS_BY_INTEREST = {
    "/pricing": "contact",
    "/webinars": "webinar-dec",
    "/case-studies": "ma-guide",
    "/products": "documents",  # the forms of the example journeys (R15, R14, R13)
    "/blog": "newsletter",
}


@dataclass
class Visitor:
    anonymous_id: str
    interest: str
    agent: str


AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
]


def _session(rng: random.Random, visitor: Visitor, start: datetime) -> list[dict[str, object]]:
    campaign, referrer = rng.choice(SOURCES)
    messages: list[dict[str, object]] = []
    at = start
    pages = [p for p in SECTIONS if p[0].startswith(visitor.interest)] or SECTIONS
    for n in range(rng.randint(1, 5)):
        path, title, _ = (
            rng.choice(pages)
            if rng.random() < 0.6
            else rng.choices(SECTIONS, [s[2] for s in SECTIONS])[0]
        )
        page_id = str(uuid.UUID(int=rng.getrandbits(128)))
        url = f"https://www.example.co.jp{path}"
        context: dict[str, object] = {
            "userAgent": visitor.agent,
            "page": {
                "path": path,
                "url": url,
                "title": title,
                "referrer": referrer if n == 0 else "",
            },
        }
        if campaign and n == 0:
            context["campaign"] = campaign
        messages.append(
            {
                "type": "page",
                "anonymousId": visitor.anonymous_id,
                "messageId": page_id,
                "name": title,
                "properties": {"path": path, "url": url, "title": title},
                "context": context,
                "timestamp": at.isoformat(),
            }
        )
        dwell = int(rng.lognormvariate(10.3, 0.9))  # median ≈ 30 s, long tail to several minutes
        at += timedelta(milliseconds=dwell)
        messages.append(
            {
                "type": "track",
                "event": "page_dwell",
                "anonymousId": visitor.anonymous_id,
                "messageId": f"{page_id}-d",
                "timestamp": at.isoformat(),
                "properties": {
                    "dwell_ms": dwell,
                    "page_message_id": page_id,
                    "path": path,
                    "url": url,
                },
                "context": {"userAgent": visitor.agent},
            }
        )
        at += timedelta(seconds=rng.randint(2, 20))
    return messages


def day_ends(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """The last second of each local day from ``start``'s day on, then ``end`` itself."""
    found: list[datetime] = []
    day = start.astimezone(zone).date()
    while True:
        day += timedelta(days=1)
        moment = datetime.combine(day, time(), zone) - timedelta(seconds=1)
        if moment >= end:
            return [*found, end]
        found.append(moment)


def play(
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    *,
    visitors: int,
    weeks: int,
    seed: int = 7,
    day_end: Callable[[], None] | None = None,
    scheduled: Sequence[tuple[datetime, Callable[[], object]]] = (),
) -> int:
    """Simulate ``visitors`` over ``weeks`` weeks from ``clock``'s time, which moves with the
    traffic; ``scheduled`` actions run at their moment, and ``day_end`` at the last second of
    each simulated day (the clock set to it) and at the end. Returns how many identified."""
    rng = random.Random(seed)
    start = clock.now()
    end = start + timedelta(weeks=weeks)
    people = [
        Visitor(
            str(uuid.UUID(int=rng.getrandbits(128))),
            rng.choice(["/pricing", "/case-studies", "/webinars", "/blog", "/products"]),
            rng.choice(AGENTS),
        )
        for _ in range(visitors)
    ]
    plan: list[tuple[datetime, Callable[[], object]]] = list(scheduled)
    player = _Player(engine, settings, clock, rng)
    for visitor in people:
        sessions = rng.randint(1, 6)
        submits_at = rng.randrange(sessions) if rng.random() < 0.4 else -1
        for s in range(sessions):
            moment = start + timedelta(seconds=rng.randint(0, weeks * 7 * 86400 - 3600))
            plan.append((moment, partial(player.visit, moment, visitor, s == submits_at)))
    plan.sort(key=lambda p: p[0])
    ticks = day_ends(start, end, settings.zone)
    for moment, action in plan:
        while ticks and ticks[0] <= moment:
            clock.set(ticks.pop(0))
            if day_end is not None:
                day_end()
        clock.set(moment)
        action()
    for tick in ticks:
        clock.set(tick)
        if day_end is not None:
            day_end()
    return player.identified


@dataclass
class _Player:
    engine: Engine
    settings: Settings
    clock: FrozenClock
    rng: random.Random
    identified: int = 0

    def visit(self, moment: datetime, visitor: Visitor, submits: bool) -> None:
        rng, engine, clock, settings = self.rng, self.engine, self.clock, self.settings
        with engine.begin() as conn:
            ingest_messages(
                conn,
                clock,
                settings,
                _session(rng, visitor, moment),
                request_ip="203.0.113.10",
                sent_at=None,
            )
        if not submits:
            return
        clock.set(moment + timedelta(minutes=5))
        slug = next(
            (f for p, f in FORMS_BY_INTEREST.items() if visitor.interest.startswith(p)),
            "ma-guide",
        )
        if slug == "newsletter" and int(visitor.anonymous_id[0], 16) % 2:
            slug = "survey"  # half the blog readers answer the survey instead
        family, given = rng.choice(FAMILY), rng.choice(GIVEN)
        answers = {
            "email": [f"{visitor.anonymous_id[:8]}@{rng.choice(['example.co.jp', 'example.jp'])}"],
            "last_name": [family],
            "first_name": [given],
            "company": [rng.choice(COMPANIES)],
            "job_title": [rng.choice(TITLES)],
            "message": ["料金について詳しく知りたいです。"],
            "sample": ["はい" if int(visitor.anonymous_id[1], 16) < 10 else "いいえ"],
            "consent": ["on"] if rng.random() < 0.8 or slug == "webinar-dec" else [],
        }
        with engine.begin() as conn:
            form = get_form(conn, slug)
            submit_form(
                conn,
                clock,
                form,
                answers,
                ip="203.0.113.10",
                user_agent=visitor.agent,
                anonymous_id=visitor.anonymous_id,
                page_url=f"https://www.example.co.jp{visitor.interest}",
                referrer=None,
            )
        self.identified += 1


def import_business_cards(
    engine: Engine, clock: FrozenClock, *, count: int = 40, seed: int = 11
) -> int:
    """A trade-show business-card CSV as Excel in Japan saves it (Shift_JIS), imported at
    ``clock``'s time."""
    rng = random.Random(seed)
    lines = ["メールアドレス,姓,名,会社名,業種,部署,役職,電話番号"]
    for i in range(count):
        company = rng.choice(COMPANIES)
        lines.append(
            f"expo{i}@example.co.jp,{rng.choice(FAMILY)},{rng.choice(GIVEN)},{company},"
            f"{INDUSTRIES[company]},情報システム部,{rng.choice(TITLES)},03-1234-{5000 + i}"
        )
    data = ("\r\n".join(lines) + "\r\n").encode("cp932")
    options = ImportOptions(
        tags=["展示会2026"],
        consent="granted",
        consent_text="展示会ブースにて製品情報のメール送付に同意",
    )
    with engine.begin() as conn:
        report = run_import(conn, clock, data, filename="expo-2026-cards.csv", options=options)
    return count if report is not None else 0
