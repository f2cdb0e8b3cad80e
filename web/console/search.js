// Switchboard agent console: finding things. The top bar's search box ("/" focuses it, see keys.js;
// GET /api/v1/agent/search) lists matching messages, notes, tickets and customers, newest first, with
// the matched words marked; a result opens its conversation, or the customer's profile
// (GET /api/v1/agent/customers/{visitor_id}) when the conversation is archived. In the handoff packet
// the customer's name opens their profile, and the conversation's labels are chips the agent edits
// (PUT /api/v1/agent/conversations/{id}/labels).
// Every text from the server is set with textContent: snippets are plain text plus highlight offsets,
// never HTML. Plain browser JavaScript, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = () => window.SwitchboardConsole;
  const LABEL = /^[a-z0-9][a-z0-9_-]{0,31}$/;
  const KIND = { message: "Message", note: "Internal note", ticket: "Ticket", customer: "Customer" };
  const ROLE = { customer: "customer", assistant: "bot", agent: "agent" };
  let packet = null; // the conversation open in the console
  let labels = []; // ...and its labels
  let lastQuery = null;
  let labelRequest = 0; // only the answer to the latest labels request is shown
  const rowLabels = new Map(); // conversation id -> its labels, for the chips in the Mine and Queue rows
  const ROWS = "#mine-list > li[data-row], #queue-list > li[data-row]";
  const ROW_BATCH = 100; // ids per GET /labels (the server's limit)

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  const when = (iso) => {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  };

  // The snippet as text nodes, with <mark> around each highlighted range: nothing is parsed as HTML.
  function snippetNode(result) {
    const node = el("p", { class: "snippet" });
    let at = 0;
    const text = result.snippet || "";
    for (const [start, end] of result.highlights || []) {
      if (start < at || end > text.length) continue;
      node.append(text.slice(at, start), el("mark", { text: text.slice(start, end) }));
      at = end;
    }
    node.append(text.slice(at));
    return node;
  }

  function chips(list, { removable = false } = {}) {
    return el(
      "ul",
      { class: "label-chips", "aria-label": "Labels" },
      ...list.map((label) =>
        el(
          "li",
          { class: "label-chip" },
          label,
          removable
            ? el("button", {
                type: "button", class: "chip-remove", "data-label": label,
                "aria-label": `Remove label ${label}`, text: "×",
              })
            : null,
        ),
      ),
    );
  }

  // --- the search view --------------------------------------------------------------------------

  function show(view) {
    $("console-view").dataset.view = view;
    $("search-view").hidden = view !== "search";
  }

  function closeSearch() {
    show("conversations");
    $("search-q").focus();
  }

  async function runSearch(event) {
    if (event) event.preventDefault();
    const q = $("search-q").value.trim();
    if (!q) return;
    const label = $("search-label").value.trim().toLowerCase();
    const params = new URLSearchParams({ q });
    if (label) params.set("label", label);
    lastQuery = params.toString();
    show("search");
    $("profile").hidden = true;
    $("search-results-wrap").hidden = false;
    $("search-summary").textContent = "Searching…";
    try {
      const results = (await ui().api("GET", `/search?${params}`)) || [];
      if (params.toString() !== lastQuery) return; // a newer search started meanwhile
      renderResults(results, q, label);
    } catch (err) {
      $("search-summary").textContent = err && err.message ? err.message : "Search failed.";
      $("search-results").replaceChildren();
    }
  }

  function renderResults(results, q, label) {
    const where = label ? ` with label “${label}”` : "";
    $("search-summary").textContent = results.length
      ? `${results.length} result${results.length === 1 ? "" : "s"} for “${q}”${where}, newest first`
      : `Nothing found for “${q}”${where}.`;
    ui().announce($("search-summary").textContent);
    $("search-results").replaceChildren(
      ...results.map((r) => {
        const who = r.kind === "message" && r.role ? ` · ${ROLE[r.role] || r.role}` : "";
        const open = el(
          "button",
          { type: "button", class: "result-open", "data-conversation": r.conversation_id },
          el("span", { class: "result-kind", "data-kind": r.kind, text: `${KIND[r.kind] || r.kind}${who}` }),
          el("time", { datetime: r.at, class: "muted small", text: when(r.at) }),
          snippetNode(r),
        );
        open.addEventListener("click", () => openResult(r));
        const item = el("li", { class: "result" }, open);
        if (r.labels && r.labels.length) item.append(chips(r.labels));
        if (r.visitor_id) {
          const profile = el("button", { type: "button", class: "link small", text: "Customer profile" });
          profile.addEventListener("click", () => openProfile(r.visitor_id));
          item.append(profile);
        }
        return item;
      }),
    );
  }

  async function openResult(result) {
    // Live conversations open in the console; archived ones (no packet any more) show their customer.
    let live;
    try {
      live = await conversationIsLive(result.conversation_id);
    } catch (err) {
      ui().failed(err);
      return;
    }
    if (live) {
      show("conversations");
      await ui().open(result.conversation_id);
      if (window.SwitchboardPanes) window.SwitchboardPanes.show("conversation"); // a phone: its pane

    } else if (result.visitor_id) {
      openProfile(result.visitor_id);
    } else {
      ui().showAlert("This conversation is archived; its customer has no visitor id to show a profile for.");
    }
  }

  async function conversationIsLive(id) {
    try {
      await ui().api("GET", `/conversations/${encodeURIComponent(id)}`);
      return true;
    } catch (err) {
      if (err && err.status === 404) return false;
      throw err;
    }
  }

  // --- the customer profile -----------------------------------------------------------------------

  async function openProfile(visitorId, label) {
    show("search");
    $("search-results-wrap").hidden = true;
    const params = label ? `?${new URLSearchParams({ label })}` : "";
    try {
      const profile = await ui().api("GET", `/customers/${encodeURIComponent(visitorId)}${params}`);
      renderProfile(profile, label);
    } catch (err) {
      ui().failed(err);
    }
  }

  function renderProfile(p, label) {
    $("profile").hidden = false;
    $("profile-name").textContent = p.name || p.email || "Anonymous visitor";
    $("profile-ids").textContent = [p.email, `visitor id ${p.visitor_id}`].filter(Boolean).join(" · ");
    const allLabels = [...new Set(p.conversations.flatMap((c) => c.labels))].sort();
    const filter = $("profile-filter");
    filter.replaceChildren(
      el("option", { value: "", text: "All conversations" }),
      ...[...new Set([...allLabels, ...(label ? [label] : [])])].map((l) =>
        el("option", { value: l, text: `Label: ${l}`, selected: l === label }),
      ),
    );
    filter.onchange = () => openProfile(p.visitor_id, filter.value || undefined);
    $("profile-conversations").replaceChildren(
      ...p.conversations.map((c) => {
        const rating = c.rating ? `rated ${c.rating.score}/5` : "not rated";
        const resolution = c.resolution ? c.resolution.replace(/_/g, " ") : "open";
        const row = el(
          "li",
          { class: "profile-row" },
          el("span", { class: "who", text: `${c.kind === "ticket" ? "Ticket" : "Chat"} · ${when(c.started_at)}` }),
          el("span", { class: "state-badge", "data-state": c.state, text: c.state }),
          el("span", { class: "muted small", text: `${resolution} · ${rating} · last ${when(c.last_activity)}` }),
        );
        if (c.labels.length) row.append(chips(c.labels));
        return row;
      }),
    );
    $("profile-conversations-empty").hidden = p.conversations.length > 0;
    $("profile-tickets").replaceChildren(
      ...p.tickets.map((t) =>
        el("li", { class: "profile-row" },
          el("span", { class: "who", text: t.subject }),
          el("span", { class: "muted small", text: `${t.status} · ${t.channel} · ${when(t.created_at)}` })),
      ),
    );
    $("profile-tickets-empty").hidden = p.tickets.length > 0;
    const scores = p.ratings.map((r) => r.score);
    $("profile-rating").textContent = scores.length
      ? `${(scores.reduce((a, b) => a + b, 0) / scores.length).toFixed(1)}/5 over ${scores.length} rating${scores.length === 1 ? "" : "s"}`
      : "No ratings yet";
    $("profile-name").focus();
  }

  // --- the packet: the customer opens the profile; labels as chips -------------------------------

  function onPacket(event) {
    const next = event.detail;
    const changed = !packet || packet.conversation_id !== next.conversation_id;
    packet = next;
    const customer = $("conv-customer");
    const visitorId = packet.customer && packet.customer.id;
    customer.classList.toggle("customer-link", Boolean(visitorId));
    if (visitorId) {
      customer.setAttribute("role", "button");
      customer.setAttribute("tabindex", "0");
      customer.title = "Open the customer's profile";
    } else {
      customer.removeAttribute("role");
      customer.removeAttribute("tabindex");
      customer.removeAttribute("title");
    }
    if (changed) {
      labels = [];
      renderLabels();
      loadLabels(packet.conversation_id);
    }
  }

  function openCustomer(event) {
    if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
    const visitorId = packet && packet.customer && packet.customer.id;
    if (!visitorId) return;
    event.preventDefault();
    openProfile(visitorId);
  }

  async function loadLabels(id) {
    const mine = ++labelRequest;
    try {
      const got = await ui().api("GET", `/conversations/${encodeURIComponent(id)}/labels`);
      // A label saved (or another conversation opened) since this request is newer than its answer: an
      // answer read before a save must not take the saved label off the row or the packet.
      if (mine !== labelRequest) return;
      rowLabels.set(id, got.labels);
      decorateRows();
      if (packet && packet.conversation_id === id) {
        labels = got.labels;
        renderLabels();
      }
    } catch (err) {
      ui().failed(err);
    }
  }

  function renderLabels() {
    const list = chips(labels, { removable: true });
    list.id = "conv-label-chips";
    $("conv-label-chips").replaceWith(list);
  }

  async function saveLabels(next) {
    const id = packet.conversation_id;
    const mine = ++labelRequest;
    try {
      const got = await ui().api("PUT", `/conversations/${encodeURIComponent(id)}/labels`, { labels: next });
      rowLabels.set(id, got.labels);
      decorateRows();
      if (mine === labelRequest && packet && packet.conversation_id === id) {
        labels = got.labels;
        renderLabels();
        ui().announce(`Labels: ${labels.join(", ") || "none"}`);
      }
      return true;
    } catch (err) {
      ui().failed(err);
      return false;
    }
  }

  async function addLabel(event) {
    event.preventDefault();
    const input = $("conv-label-input");
    const label = input.value.trim().toLowerCase();
    if (!label || !packet) return;
    if (!LABEL.test(label)) {
      ui().showAlert("A label is 1 to 32 characters: letters a-z, digits, - and _.");
      return;
    }
    if (await saveLabels([...new Set([...labels, label])])) input.value = "";
  }

  function removeLabel(event) {
    const button = event.target.closest(".chip-remove");
    if (!button || !packet) return;
    saveLabels(labels.filter((l) => l !== button.dataset.label));
  }

  // --- label chips in the Mine and Queue rows (console.js re-renders them; the chips follow) --------

  function decorateRows() {
    for (const row of document.querySelectorAll(ROWS)) {
      const list = rowLabels.get(row.dataset.row) || [];
      const shown = row.querySelector(":scope > .row-labels");
      const key = list.join(",");
      if (shown && shown.dataset.key === key) continue;
      if (!list.length) {
        if (shown) shown.remove();
        continue;
      }
      const node = chips(list);
      node.classList.add("row-labels");
      node.dataset.key = key;
      if (shown) shown.replaceWith(node);
      else row.append(node);
    }
  }

  let fetching = false;
  async function fetchRowLabels() {
    if (fetching) return;
    fetching = true;
    try {
      const missing = () =>
        [...new Set([...document.querySelectorAll(ROWS)].map((row) => row.dataset.row))].filter((id) => !rowLabels.has(id));
      for (let unknown = missing(); unknown.length; unknown = missing()) {
        const ids = unknown.slice(0, ROW_BATCH);
        const params = new URLSearchParams(ids.map((id) => ["conversation_id", id]));
        const got = (await ui().api("GET", `/labels?${params}`)) || {};
        // A label saved meanwhile (saveLabels) is newer than this answer.
        for (const id of ids) if (!rowLabels.has(id)) rowLabels.set(id, got[id] || []);
        decorateRows();
      }
    } catch {
      // the rows just show no chips; the console reports its own trouble
    } finally {
      fetching = false;
    }
  }

  const rowsChanged = new MutationObserver(() => {
    decorateRows(); // at once, from what is known: no flicker when a list re-renders
    fetchRowLabels();
  });
  for (const id of ["mine-list", "queue-list"]) rowsChanged.observe($(id), { childList: true });
  fetchRowLabels(); // the lists may be rendered already (console.js restores them before this runs)

  document.addEventListener("switchboard:packet", onPacket);
  // Signing in settles the screens (agents.js shows the conversations): a search typed meanwhile stays.
  document.addEventListener("switchboard:signed-in", () => {
    if (!$("search-view").hidden) show("search");
  });
  $("search-form").addEventListener("submit", runSearch);
  $("search-close").addEventListener("click", closeSearch);
  $("conv-customer").addEventListener("click", openCustomer);
  $("conv-customer").addEventListener("keydown", openCustomer);
  $("conv-label-form").addEventListener("submit", addLabel);
  $("conv-labels").addEventListener("click", removeLabel);
  $("profile-back").addEventListener("click", () => {
    if (lastQuery) {
      $("profile").hidden = true;
      $("search-results-wrap").hidden = false;
    } else {
      closeSearch();
    }
  });
})();
