/* Ekiden embedded form. Renders the form into <div data-ekiden-form="SLUG"> (or right after
   this script tag), fills the hidden anonymous id and UTM fields, and posts to Ekiden.
   All text is set with textContent: nothing from the configuration is parsed as HTML. */
(function () {
  "use strict";
  var C = __EKIDEN_FORM__;
  var script = document.currentScript;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs) { if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) node.setAttribute(k, attrs[k] === true ? "" : attrs[k]); }
    if (text) { node.textContent = text; }
    return node;
  }

  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|;\\s*)" + name + "=([^;]+)"));
    try { return m ? decodeURIComponent(m[1]) : ""; } catch (e) { return ""; }
  }

  function anonymousId() {
    var id = cookie("ekiden_aid");
    try { if (!id && window.ekiden && typeof window.ekiden.anonymousId === "function") { id = window.ekiden.anonymousId() || ""; } } catch (e) { id = ""; }
    return id;
  }

  function injectStyle() {
    if (document.getElementById("ekiden-form-style")) { return; }
    var s = el("style", { id: "ekiden-form-style" });
    s.textContent = ".ekiden-form{max-width:40rem;font:inherit;line-height:1.6}" +
      ".ekiden-form .ek-field{margin:0 0 1.1rem;border:0;padding:0}" +
      ".ekiden-form label,.ekiden-form legend{display:block;font-weight:600;margin-bottom:.25rem;padding:0}" +
      ".ekiden-form .ek-choice{display:flex;gap:.5rem;align-items:baseline;font-weight:400}" +
      ".ekiden-form .ek-req{color:#b42318;font-weight:400;font-size:.85em;margin-left:.25rem}" +
      ".ekiden-form input:not([type=checkbox]):not([type=radio]),.ekiden-form select,.ekiden-form textarea{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #cbd2d9;border-radius:6px}" +
      ".ekiden-form [aria-invalid=true]{border-color:#b42318}" +
      ".ekiden-form .ek-help{color:#52606d;font-size:.875em;margin:.25rem 0 0}" +
      ".ekiden-form .ek-error{color:#b42318;font-size:.875em;margin:.25rem 0 0}" +
      ".ekiden-form .ek-consent{white-space:pre-line}" +
      ".ekiden-form .ek-trap{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}" +
      ".ekiden-form button{font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:6px;padding:.6rem 1.5rem;cursor:pointer}" +
      ".ekiden-form button[disabled]{opacity:.6;cursor:wait}";
    document.head.appendChild(s);
  }

  function labelText(node, text, required) {
    node.appendChild(document.createTextNode(text));
    if (required) { node.appendChild(el("span", { "class": "ek-req" }, C.texts.required)); }
  }

  function hidden(form, name, value) {
    form.appendChild(el("input", { type: "hidden", name: name, value: value || "" }));
  }

  function renderField(form, f, i) {
    var id = "ek-" + C.slug + "-" + i;
    if (f.type === "hidden") { hidden(form, f.key, f["default"]); return; }
    var box, input;
    if (f.options.length && (f.type === "radio" || f.type === "checkbox")) {
      box = el("fieldset", { "class": "ek-field", "data-key": f.key });
      var legend = el("legend");
      labelText(legend, f.label, f.required);
      box.appendChild(legend);
      f.options.forEach(function (o) {
        var lab = el("label", { "class": "ek-choice" });
        lab.appendChild(el("input", { type: f.type, name: f.key, value: o.value }));
        lab.appendChild(document.createTextNode(" " + o.label));
        box.appendChild(lab);
      });
    } else if (f.type === "checkbox") {
      box = el("div", { "class": "ek-field", "data-key": f.key });
      var lab = el("label", { "class": "ek-choice" });
      lab.appendChild(el("input", { type: "checkbox", id: id, name: f.key, value: "on", required: f.required }));
      labelText(lab, " " + f.label, f.required);
      box.appendChild(lab);
    } else {
      box = el("div", { "class": "ek-field", "data-key": f.key });
      var label = el("label", { "for": id });
      labelText(label, f.label, f.required);
      box.appendChild(label);
      if (f.type === "select") {
        input = el("select", { id: id, name: f.key, required: f.required });
        input.appendChild(el("option", { value: "" }, C.texts.choose));
        f.options.forEach(function (o) { input.appendChild(el("option", { value: o.value }, o.label)); });
      } else if (f.type === "textarea") {
        input = el("textarea", { id: id, name: f.key, required: f.required, maxlength: f.max, placeholder: f.placeholder });
      } else {
        input = el("input", { type: f.type, id: id, name: f.key, required: f.required, maxlength: f.max, placeholder: f.placeholder, autocomplete: f.key === "email" ? "email" : null });
      }
      box.appendChild(input);
    }
    if (f.help) { box.appendChild(el("p", { "class": "ek-help" }, f.help)); }
    form.appendChild(box);
  }

  function showErrors(form, details) {
    var old = form.querySelectorAll(".ek-error");
    for (var i = 0; i < old.length; i++) { old[i].parentNode.removeChild(old[i]); }
    var bad = form.querySelectorAll("[aria-invalid]");
    for (var j = 0; j < bad.length; j++) { bad[j].removeAttribute("aria-invalid"); }
    var first = null;
    Object.keys(details).forEach(function (key) {
      var box = form.querySelector('[data-key="' + (window.CSS && CSS.escape ? CSS.escape(key) : key) + '"]') || form.querySelector(".ek-summary");
      var msg = el("p", { "class": "ek-error", role: "alert" }, String(details[key]));
      box.appendChild(msg);
      var input = box.querySelector("input,select,textarea");
      if (input) { input.setAttribute("aria-invalid", "true"); first = first || input; }
    });
    if (first) { first.focus(); }
  }

  function done(container, body) {
    if (body.redirect) { window.location.assign(body.redirect); return; }
    var box = el("div", { "class": "ekiden-form", role: "status" });
    box.appendChild(el("p", {}, body.message));
    if (body.document_url) {
      var p = el("p");
      p.appendChild(el("a", { href: body.document_url, rel: "noopener" }, C.texts.download));
      box.appendChild(p);
    }
    container.replaceChildren(box);
  }

  function render(container) {
    if (container.getAttribute("data-ekiden-rendered")) { return; }
    container.setAttribute("data-ekiden-rendered", "1");
    injectStyle();
    var form = el("form", { "class": "ekiden-form", method: "post", action: C.action, novalidate: true });
    if (C.description) { form.appendChild(el("p", { "class": "ek-help" }, C.description)); }
    var summary = el("div", { "class": "ek-summary", "data-key": "_form" });
    form.appendChild(summary);
    hidden(form, "_sid", C.sid);
    hidden(form, "_lang", C.locale);
    hidden(form, "_aid", anonymousId());
    hidden(form, "_page", window.location.href);
    hidden(form, "_ref", document.referrer);
    var params = new URLSearchParams(window.location.search);
    C.utm.forEach(function (name) { if (params.get(name)) { hidden(form, name, params.get(name)); } });
    C.fields.forEach(function (f, i) { renderField(form, f, i); });
    if (C.consent) {
      var box = el("div", { "class": "ek-field", "data-key": "consent" });
      var lab = el("label", { "class": "ek-choice ek-consent" });
      lab.appendChild(el("input", { type: "checkbox", name: "consent", value: "on", required: C.consent.required }));
      labelText(lab, " " + C.consent.text, C.consent.required);
      box.appendChild(lab);
      form.appendChild(box);
    }
    if (C.honeypot) {
      var trap = el("div", { "class": "ek-trap", "aria-hidden": "true" });
      trap.appendChild(el("input", { type: "text", name: C.honeypot, tabindex: "-1", autocomplete: "off" }));
      form.appendChild(trap);
    }
    var button = el("button", { type: "submit" }, C.texts.submit);
    form.appendChild(button);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button.disabled) { return; }
      button.disabled = true;
      button.textContent = C.texts.sending;
      // Form-encoded with only safelisted headers: a simple CORS request, no preflight.
      fetch(C.action, { method: "POST", body: new URLSearchParams(new FormData(form)), headers: { Accept: "application/json" }, credentials: "omit" })
        .then(function (r) { return r.json().then(function (body) { return { status: r.status, body: body }; }); })
        .then(function (res) {
          if (res.status < 300 && res.body.ok) { done(container, res.body); return; }
          var details = (res.body.error && res.body.error.details) || {};
          if (typeof details !== "object" || Array.isArray(details) || !Object.keys(details).length) { details = { _form: C.texts.failed }; }
          showErrors(form, details);
        })
        .catch(function () { showErrors(form, { _form: C.texts.failed }); })
        .then(function () { button.disabled = false; button.textContent = C.texts.submit; });
    });
    container.replaceChildren(form);
  }

  function start() {
    var targets = document.querySelectorAll('[data-ekiden-form="' + C.slug + '"]');
    if (!targets.length && script && script.parentNode) {
      var div = el("div", { "data-ekiden-form": C.slug });
      script.parentNode.insertBefore(div, script.nextSibling);
      targets = [div];
    }
    for (var i = 0; i < targets.length; i++) { render(targets[i]); }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
