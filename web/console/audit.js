// Switchboard: the audit log screen (audit.html), admins only. Filters by who, action (or an area such as
// "conversation.") and day range; pages back with "Older entries" (GET /api/v1/admin/audit?before=...);
// downloads the filtered page as CSV. Agents are shown by name (from /api/v1/admin/agents). Plain browser
// JavaScript, no build step; uses admin-page.js.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const { api, el, start, describe } = window.SwitchboardAdminPage;
  const { showAlert } = window.SwitchboardFeedback;
  const PAGE = 100;
  const AREAS = {
    "conversation.": "Conversations (all)",
    "conversation.claimed": "Claimed",
    "conversation.message_sent": "Sent a reply",
    "conversation.released": "Released",
    "conversation.transferred": "Transferred",
    "conversation.resolved": "Resolved",
    "conversation.returned_to_bot": "Returned to bot",
    "account.": "Accounts",
    "knowledge.": "Knowledge",
    "saved_reply.": "Saved replies",
    "integration_key.": "Integration keys",
    "webhook.": "Webhooks",
    "customer_data.": "Customer data (export, erasure)",
    "team.hours_changed": "Business hours",
  };
  let names = {};
  let nextBefore = null;

  function query(extra) {
    const params = new URLSearchParams({ limit: String(PAGE), ...extra });
    if ($("au-actor").value) params.set("actor", $("au-actor").value);
    if ($("au-action").value) params.set("action", $("au-action").value);
    // Days in the browser's time zone, as the admin means them.
    if ($("au-from").value) params.set("from", new Date(`${$("au-from").value}T00:00`).toISOString());
    if ($("au-to").value) {
      const end = new Date(`${$("au-to").value}T00:00`);
      end.setDate(end.getDate() + 1);
      params.set("to", end.toISOString());
    }
    return params;
  }

  const who = (id) => (id ? names[id] || id.slice(0, 12) : "System");

  function row(entry) {
    const details = Object.entries(entry.details || {})
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`)
      .join(" · ");
    const target = entry.target_type === "agent" && entry.target_id ? who(entry.target_id) : entry.target_id || "";
    return el("tr", { "data-action": entry.action }, [
      el("td", { class: "au-when", "data-label": "When", text: new Date(entry.at).toLocaleString() }),
      el("td", { "data-label": "Who", text: who(entry.actor_id) }),
      el("td", { class: "au-action", "data-label": "Action", text: entry.action }),
      el("td", { "data-label": "On" }, [el("span", { class: "muted", text: `${entry.target_type} ` }), el("code", { text: target })]),
      el("td", { class: "au-details", "data-label": details ? "Details" : null, text: details }),
    ]);
  }

  async function load(more) {
    try {
      const page = await api("GET", `/api/v1/admin/audit?${query(more && nextBefore ? { before: String(nextBefore) } : {})}`);
      const rows = page.entries.map(row);
      if (more) $("au-rows").append(...rows);
      else $("au-rows").replaceChildren(...rows);
      nextBefore = page.next_before;
      $("au-more").hidden = nextBefore === null;
      $("au-empty").hidden = $("au-rows").children.length > 0;
    } catch (err) {
      showAlert(describe(err));
    }
  }

  async function downloadCsv() {
    try {
      const res = await fetch(`/api/v1/admin/audit?${query({ format: "csv", limit: "1000" })}`, {
        headers: { Authorization: `Bearer ${window.SwitchboardSession.token()}` },
      });
      if (!res.ok) throw new Error(`download failed (${res.status})`);
      const url = URL.createObjectURL(await res.blob());
      const link = el("a", { href: url, download: "audit.csv" });
      document.body.append(link);
      link.click();
      link.remove();
      URL.revokeObjectURL(url);
    } catch (err) {
      showAlert(describe(err));
    }
  }

  start(async () => {
    for (const [value, label] of Object.entries(AREAS)) $("au-action").append(el("option", { value, text: label }));
    try {
      const agents = (await api("GET", "/api/v1/admin/agents")) || [];
      names = Object.fromEntries(agents.map((a) => [a.id, a.name]));
      for (const a of agents) $("au-actor").append(el("option", { value: a.id, text: a.name }));
    } catch (err) {
      showAlert(describe(err));
    }
    $("au-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      load(false);
    });
    $("au-more").addEventListener("click", () => load(true));
    $("au-csv").addEventListener("click", downloadCsv);
    await load(false);
  });
})();
