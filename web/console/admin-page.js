// Shared by the admin pages of the console that live in their own files (knowledge, evaluate, hours, teams,
// audit): their navigation, the sign-in check (the console's token from session.js), an API client whose
// errors keep the server's typed error (status and code), a small element builder, and the screen switch
// between "sign in first", "admins only" and the page itself. Plain browser JavaScript, no build step; load
// it after feedback.js and session.js and before the page's own script.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let token = null;

  // Every text goes in as text (textContent / value), never as HTML: knowledge documents and case files
  // are written by people and may hold markup.
  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
    return node;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!res.ok) {
      let code = "http_error";
      let message = res.statusText || `request failed (${res.status})`;
      try {
        const error = (await res.json()).error;
        code = error.code || code;
        message = error.message || message;
      } catch {
        // not JSON: keep the status line
      }
      throw new ApiError(res.status, code, message);
    }
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // "Version 3f2a… could not be activated: not_found: no knowledge version …" style, for alerts.
  const describe = (err) => (err && err.code ? `${err.message} (${err.code}, ${err.status})` : String(err.message || err));

  function show(id) {
    for (const view of ["signed-out", "forbidden", "page"]) $(view).hidden = view !== id;
  }

  // Ask a yes/no question in the page's <dialog id="confirm">; resolves true when confirmed.
  function confirmAction(title, text, yes) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = yes;
    return new Promise((resolve) => {
      const done = (answer) => {
        dialog.removeEventListener("close", onClose);
        resolve(answer);
      };
      const onClose = () => done(dialog.returnValue === "yes");
      dialog.addEventListener("close", onClose);
      dialog.returnValue = "";
      dialog.showModal();
      $("confirm-no").focus();
    });
  }

  const shortId = (id) => (id ? String(id).slice(0, 12) : "");
  const when = (iso) => {
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? "" : at.toLocaleString();
  };

  // Runs `ready(me)` once an admin is signed in; otherwise shows why the page is not available.
  function start(ready) {
    window.SwitchboardSession.ready.then(async (session) => {
      token = session.token;
      if (!token) return show("signed-out");
      let me;
      try {
        me = await api("GET", "/api/v1/agent/me");
      } catch (err) {
        return show(err.status === 401 ? "signed-out" : "forbidden");
      }
      $("me").textContent = `${me.name} (${me.role})`;
      if (me.role !== "admin") return show("forbidden");
      show("page");
      await ready(me);
    });
  }

  // Every admin screen lists every other in the same order: the one list is here, and each page's
  // <nav data-admin-nav> is filled from it with the current page marked.
  const SCREENS = [
    ["Console", "/console/"],
    ["Knowledge", "/console/knowledge.html"],
    ["Evaluate", "/console/evaluate.html"],
    ["Examples", "/console/examples.html"],
    ["Hours", "/console/hours.html"],
    ["Teams", "/console/teams.html"],
    ["Audit", "/console/audit.html"],
    ["Reports", "/reports/"],
  ];

  function renderNav() {
    for (const nav of document.querySelectorAll("nav[data-admin-nav]")) {
      nav.replaceChildren(
        ...SCREENS.map(([name, href]) =>
          el("a", { href, text: name, "aria-current": href === location.pathname ? "page" : null }),
        ),
      );
    }
  }
  renderNav();

  window.SwitchboardAdminPage = Object.freeze({ api, ApiError, el, describe, confirmAction, start, shortId, when });
})();
