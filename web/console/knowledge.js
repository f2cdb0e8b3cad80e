// Switchboard knowledge screen (admins): the knowledge versions, a version's documents, edits saved as new
// versions, activation and rollback. Plain browser JavaScript, no build step, over the admin API
// /api/v1/admin/knowledge (docs/knowledge.md); admin-page.js gives the sign-in check and API client.
"use strict";

(() => {
  const BASE = "/api/v1/admin/knowledge";
  const KIND_WORDS = { policy: "Policy", article: "Article", guidance: "Guidance" };
  const $ = (id) => document.getElementById(id);
  const page = window.SwitchboardAdminPage;
  const { el, api, describe, shortId, when } = page;
  const { showAlert, announce } = window.SwitchboardFeedback;

  let versions = []; // the last saved first
  let shown = null; // the version detail on screen: {version, items}
  let editing = null; // the document being edited (null: a new one)

  const head = () => versions.find((v) => v.head) || null;
  const active = () => versions.find((v) => v.active) || null;

  // ---- versions ------------------------------------------------------------------------------------

  async function loadVersions() {
    versions = await api("GET", `${BASE}/versions?limit=100`);
    renderVersions();
  }

  function badges(version) {
    return [
      version.active ? el("span", { class: "kn-badge", "data-badge": "active", text: "Active" }) : null,
      version.head ? el("span", { class: "kn-badge", "data-badge": "head", text: "Head" }) : null,
    ];
  }

  function renderVersions() {
    const list = $("versions");
    list.replaceChildren(
      ...versions.map((v) =>
        el("li", { class: "kn-version", "data-id": v.id, "aria-current": shown && shown.version.id === v.id ? "true" : null }, [
          el("button", { type: "button", class: "kn-version-button", onclick: () => open(v.id) }, [
            el("span", { class: "kn-version-top" }, [el("code", { text: shortId(v.id) }), ...badges(v)]),
            el("span", { class: "kn-version-change", text: v.change }),
            el("span", { class: "muted small", text: `${when(v.saved_at)} · ${v.documents} document${v.documents === 1 ? "" : "s"} · ${v.chars.toLocaleString()} chars` }),
          ]),
        ]),
      ),
    );
  }

  // ---- one version -------------------------------------------------------------------------------

  async function open(id, { keepEditor = false } = {}) {
    let detail;
    let parent = null;
    try {
      detail = await api("GET", `${BASE}/versions/${encodeURIComponent(id)}`);
      if (detail.version.parent_id) {
        try {
          parent = await api("GET", `${BASE}/versions/${encodeURIComponent(detail.version.parent_id)}`);
        } catch {
          parent = null; // a parent that is gone: no change marks
        }
      }
    } catch (err) {
      return showAlert(describe(err));
    }
    shown = detail;
    renderVersions();
    renderDetail(parent);
    if (!keepEditor) closeEditor();
  }

  function changesFrom(parent) {
    if (!parent) return { marks: {}, removed: [] };
    const before = new Map(parent.items.map((d) => [d.name, d]));
    const marks = {};
    for (const doc of shown.items) {
      const old = before.get(doc.name);
      if (!old) marks[doc.name] = "added";
      else if (old.sha256 !== doc.sha256) marks[doc.name] = "changed";
    }
    const now = new Set(shown.items.map((d) => d.name));
    return { marks, removed: parent.items.filter((d) => !now.has(d.name)).map((d) => d.name) };
  }

  function renderDetail(parent) {
    const v = shown.version;
    const isHead = v.head;
    $("detail").hidden = false;
    $("detail-id").textContent = shortId(v.id);
    $("detail-badges").replaceChildren(...badges(v).filter(Boolean));
    $("detail-meta").textContent =
      `${v.change} · saved ${when(v.saved_at)}` + (v.activated_at ? ` · last activated ${when(v.activated_at)}` : " · never activated");
    const { marks, removed } = changesFrom(parent);
    const parts = [];
    const added = Object.keys(marks).filter((n) => marks[n] === "added");
    const changed = Object.keys(marks).filter((n) => marks[n] === "changed");
    if (added.length) parts.push(`added ${added.join(", ")}`);
    if (changed.length) parts.push(`changed ${changed.join(", ")}`);
    if (removed.length) parts.push(`removed ${removed.join(", ")}`);
    $("detail-changes").textContent = parent
      ? `Since ${shortId(parent.version.id)}: ${parts.length ? parts.join("; ") : "no change"}.`
      : "The first version.";
    $("detail-activate").hidden = v.active;
    $("detail-activate").textContent = isOlderThanActive(v) ? "Roll back to this version" : "Activate this version";
    $("detail-evaluate").href = `/console/evaluate.html?version=${encodeURIComponent(v.id)}`;
    $("detail-not-head").hidden = isHead;
    $("add-row").hidden = !isHead;
    $("documents").replaceChildren(...shown.items.map((doc) => documentItem(doc, marks[doc.name], isHead)));
  }

  function isOlderThanActive(v) {
    const current = active();
    return Boolean(current && !v.active && new Date(v.saved_at) < new Date(current.saved_at));
  }

  function documentItem(doc, mark, editable) {
    const actions = editable
      ? el("span", { class: "kn-doc-actions" }, [
          el("button", { type: "button", text: "Edit", "aria-label": `Edit ${doc.name}`, onclick: () => openEditor(doc) }),
          doc.kind === "policy"
            ? null
            : el("button", { type: "button", text: "Remove", "aria-label": `Remove ${doc.name}`, onclick: () => remove(doc) }),
        ])
      : null;
    return el("li", { class: "kn-doc", "data-name": doc.name, "data-kind": doc.kind }, [
      el("div", { class: "kn-doc-head" }, [
        el("span", { class: "kn-kind", "data-kind": doc.kind, text: KIND_WORDS[doc.kind] || doc.kind }),
        el("span", { class: "kn-doc-name", text: doc.name }),
        mark ? el("span", { class: "kn-mark", "data-mark": mark, text: mark === "added" ? "New" : "Changed" }) : null,
        el("span", { class: "muted small", text: `${doc.chars.toLocaleString()} chars` }),
        el("span", { class: "spacer" }),
        actions,
      ]),
      el("details", { class: "kn-doc-text" }, [el("summary", { text: "Text" }), el("pre", { text: doc.text || "" })]),
    ]);
  }

  // ---- editing -----------------------------------------------------------------------------------

  function openEditor(doc) {
    editing = doc;
    $("editor").hidden = false;
    $("editor-title").textContent = doc ? `Edit ${KIND_WORDS[doc.kind].toLowerCase()} “${doc.name}”` : "Add a document";
    $("doc-name").value = doc ? doc.name : "";
    $("doc-name").readOnly = Boolean(doc); // the name is the document's identity: a new name is a new document
    $("doc-kind").value = doc ? doc.kind : "article";
    $("doc-kind").disabled = Boolean(doc);
    $("doc-text").value = doc ? doc.text : "";
    $("doc-file").value = "";
    editorError(null);
    (doc ? $("doc-text") : $("doc-name")).focus();
  }

  // A Markdown file chosen in the editor fills the text (and, for a new document, the name: the file's
  // name without its extension, as `switchboard knowledge import` names documents).
  async function loadFile() {
    const file = $("doc-file").files[0];
    if (!file) return;
    $("doc-text").value = await file.text();
    if (!editing && !$("doc-name").value.trim()) $("doc-name").value = file.name.replace(/\.(md|markdown|txt)$/i, "");
    announce(`Loaded ${file.name} into the editor; save to make a new version.`);
  }

  function closeEditor() {
    editing = null;
    $("editor").hidden = true;
    editorError(null);
  }

  function editorError(err) {
    const box = $("editor-error");
    box.hidden = !err;
    $("editor-reload").hidden = !(err && err.code === "knowledge_conflict" && /changed since/.test(err.message));
    if (!err) return (box.textContent = "");
    if (err.code === "knowledge_conflict" && /changed since/.test(err.message)) {
      box.textContent = `Someone saved a newer version while you were editing: ${describe(err)}. Your text is kept: load the latest version, check it, and save again.`;
    } else {
      box.textContent = `Not saved: ${describe(err)}`;
    }
  }

  async function save(event) {
    event.preventDefault();
    const base = shown.version.id;
    const body = { name: $("doc-name").value, kind: $("doc-kind").value, text: $("doc-text").value, base_version: base };
    let saved;
    $("editor-save").disabled = true;
    try {
      saved = await api("POST", BASE, body);
    } catch (err) {
      return editorError(err);
    } finally {
      $("editor-save").disabled = false;
    }
    const id = shortId(saved.version.id);
    announce(saved.created ? `Saved as version ${id}. It is not active until you activate it.` : `Version ${id} already holds exactly this; opened it.`);
    await loadVersions();
    await open(saved.version.id);
  }

  async function reloadLatest() {
    await loadVersions();
    const latest = head();
    if (latest) await open(latest.id, { keepEditor: true });
    editorError(null);
    announce(`Loaded the latest version ${shortId(latest && latest.id)}; your text is still in the editor.`);
  }

  async function remove(doc) {
    const ok = await page.confirmAction(
      `Remove “${doc.name}”?`,
      "This saves a new version without it. The bot keeps answering from the active version until you activate the new one.",
      "Remove",
    );
    if (!ok) return;
    let saved;
    try {
      saved = await api("DELETE", `${BASE}/documents/${encodeURIComponent(doc.name)}?base_version=${encodeURIComponent(shown.version.id)}`);
    } catch (err) {
      return showAlert(`Not removed: ${describe(err)}`);
    }
    announce(`Removed ${doc.name}: version ${shortId(saved.version.id)} saved, not active yet.`);
    await loadVersions();
    await open(saved.version.id);
  }

  async function activate() {
    const v = shown.version;
    const current = active();
    const rollback = isOlderThanActive(v);
    const ok = await page.confirmAction(
      rollback ? `Roll back to version ${shortId(v.id)}?` : `Activate version ${shortId(v.id)}?`,
      `Every conversation answers from it within seconds${current ? `, instead of version ${shortId(current.id)}` : ""}. ` +
        "You can roll back at any time by activating another version.",
      rollback ? "Roll back" : "Activate",
    );
    if (!ok) return;
    try {
      await api("POST", `${BASE}/versions/${encodeURIComponent(v.id)}/activate`);
    } catch (err) {
      return showAlert(`Not activated: ${describe(err)}`);
    }
    announce(`Version ${shortId(v.id)} is active.`);
    await loadVersions();
    await open(v.id);
  }

  // ---- start -----------------------------------------------------------------------------------------

  page.start(async () => {
    $("editor").addEventListener("submit", save);
    $("editor-cancel").addEventListener("click", closeEditor);
    $("doc-file").addEventListener("change", loadFile);
    $("editor-reload").addEventListener("click", reloadLatest);
    $("add-document").addEventListener("click", () => openEditor(null));
    $("detail-activate").addEventListener("click", activate);
    $("open-head").addEventListener("click", () => head() && open(head().id));
    try {
      await loadVersions();
    } catch (err) {
      return showAlert(describe(err));
    }
    const wanted = new URLSearchParams(location.search).get("version");
    const first = versions.find((v) => v.id === wanted) || head();
    if (first) await open(first.id);
  });
})();
