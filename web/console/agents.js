// Switchboard agent console, admins only: the "Agents" screen (list, deactivate/reactivate, change role,
// name and capacity) over GET/PATCH /api/v1/admin/agents. Plain browser JavaScript, no build step; it uses
// the console's API client and feedback (window.SwitchboardConsole, from console.js).
"use strict";

(() => {
  const ADMIN_AGENTS = "/api/v1/admin/agents";
  const MAX_CAPACITY = 50; // the server's limit (handoff/agents.py MAX_CAPACITY)
  const $ = (id) => document.getElementById(id);
  const ui = () => window.SwitchboardConsole;
  let accounts = [];

  function show(view) {
    const agents = view === "agents";
    $("console-view").dataset.view = view;
    $("agents-view").hidden = !agents;
    $("view-agents").setAttribute("aria-pressed", String(agents));
    $("view-conversations").setAttribute("aria-pressed", String(!agents));
    if (agents) load();
  }

  async function load() {
    try {
      accounts = await ui().api("GET", ADMIN_AGENTS);
    } catch (err) {
      ui().failed(err);
      return;
    }
    render();
  }

  function render() {
    const rows = $("agents-rows");
    const focused = document.activeElement && document.activeElement.id;
    rows.replaceChildren(...accounts.map(row));
    if (focused && $(focused)) $(focused).focus();
    $("agents-empty").hidden = accounts.length > 0;
    const active = accounts.filter((a) => a.active).length;
    $("agents-summary").textContent = `${active} active · ${accounts.length - active} inactive`;
  }

  function cell(label, ...children) {
    const td = document.createElement("td");
    td.dataset.label = label; // shown as the field's name when rows stack on a narrow screen
    td.append(...children);
    return td;
  }

  function row(account) {
    const me = ui().me();
    const isMe = me && me.id === account.id;
    const tr = document.createElement("tr");
    tr.dataset.agentId = account.id;
    tr.dataset.active = String(account.active);

    const name = document.createElement("input");
    name.id = `agent-name-${account.id}`;
    name.value = account.name;
    name.maxLength = 120;
    name.required = true;
    name.setAttribute("aria-label", `Name of ${account.email}`);

    const email = document.createElement("span");
    email.className = "agent-email";
    email.textContent = account.email + (isMe ? " (you)" : "");

    const role = document.createElement("select");
    role.id = `agent-role-${account.id}`;
    role.setAttribute("aria-label", `Role of ${account.name}`);
    for (const value of ["agent", "admin"]) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value === "admin" ? "Admin" : "Agent";
      option.selected = account.role === value;
      role.append(option);
    }

    const capacity = document.createElement("input");
    capacity.id = `agent-capacity-${account.id}`;
    capacity.type = "number";
    capacity.min = "1";
    capacity.max = String(MAX_CAPACITY);
    capacity.value = String(account.capacity);
    capacity.setAttribute("aria-label", `Capacity of ${account.name}`);

    const status = document.createElement("span");
    status.className = "agent-status";
    status.dataset.active = String(account.active);
    status.textContent = account.active ? "Active" : "Inactive";

    const save = document.createElement("button");
    save.type = "button";
    save.className = "primary";
    save.textContent = "Save";
    save.disabled = true;
    save.setAttribute("aria-label", `Save changes to ${account.name}`);
    const dirty = () => {
      save.disabled =
        name.value.trim() === account.name &&
        role.value === account.role &&
        Number(capacity.value) === account.capacity;
    };
    for (const input of [name, role, capacity]) input.addEventListener("input", dirty);
    save.addEventListener("click", () => {
      const change = {};
      if (name.value.trim() !== account.name) change.name = name.value.trim();
      if (role.value !== account.role) change.role = role.value;
      if (Number(capacity.value) !== account.capacity) change.capacity = Number(capacity.value);
      update(account, change, `${account.name} saved.`);
    });
    name.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !save.disabled) save.click();
    });

    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.textContent = account.active ? "Deactivate" : "Reactivate";
    toggle.setAttribute("aria-label", `${toggle.textContent} ${account.name}`);
    toggle.addEventListener("click", () => {
      if (account.active && !confirm(`Deactivate ${account.name}? They are signed out at once.`)) return;
      update(
        account,
        { active: !account.active },
        account.active ? `${account.name} deactivated and signed out.` : `${account.name} reactivated.`,
      );
    });

    const actions = document.createElement("span");
    actions.className = "agent-actions";
    actions.append(save, toggle);
    tr.append(
      cell("Name", name),
      cell("Email", email),
      cell("Role", role),
      cell("Capacity", capacity),
      cell("Status", status),
      cell("", actions),
    );
    return tr;
  }

  async function update(account, change, done) {
    try {
      const updated = await ui().api("PATCH", `${ADMIN_AGENTS}/${encodeURIComponent(account.id)}`, change);
      accounts = accounts.map((a) => (a.id === updated.id ? updated : a));
      render();
      ui().announce(done);
    } catch (err) {
      ui().failed(err);
      render(); // put the row back as the server has it
    }
  }

  document.addEventListener("switchboard:signed-in", (event) => {
    const admin = event.detail && event.detail.role === "admin";
    $("view-agents").hidden = !admin;
    $("view-conversations").hidden = !admin;
    if (!admin) show("conversations");
  });
  document.addEventListener("switchboard:signed-out", () => {
    accounts = [];
    $("view-agents").hidden = true;
    $("view-conversations").hidden = true;
    show("conversations");
  });
  $("view-agents").addEventListener("click", () => show("agents"));
  $("view-conversations").addEventListener("click", () => show("conversations"));
})();
