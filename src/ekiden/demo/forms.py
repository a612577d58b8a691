"""The demo company's forms: the four kinds the seeds name."""

from __future__ import annotations

from typing import Any

EMAIL = {
    "key": "email",
    "type": "email",
    "label": {"ja": "メールアドレス", "en": "Email"},
    "required": True,
}
LAST = {"key": "last_name", "label": {"ja": "姓", "en": "Last name"}, "required": True}
FIRST = {"key": "first_name", "label": {"ja": "名", "en": "First name"}}
COMPANY = {"key": "company", "label": {"ja": "会社名", "en": "Company"}, "required": True}
TITLE = {
    "key": "job_title",
    "type": "select",
    "label": {"ja": "役職", "en": "Position"},
    "options": ["経営者・役員", "本部長", "部長", "課長", "一般社員"],
}
CONSENT = {
    "required": False,
    "text": {
        "ja": "製品やセミナーのご案内をメールで受け取る",
        "en": "Email me about products and seminars",
    },
}

FORMS: list[dict[str, Any]] = [
    {
        "name": "MA 入門ガイド 2026",
        "slug": "ma-guide",
        "kind": "download",
        "title": {"ja": "「MA 入門ガイド」無料ダウンロード", "en": "Free guide: getting started"},
        "fields": [EMAIL, LAST, FIRST, COMPANY, TITLE],
        "consent": CONSENT,
        "success": {
            "document_url": "https://www.example.co.jp/docs/ma-guide-2026.pdf",
            "message": {"ja": "ダウンロードいただきありがとうございます。", "en": "Thank you."},
        },
    },
    {
        "name": "12月 MA 活用ウェビナー",
        "slug": "webinar-dec",
        "kind": "webinar",
        "fields": [EMAIL, LAST, FIRST, COMPANY, TITLE],
        "consent": {**CONSENT, "required": True},
        "success": {"message": {"ja": "お申し込みを受け付けました。", "en": "You are registered."}},
    },
    {
        "name": "お問い合わせ",
        "slug": "contact",
        "kind": "inquiry",
        "fields": [
            EMAIL,
            LAST,
            COMPANY,
            TITLE,
            {
                "key": "message",
                "type": "textarea",
                "label": {"ja": "お問い合わせ内容", "en": "Message"},
                "required": True,
            },
        ],
        "consent": CONSENT,
        "success": {
            "message": {"ja": "担当者よりご連絡いたします。", "en": "We will be in touch."}
        },
    },
    {
        "name": "ご利用状況アンケート",
        "slug": "survey",
        "kind": "survey",
        "fields": [
            EMAIL,
            {
                "key": "sample",
                "type": "radio",
                "label": {
                    "ja": "無料サンプルをご希望ですか",
                    "en": "Would you like a free sample?",
                },
                "options": ["はい", "いいえ"],
                "required": True,
            },
        ],
        "consent": CONSENT,
        "success": {"message": {"ja": "ご回答ありがとうございました。", "en": "Thank you."}},
    },
]

SEGMENTS: list[dict[str, Any]] = [
    {
        "slug": "hot-bucho",
        "name": "料金ページを見ている部長・本部長",
        "filter": {
            "all": [
                {"field": "job_title", "op": "in", "value": ["部長", "本部長"]},
                {
                    "event": "page",
                    "min": 2,
                    "within_days": 30,
                    "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}],
                },
                {"field": "unsubscribed", "op": "eq", "value": False},
            ]
        },
    },
    {
        "slug": "case-study-readers",
        "name": "事例を 3 分以上読んだ人",
        "filter": {
            "event": "page_dwell",
            "sum": "dwell_ms",
            "min": 180000,
            "within_days": 60,
            "where": [{"property": "path", "op": "starts_with", "value": "/case-studies"}],
        },
    },
    {
        "slug": "webinar-registrants",
        "name": "ウェビナー申込者",
        "filter": {
            "event": "form_submitted",
            "where": [{"property": "form", "op": "eq", "value": "webinar-dec"}],
        },
    },
]
