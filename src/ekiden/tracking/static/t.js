/* Ekiden browser snippet (ES2017, no dependencies). docs/SNIPPET.md describes it.
   <script async src="https://EKIDEN/t.js" data-key="INGEST_KEY"></script> */
(() => {
  "use strict";
  // Filled in by GET /t.js from the server's settings (JSON); these defaults keep the raw file valid.
  const SERVER = /*EKIDEN_CONFIG*/ { base: "", cookieDays: 395 } /*EKIDEN_CONFIG_END*/;
  const VERSION = "1";
  const NAME = "ekiden_aid";
  const ID_RE = /^[A-Za-z0-9_.-]{8,64}$/;
  const w = window, d = document, nav = navigator;
  const earlier = w.ekiden;
  if (earlier && earlier.loaded) return; // included twice

  const script = d.currentScript || d.querySelector('script[data-key][src*="t.js"]');
  const opt = (script && script.dataset) || {};
  const flag = (value, byDefault) => (value === undefined ? byDefault : value !== "false");
  const key = opt.key;
  // Events go where the script came from (works behind any proxy); the setting is the fallback.
  const src = (script && script.src) || "";
  const fromSrc = /\/t\.js(?:[?#].*)?$/.test(src) ? src.replace(/\/t\.js(?:[?#].*)?$/, "") : "";
  const base = (opt.endpoint || fromSrc || SERVER.base).replace(/\/+$/, "");
  const useStorage = flag(opt.localStorage, true);
  const dnt = nav.doNotTrack === "1" || w.doNotTrack === "1" || nav.globalPrivacyControl === true;
  const off = !key || (flag(opt.respectDnt, false) && dnt);

  const now = () => (w.performance && performance.now ? performance.now() : Date.now());
  const isoNow = () => new Date().toISOString();

  function uuid() {
    const c = w.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    const b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (let i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    const h = Array.from(b, (x) => (x + 0x100).toString(16).slice(1)).join("");
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
  }

  // --- anonymous id: first-party cookie on the site's domain, mirrored in localStorage ---
  const valid = (id) => (id && ID_RE.test(id) ? id : null);
  function readCookie() {
    const m = d.cookie.match(/(?:^|;\s*)ekiden_aid=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : null;
  }
  function store(method, value) {
    try {
      return w.localStorage[method](NAME, value);
    } catch (e) {
      return null; // storage disabled (privacy mode, sandboxed frame)
    }
  }
  function keepId(id) {
    let c = NAME + "=" + id + "; Path=/; Max-Age=" + Math.round(SERVER.cookieDays * 86400) + "; SameSite=Lax";
    if (location.protocol === "https:") c += "; Secure";
    if (/^[A-Za-z0-9.-]+$/.test(opt.cookieDomain || "")) c += "; Domain=" + opt.cookieDomain;
    d.cookie = c;
    if (useStorage) store("setItem", id);
  }
  function loadId() {
    // The cookie wins; localStorage brings it back when only the cookie was cleared.
    const id = valid(readCookie()) || (useStorage && valid(store("getItem"))) || uuid();
    keepId(id); // also renews the cookie's lifetime on every visit
    return id;
  }

  // --- transport: text/plain JSON batches (no CORS preflight), sendBeacon survives unload ---
  let queue = [];
  let scheduled = false;
  let userId = null;
  let anonymousId = null;

  function send() {
    scheduled = false;
    if (!queue.length) return;
    const body = JSON.stringify({ writeKey: key, batch: queue, sentAt: isoNow() });
    queue = [];
    post(base + "/v1/batch", body);
  }

  function post(url, body) {
    let sent = false;
    try {
      sent = !!(nav.sendBeacon && nav.sendBeacon(url, body));
    } catch (e) {
      sent = false;
    }
    if (!sent && w.fetch) {
      fetch(url, {
        method: "POST", body, keepalive: true, mode: "no-cors", credentials: "omit",
        headers: { "Content-Type": "text/plain" },
      }).catch(() => {});
    }
  }

  function enqueue(message, immediately) {
    message.messageId = message.messageId || uuid();
    message.anonymousId = anonymousId;
    if (userId) message.userId = userId;
    message.timestamp = isoNow();
    message.context = Object.assign(
      { library: { name: "ekiden.js", version: VERSION }, userAgent: nav.userAgent,
        locale: nav.language, page: pageContext() },
      message.context
    );
    queue.push(message);
    if (immediately) send();
    else if (!scheduled) {
      scheduled = true;
      Promise.resolve().then(send); // one request for the calls made in the same tick
    }
  }

  const pageContext = () => ({
    url: location.href, path: location.pathname, title: d.title, search: location.search,
    referrer: current ? current.referrer : d.referrer,
  });

  function campaign(search) {
    const q = new URLSearchParams(search);
    const props = {};
    const ctx = {};
    for (const part of ["source", "medium", "campaign", "term", "content"]) {
      const value = q.get("utm_" + part);
      if (value) {
        props["utm_" + part] = value;
        ctx[part === "campaign" ? "name" : part] = value;
      }
    }
    return { props, ctx };
  }

  // --- page views and active time (counted only while the tab is visible) ---
  let current = null; // {messageId, url, path, referrer}
  let activeMs = 0;
  let sentMs = 0;
  let visibleSince = null;

  const activeNow = () => activeMs + (visibleSince === null ? 0 : now() - visibleSince);
  function pause() {
    if (visibleSince !== null) activeMs += now() - visibleSince;
    visibleSince = null;
  }
  function resume() {
    if (visibleSince === null && d.visibilityState === "visible") visibleSince = now();
  }

  function sendDwell() {
    if (!current) return;
    const total = Math.round(activeNow());
    const increment = total - sentMs;
    if (increment < 1) return;
    sentMs = total;
    enqueue({ type: "track", event: "page_dwell", properties: {
      dwell_ms: increment, page_message_id: current.messageId, path: current.path, url: current.url,
    } }, true);
  }

  function page(name, props) {
    if (name && typeof name === "object") [name, props] = [undefined, name];
    sendDwell(); // the previous view's last active time (single-page apps)
    const referrer = current ? current.url : d.referrer;
    const utm = campaign(location.search);
    const messageId = uuid();
    current = { messageId, url: location.href, path: location.pathname, referrer };
    activeMs = sentMs = 0;
    visibleSince = null;
    resume();
    const message = {
      type: "page", messageId,
      properties: Object.assign(pageContext(), utm.props, props),
      context: Object.keys(utm.ctx).length ? { campaign: utm.ctx } : {},
    };
    if (typeof name === "string") message.name = name;
    enqueue(message);
  }

  function track(event, props) {
    if (typeof event !== "string" || !event) return;
    enqueue({ type: "track", event, properties: Object.assign({}, props) });
  }

  function identify(id, traits, immediately) {
    if (id && typeof id === "object") [id, traits] = [null, id];
    traits = Object.assign({}, traits);
    if (typeof id === "string" && id) {
      if (id.indexOf("@") > 0) traits.email = id;
      else userId = id;
    }
    enqueue({ type: "identify", traits }, immediately);
  }

  // --- identify on submit of a form that carries an email address ---
  const NAME_FIELDS = {
    name: "name", full_name: "name", fullname: "name", your_name: "name",
    first_name: "firstName", firstname: "firstName", fname: "firstName", given_name: "firstName",
    mei: "firstName", last_name: "lastName", lastname: "lastName", lname: "lastName",
    family_name: "lastName", sei: "lastName", first_name_kana: "firstNameKana",
    mei_kana: "firstNameKana", last_name_kana: "lastNameKana", sei_kana: "lastNameKana",
  };
  const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

  function onSubmit(event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.closest("[data-ekiden-ignore]")) return;
    // Ekiden's own embedded forms link this browser themselves, with consent evidence
    if (form.classList.contains("ekiden-form")) return;
    if (form.querySelector('input[type="password"]')) return; // never log-in or sign-up secrets
    const inputs = Array.from(form.querySelectorAll("input"));
    const email = inputs.find((i) => i.type === "email" && !i.hasAttribute("data-ekiden-ignore")
      && EMAIL_RE.test(i.value.trim()) && i.value.length <= 320);
    if (!email) return;
    const traits = { email: email.value.trim() };
    for (const input of inputs) {
      if (input.type !== "text" || input.hasAttribute("data-ekiden-ignore")) continue;
      const field = (input.getAttribute("autocomplete") || input.name || "").toLowerCase()
        .replace(/\[\]$/, "").replace(/[^a-z0-9]+/g, "_");
      const trait = NAME_FIELDS[field];
      const value = input.value.trim();
      if (trait && value && value.length <= 200) traits[trait] = value;
    }
    identify(null, traits, true); // sent now: the form is about to navigate away
  }

  // --- start ---
  const api = { loaded: true, version: VERSION, track, identify, page, anonymousId: () => anonymousId };
  const pending = earlier && Array.isArray(earlier.q) ? earlier.q : Array.isArray(earlier) ? earlier : [];
  if (off) {
    // No key, or the visitor asked not to be tracked: keep the API so site code never breaks.
    w.ekiden = Object.assign(api, { track() {}, identify() {}, page() {}, anonymousId: () => null });
    if (!key && w.console) console.warn("ekiden: the script tag needs data-key");
    return;
  }
  anonymousId = loadId();
  w.ekiden = api;

  d.addEventListener("visibilitychange", () => {
    if (d.visibilityState === "hidden") {
      pause();
      sendDwell();
    } else resume();
  });
  w.addEventListener("pagehide", () => {
    pause();
    sendDwell();
  });
  w.addEventListener("pageshow", (e) => e.persisted && resume()); // back from the page cache
  d.addEventListener("submit", onSubmit, true);

  if (flag(opt.spa, true)) {
    const changed = () => {
      if (current && location.href.split("#")[0] !== current.url.split("#")[0]) page();
    };
    const push = history.pushState;
    history.pushState = function () {
      const result = push.apply(this, arguments);
      changed();
      return result;
    };
    w.addEventListener("popstate", changed);
  }

  if (flag(opt.autoPage, true)) page();
  for (const call of pending) {
    if (Array.isArray(call) && typeof api[call[0]] === "function") api[call[0]].apply(api, call.slice(1));
  }

  // --- on-site messages a journey left for this browser's contact: asked for on each page
  // load; when there are any, /t/onsite.js (loaded only then) shows them ---
  function onsite() {
    if (!w.fetch) return;
    fetch(base + "/t/onsite", {
      method: "POST", credentials: "omit", headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ writeKey: key, anonymousId }),
    }).then((r) => (r.ok ? r.json() : null)).then((answer) => {
      if (!answer || !Array.isArray(answer.messages) || !answer.messages.length) return;
      api._onsite = { answer, action: (id, action) => post(base + "/t/onsite/" + encodeURIComponent(id),
        JSON.stringify({ writeKey: key, anonymousId, action })) };
      const tag = d.createElement("script");
      tag.async = true;
      tag.src = base + "/t/onsite.js";
      (d.head || d.documentElement).appendChild(tag);
    }).catch(() => {});
  }
  if (flag(opt.onsite, true)) onsite();
})();
