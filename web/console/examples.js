// Switchboard examples review: admins approve, edit, retire and curate the examples agent replies become.
//
// Plain browser JavaScript, no build step. It uses the console's login (the bearer token session.js keeps
// in sessionStorage) and the admin API (/api/v1/admin/examples). Example texts come from customers, so they
// are only ever put into the page as text (textContent / value), never as HTML.
"use strict";

(() => {
  const STATUS_WORDS = { pending: "Pending", approved: "Approved", retired: "Retired" };
  const FLAG_WORDS = {
    pii_shaped: "Looks like personal data",
    markup: "Contains markup",
    too_short: "Too short",
    too_long: "Too long",
  };

  const $ = (id) => document.getElementById(id);
  let token = null; // from session.js once it has asked the other tabs

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const { showAlert, announce } = window.SwitchboardFeedback; // feedback.js, loaded first

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!res.ok) {
      let message = res.statusText || `request failed (${res.status})`;
      try {
        message = (await res.json()).error.message || message;
      } catch {
        // not JSON: keep the status line
      }
      const error = new Error(message);
      error.status = res.status;
      throw error;
    }
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  function show(id) {
    for (const view of ["signed-out", "forbidden", "review"]) $(view).hidden = view !== id;
  }

  // ---- list ------------------------------------------------------------------------------------

  function query() {
    const params = new URLSearchParams();
    const status = $("filter-status").value;
    const curated = $("filter-curated").value;
    const intent = $("filter-intent").value.trim();
    if (status) params.set("status", status);
    if (curated) params.set("curated", curated);
    if (intent) params.set("intent", intent);
    const text = params.toString();
    return `/api/v1/admin/examples${text ? `?${text}` : ""}`;
  }

  // Filters change faster than the server may answer: only the latest request's answer is shown, so a slow
  // answer to an older filter never replaces the list the admin asked for last.
  let latestLoad = 0;

  async function load() {
    const ticket = ++latestLoad;
    let examples;
    try {
      examples = await api("GET", query());
      if (ticket !== latestLoad) return;
    } catch (err) {
      if (ticket !== latestLoad) return;
      if (err.status === 401) return show("signed-out");
      if (err.status === 403) return show("forbidden");
      return showAlert(err.message);
    }
    const list = $("ex-list");
    list.replaceChildren(...examples.map(card));
    $("ex-empty").hidden = examples.length > 0;
    $("ex-count").textContent = `${examples.length} example${examples.length === 1 ? "" : "s"}`;
  }

  function field(label, kind, text) {
    return el("div", { class: "ex-field" }, [
      el("span", { class: "label", text: label }),
      el("p", { class: "ex-text", "data-kind": kind, text }),
    ]);
  }

  function card(example) {
    const flags = example.review_flags || [];
    const created = new Date(example.created_at);
    const meta = el("div", { class: "ex-meta" }, [
      el("span", { class: "ex-status", "data-status": example.status, text: STATUS_WORDS[example.status] || example.status }),
      example.curated ? el("span", { class: "ex-curated", text: "Curated: in every prompt" }) : null,
      ...flags.map((flag) => el("span", { class: "ex-flag", "data-flag": flag, text: FLAG_WORDS[flag] || flag })),
      el("span", { text: example.intent ? example.intent.replace(/_/g, " ") : "no intent" }),
      el("span", { text: Number.isNaN(created.getTime()) ? "" : created.toLocaleString() }),
    ]);
    const body = el("div", { class: "ex-body" }, [
      field("Customer asked", "question", example.customer_message),
      field("Agent replied", "reply", example.agent_text),
    ]);
    const context = example.context
      ? el("details", { class: "ex-context" }, [el("summary", { text: "Context the agent saw" }), el("pre", { text: example.context })])
      : null;
    const node = el("li", { class: "ex-card", "data-id": example.id, "data-status": example.status }, [meta, body, context]);
    node.append(actions(example, node, body));
    return node;
  }

  function button(text, onclick, extra = {}) {
    return el("button", { type: "button", text, onclick, ...extra });
  }

  function actions(example, node, body) {
    const row = el("div", { class: "ex-actions" });
    if (example.status !== "approved") {
      row.append(button("Approve", () => change(example, { status: "approved" }, "approved"), { class: "primary" }));
    }
    if (example.status === "approved") {
      row.append(
        example.curated
          ? button("Uncurate", () => change(example, { curated: false }, "taken out of every prompt"))
          : button("Curate", () => change(example, { curated: true }, "curated: now in every prompt")),
      );
    }
    row.append(button("Edit", () => edit(example, node, body, row)));
    row.append(el("span", { class: "spacer" }));
    if (example.status !== "retired") {
      row.append(button("Reject", () => change(example, { status: "retired" }, "rejected (retired)")));
    }
    return row;
  }

  function edit(example, node, body, row) {
    const question = el("textarea", { id: `q-${example.id}`, rows: 3 });
    question.value = example.customer_message;
    const reply = el("textarea", { id: `a-${example.id}`, rows: 4 });
    reply.value = example.agent_text;
    const form = el("form", { class: "ex-edit", "aria-label": "Edit example" }, [
      el("label", { for: question.id, text: "Customer asked" }),
      question,
      el("label", { for: reply.id, text: "Agent replied" }),
      reply,
      el("div", { class: "ex-actions" }, [
        button("Cancel", () => load()),
        el("span", { class: "spacer" }),
        el("button", { type: "submit", class: "primary", text: "Save" }),
      ]),
    ]);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      change(example, { customer_message: question.value, agent_text: reply.value }, "saved");
    });
    body.replaceWith(form);
    row.hidden = true;
    question.focus();
  }

  async function change(example, patch, words) {
    try {
      await api("PATCH", `/api/v1/admin/examples/${encodeURIComponent(example.id)}`, patch);
    } catch (err) {
      return showAlert(err.message);
    }
    announce(`Example ${words}.`);
    await load();
  }

  // ---- start -----------------------------------------------------------------------------------

  async function start() {
    if (!token) return show("signed-out");
    let me;
    try {
      me = await api("GET", "/api/v1/agent/me");
    } catch (err) {
      return show(err.status === 401 ? "signed-out" : "forbidden");
    }
    $("me").textContent = `${me.name} (${me.role})`;
    if (me.role !== "admin") return show("forbidden");
    show("review");
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      load();
    });
    for (const id of ["filter-status", "filter-curated"]) $(id).addEventListener("change", load);
    await load();
  }

  window.SwitchboardSession.ready.then((session) => {
    token = session.token;
    start();
  });
})();
