// Switchboard: the Saved replies screen (replies.html). Every agent lists the team's replies and their own,
// adds and edits their own; admins also manage the team's. Uses admin-page.js for its element builder and
// confirm dialog, with its own sign-in check (agents are welcome here, not only admins). Plain browser
// JavaScript, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const { el, confirmAction } = window.SwitchboardAdminPage;
  const { announce } = window.SwitchboardFeedback;
  const BASE = "/api/v1/agent/saved-replies";
  let token = null;
  let me = null;
  let replies = [];
  let editing = null; // the reply being edited, or null when adding

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const error = (data && data.error) || { message: res.statusText };
      const failure = new Error(error.message);
      failure.status = res.status;
      throw failure;
    }
    return data;
  }

  function show(id) {
    for (const view of ["signed-out", "forbidden", "page"]) $(view).hidden = view !== id;
  }

  function showError(message) {
    $("rp-error").textContent = message || "";
    $("rp-error").hidden = !message;
  }

  async function load() {
    const q = $("rp-q").value.trim();
    replies = (await api("GET", q ? `${BASE}?q=${encodeURIComponent(q)}` : BASE)) || [];
    render();
  }

  function render() {
    $("rp-list").replaceChildren(
      ...replies.map((r) =>
        el("li", { class: "rp-item", "data-reply-id": r.id }, [
          el("div", { class: "rp-item-head" }, [
            el("code", { text: r.shortcut }),
            el("span", { class: "rp-item-title", text: r.title }),
            el("span", { class: `reply-scope reply-scope-${r.scope}`, text: r.scope === "team" ? "Team" : "Mine" }),
          ]),
          el("div", { class: "rp-item-text", text: r.text }),
          r.editable
            ? el("div", { class: "rp-item-actions" }, [
                el("button", { type: "button", text: "Edit", "aria-label": `Edit ${r.shortcut}`, onclick: () => edit(r) }),
                el("button", { type: "button", text: "Delete", "aria-label": `Delete ${r.shortcut}`, onclick: () => remove(r) }),
              ])
            : null,
        ]),
      ),
    );
    $("rp-empty").hidden = replies.length > 0;
    $("rp-count").textContent = `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`;
  }

  function edit(reply) {
    editing = reply;
    $("form-title").textContent = `Edit ${reply.shortcut}`;
    $("rp-title").value = reply.title;
    $("rp-shortcut").value = reply.shortcut;
    $("rp-text").value = reply.text;
    $("rp-scope").value = reply.scope;
    $("rp-scope").disabled = true; // the scope stays
    $("rp-save").textContent = "Save changes";
    $("rp-cancel").hidden = false;
    showError("");
    $("rp-title").focus();
  }

  function resetForm() {
    editing = null;
    $("rp-form").reset();
    $("form-title").textContent = "Add a reply";
    $("rp-scope").disabled = false;
    $("rp-save").textContent = "Add reply";
    $("rp-cancel").hidden = true;
    showError("");
  }

  async function remove(reply) {
    if (!(await confirmAction(`Delete ${reply.shortcut}?`, reply.title, "Delete"))) return;
    try {
      await api("DELETE", `${BASE}/${encodeURIComponent(reply.id)}`);
      announce(`Deleted ${reply.shortcut}`);
      if (editing && editing.id === reply.id) resetForm();
      await load();
    } catch (err) {
      showError(err.message);
    }
  }

  async function save(event) {
    event.preventDefault();
    const body = { title: $("rp-title").value, shortcut: $("rp-shortcut").value, text: $("rp-text").value };
    try {
      if (editing) {
        await api("PATCH", `${BASE}/${encodeURIComponent(editing.id)}`, body);
        announce(`Saved ${body.shortcut}`);
      } else {
        await api("POST", BASE, { ...body, scope: $("rp-scope").value });
        announce(`Added ${body.shortcut}`);
      }
      resetForm();
      await load();
    } catch (err) {
      showError(err.message);
    }
  }

  window.SwitchboardSession.ready.then(async (session) => {
    token = session.token;
    if (!token) return show("signed-out");
    try {
      me = await api("GET", "/api/v1/agent/me");
    } catch (err) {
      return show(err.status === 401 ? "signed-out" : "forbidden");
    }
    $("me").textContent = `${me.name} (${me.role})`;
    if (me.role !== "admin") {
      $("rp-scope").querySelector('option[value="team"]').remove();
      $("rp-scope-label").hidden = true;
    }
    show("page");
    $("rp-form").addEventListener("submit", save);
    $("rp-cancel").addEventListener("click", resetForm);
    $("rp-filter").addEventListener("submit", (event) => event.preventDefault());
    let timer = null;
    $("rp-q").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => load().catch((err) => showError(err.message)), 200);
    });
    await load();
  });
})();
