// The Teams admin screen: each team's name, assignment policy, SLA targets and members; agents' skills.
// Everything goes through the admin API (/api/v1/admin/teams…, /api/v1/admin/agents/{id}/skills); a
// refused change shows the server's message and changes nothing.
"use strict";

(() => {
  const { api, el, describe, start } = window.SwitchboardAdminPage;
  const { showAlert, announce } = window.SwitchboardFeedback;
  const $ = (id) => document.getElementById(id);
  const POLICIES = [
    ["manual", "Manual (agents claim)"],
    ["least_busy", "Least busy"],
    ["round_robin", "Round robin"],
    ["capacity", "Most spare capacity"],
  ];
  let agents = [];

  const fail = (err) => showAlert(describe(err));
  const said = (text) => announce(text);
  const codes = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

  function teamCard(team) {
    const id = (name) => `t-${team.id}-${name}`;
    const name = el("input", { id: id("name"), value: team.name, maxlength: "120", required: true });
    const policy = el("select", { id: id("policy") },
      POLICIES.map(([value, label]) => el("option", { value, selected: value === team.assignment, text: label })));
    const first = el("input", { id: id("first"), type: "number", min: "0", value: String(team.sla.first_reply_s) });
    const resolution = el("input", { id: id("resolution"), type: "number", min: "0", value: String(team.sla.resolution_s) });
    const members = el("fieldset", { class: "tm-members" }, [
      el("legend", { text: "Members" }),
      ...agents.map((a) => el("label", {}, [
        el("input", { type: "checkbox", value: a.id, checked: team.members.includes(a.id) }), ` ${a.name}`,
      ])),
    ]);
    const save = el("button", { type: "button", class: "primary", text: "Save" });
    save.addEventListener("click", async () => {
      try {
        await api("PATCH", `/api/v1/admin/teams/${encodeURIComponent(team.id)}`, {
          name: name.value, assignment: policy.value,
          sla_first_reply_s: Number(first.value), sla_resolution_s: Number(resolution.value),
        });
        const ids = [...members.querySelectorAll("input:checked")].map((box) => box.value);
        await api("PUT", `/api/v1/admin/teams/${encodeURIComponent(team.id)}/members`, { agent_ids: ids });
        said(`Team ${name.value} saved`);
        await load();
      } catch (err) {
        fail(err);
      }
    });
    return el("article", { class: "tm-team", "data-team": team.id }, [
      el("h3", { text: `${team.name} (${team.id})` }),
      el("div", { class: "tm-row" }, [
        el("label", { for: id("name") }, ["Name", name]),
        el("label", { for: id("policy") }, ["Assignment", policy]),
        el("label", { for: id("first") }, ["First reply target (s)", first]),
        el("label", { for: id("resolution") }, ["Resolution target (s)", resolution]),
        save,
      ]),
      members,
    ]);
  }

  async function skillRow(agent) {
    const skills = await api("GET", `/api/v1/admin/agents/${encodeURIComponent(agent.id)}/skills`);
    const languages = el("input", {
      value: skills.languages.join(", "), placeholder: "Languages: any", "aria-label": `${agent.name}: languages`,
    });
    const intents = el("input", {
      value: skills.intents.join(", "), placeholder: "Intents: any", "aria-label": `${agent.name}: intents`,
    });
    const save = el("button", { type: "button", text: "Save" });
    save.addEventListener("click", async () => {
      try {
        const out = await api("PUT", `/api/v1/admin/agents/${encodeURIComponent(agent.id)}/skills`, {
          languages: codes(languages.value), intents: codes(intents.value),
        });
        languages.value = out.languages.join(", ");
        intents.value = out.intents.join(", ");
        said(`Skills of ${agent.name} saved`);
      } catch (err) {
        fail(err);
      }
    });
    return el("tr", { "data-agent": agent.id }, [
      el("td", { text: agent.name }), el("td", {}, [languages]), el("td", {}, [intents]), el("td", {}, [save]),
    ]);
  }

  async function load() {
    agents = (await api("GET", "/api/v1/admin/agents")).filter((a) => a.active);
    const teams = await api("GET", "/api/v1/admin/teams");
    $("teams").replaceChildren(...teams.map(teamCard));
    $("skills").replaceChildren(...(await Promise.all(agents.map(skillRow))));
  }

  start(async () => {
    $("new-team").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("POST", "/api/v1/admin/teams", { id: $("new-team-id").value, name: $("new-team-name").value });
        event.target.reset();
        await load();
      } catch (err) {
        fail(err);
      }
    });
    try {
      await load();
    } catch (err) {
      fail(err);
    }
  });
})();
