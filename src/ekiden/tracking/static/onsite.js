/* Ekiden on-site messages (ES2017, no dependencies). Loaded by t.js only when a journey left a
   message for this browser's contact; docs/SNIPPET.md describes it. Text is set with
   textContent only: a message is never parsed as HTML. */
(() => {
  "use strict";
  const w = window, d = document;
  const pending = w.ekiden && w.ekiden._onsite;
  if (!pending || pending.shown) return;
  pending.shown = true;
  const answer = pending.answer || {};
  const labels = answer.labels || {};
  const CSS = [
    ":host{all:initial}",
    ".ek{position:fixed;right:16px;bottom:16px;z-index:2147483000;display:flex;",
    "flex-direction:column;gap:8px;max-width:min(360px,calc(100vw - 32px));",
    "font:15px/1.6 system-ui,-apple-system,'Hiragino Sans','Noto Sans JP',sans-serif}",
    ".m{position:relative;background:#fff;color:#1a1a1a;border:1px solid #c8c8c8;",
    "border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.18);padding:14px 48px 14px 16px}",
    ".t{margin:0 0 4px;font-size:15px;font-weight:700}",
    ".p{margin:0;white-space:pre-line;overflow-wrap:anywhere}",
    ".a{display:inline-block;margin-top:8px;color:#0b57d0;text-decoration:underline}",
    ".x{position:absolute;top:6px;right:6px;width:36px;height:36px;border:0;",
    "border-radius:6px;background:transparent;color:#333;font-size:22px;line-height:1;",
    "cursor:pointer}",
    ".x:hover{background:#eee}",
    ".x:focus-visible,.a:focus-visible{outline:2px solid #0b57d0;outline-offset:2px}",
    "@media (prefers-color-scheme:dark){.m{background:#222;color:#eee;border-color:#555}",
    ".a{color:#8ab4f8}.x{color:#ddd}.x:hover{background:#333}}",
  ].join("");

  function el(tag, cls, text) {
    const node = d.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  const host = el("div");
  host.setAttribute("data-ekiden-onsite", "");
  const root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  root.appendChild(el("style", null, CSS));
  const stack = el("div", "ek");
  root.appendChild(stack);

  for (const m of Array.isArray(answer.messages) ? answer.messages : []) {
    if (!m || typeof m.message !== "string") continue;
    const box = el("section", "m");
    box.setAttribute("role", "region");
    box.setAttribute("aria-live", "polite");
    box.setAttribute("aria-label", String(m.title || labels.region || "Message"));
    box.setAttribute("data-message-id", String(m.id));
    if (m.title) box.appendChild(el("h2", "t", m.title));
    box.appendChild(el("p", "p", m.message));
    if (typeof m.link === "string" && /^https?:\/\//i.test(m.link)) {
      const link = el("a", "a", m.linkText || m.link);
      link.href = m.link;
      link.rel = "noopener";
      link.addEventListener("click", () => pending.action(m.id, "clicked"));
      box.appendChild(link);
    }
    const close = el("button", "x", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", String(labels.close || "Close"));
    const dismiss = () => {
      box.remove();
      if (!stack.children.length) host.remove();
      pending.action(m.id, "dismissed");
    };
    close.addEventListener("click", dismiss);
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") dismiss();
    });
    box.appendChild(close);
    stack.appendChild(box);
  }
  if (!stack.children.length) return;
  const place = () => d.body.appendChild(host);
  if (d.body) place();
  else d.addEventListener("DOMContentLoaded", place);
})();
