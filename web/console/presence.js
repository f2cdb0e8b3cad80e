// Switchboard agent console: presence. The header control sets the agent online, away or offline
// (PUT /api/v1/agent/presence); the sidebar's "Team" list shows every agent's presence, kept live by the
// agent socket's `presence` frames (console.js passes frames it does not handle on as
// "switchboard:frame"). Only online agents count when customers are told whether someone can answer.
// Plain browser JavaScript, no build step.
"use strict";

(() => {
  const LABELS = { online: "Online", away: "Away", offline: "Offline" };
  const REFRESH_MS = 30000; // load, and the "away because the console closed" of others, stay fresh
  const $ = (id) => document.getElementById(id);
  const ui = () => window.SwitchboardConsole;
  let agents = [];
  let timer = null;
  let loading = false; // a GET /agents is under way...
  let stale = false; // ...and a presence frame came meanwhile: its answer may predate it, so ask again

  function render() {
    const me = ui().me();
    const mine = agents.find((a) => me && a.id === me.id);
    if (mine) {
      $("presence-select").value = mine.presence;
      $("presence-control").dataset.presence = mine.presence;
    }
    const list = $("team-list");
    list.replaceChildren(
      ...agents.map((a) => {
        const li = document.createElement("li");
        li.className = "team-member";
        li.dataset.presence = a.presence;
        const dot = document.createElement("span");
        dot.className = "presence-dot";
        dot.setAttribute("aria-hidden", "true");
        const name = document.createElement("span");
        name.className = "team-name";
        name.textContent = a.name + (me && a.id === me.id ? " (you)" : "");
        const status = document.createElement("span");
        status.className = "team-status";
        status.textContent = LABELS[a.presence] + (a.auto ? " · console closed" : "") + ` · ${a.load}/${a.capacity}`;
        li.append(dot, name, status);
        return li;
      }),
    );
    const online = agents.filter((a) => a.presence === "online").length;
    $("team-count").textContent = `${online} online`;
  }

  async function load() {
    if (loading) {
      stale = true;
      return;
    }
    loading = true;
    try {
      do {
        stale = false;
        agents = (await ui().api("GET", "/agents")) || [];
      } while (stale);
    } catch (err) {
      return; // the console's own requests report trouble; this list just stays as it was
    } finally {
      loading = false;
    }
    render();
  }

  async function choose(event) {
    const status = event.target.value;
    try {
      const mine = await ui().api("PUT", "/presence", { status });
      const me = ui().me();
      agents = agents.map((a) => (me && a.id === me.id ? { ...a, ...mine } : a));
      render();
      ui().announce(`You are ${LABELS[status].toLowerCase()}.`);
    } catch (err) {
      ui().failed(err);
      load();
    }
  }

  function onFrame(event) {
    const frame = event.detail || {};
    if (frame.type !== "presence") return;
    const known = agents.some((a) => a.id === frame.agent_id);
    if (loading || !known) {
      load(); // a newly created or reactivated agent
      return;
    }
    agents = agents.map((a) => (a.id === frame.agent_id ? { ...a, presence: frame.presence, auto: frame.auto } : a));
    render();
  }

  // A claim, an automatic assignment, a release or a resolve changes someone's load: read it again (one
  // request at a time, however many frames come in meanwhile).
  function onLive(event) {
    const type = (event.detail || {}).type;
    if (type === "assigned" || type === "unassigned") load();
  }

  $("presence-select").addEventListener("change", choose);
  document.addEventListener("switchboard:frame", onFrame);
  document.addEventListener("switchboard:live", onLive);
  document.addEventListener("switchboard:signed-in", () => {
    load();
    clearInterval(timer);
    timer = setInterval(load, REFRESH_MS);
  });
  document.addEventListener("switchboard:signed-out", () => {
    clearInterval(timer);
    agents = [];
  });
})();
