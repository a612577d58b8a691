"""A small demo company website served under /demo/, carrying the real snippet and an
embedded Ekiden form, so the demo shows tracking and identification live in a browser."""

from __future__ import annotations

import html
import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ekiden.demo.traffic import SECTIONS

_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | 駅伝ソフト株式会社 (Ekiden demo)</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; color: #1d2733; }}
header {{ background: #0f4c81; color: #fff; padding: 1rem 2rem; }}
header a {{ color: #fff; margin-right: 1rem; }}
main {{ max-width: 46rem; padding: 1.5rem 2rem; }}
.note {{ background: #f3f6f9; padding: .75rem 1rem; border-left: 4px solid #0f4c81; }}
</style>
<script async src="/t.js" data-key={key}></script>
</head><body>
<header><strong>駅伝ソフト</strong> &nbsp; {nav}</header>
<main><h1>{title}</h1>
<p class="note">これは Ekiden のデモサイトです。ページを移動すると閲覧履歴と滞在時間が記録され、
フォームを送信すると、それまでの匿名の履歴があなたのコンタクトに結び付きます。</p>
{body}
</main></body></html>"""


def demo_router(ingest_key: str) -> APIRouter:
    """Pages of the demo site; ``ingest_key`` is the public write key the snippet uses."""
    router = APIRouter(include_in_schema=False)
    key_attr = html.escape(json.dumps(ingest_key), quote=True)
    nav = " ".join(
        f'<a href="/demo{html.escape(path)}">{html.escape(title)}</a>'
        for path, title, _ in SECTIONS[:6]
    )

    def render(path: str) -> HTMLResponse:
        title = next((t for p, t, _ in SECTIONS if p == path), None)
        if title is None:
            return HTMLResponse("<h1>404</h1>", status_code=404)
        body = "<p>MA ツールで、見込み客一人ひとりに合わせたフォローを自動化しましょう。</p>"
        if path.startswith("/webinars") or path == "/":
            body += (
                "<h2>12月 MA 活用ウェビナー</h2>"
                '<div data-ekiden-form="webinar-dec"></div>'
                '<script async src="/f/webinar-dec.js"></script>'
            )
        page = _PAGE.format(title=html.escape(title), key=key_attr, nav=nav, body=body)
        return HTMLResponse(page)

    @router.get("/demo/")
    def home() -> HTMLResponse:
        return render("/")

    @router.get("/demo/{path:path}")
    def page(path: str) -> HTMLResponse:
        return render("/" + path.strip("/"))

    return router
