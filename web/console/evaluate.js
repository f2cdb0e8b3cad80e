// Switchboard Evaluate screen (admins): pick a knowledge draft, run the case set against it and the active
// version, follow the run, read the comparison, activate the draft. Plain browser JavaScript, no build
// step, over /api/v1/admin/evaluations and /api/v1/admin/knowledge (docs/evaluation.md, "From the
// console"); admin-page.js gives the sign-in check and the API client.
"use strict";

(() => {
  const RUNS = "/api/v1/admin/evaluations";
  const KNOWLEDGE = "/api/v1/admin/knowledge";
  const POLL_MS = 1000; // a case takes seconds with a real model: once a second is live enough
  const STATUS_WORDS = { queued: "Queued", running: "Running", finished: "Finished", failed: "Failed" };
  const REASON_WORDS = {
    wants_human: "asked for a person",
    low_confidence: "bot not confident",
    draft_declined: "bot declined to answer",
    draft_failed: "no answer",
    no_reply: "no reply",
    negative_sentiment: "upset customer",
    urgent: "urgent",
    too_many_bot_turns: "too many bot turns",
  };
  const METRICS = [
    ["cases", "Cases", "count"],
    ["answered", "Answered", "count"],
    ["handed_off", "Handed off", "count"],
    ["handoff_precision", "Handoff precision", "ratio"],
    ["handoff_recall", "Handoff recall", "ratio"],
    ["judge_pass_rate", "Judge pass rate", "ratio"],
    ["cost_usd", "Cost (USD)", "usd"],
  ];
  const $ = (id) => document.getElementById(id);
  const page = window.SwitchboardAdminPage;
  const { el, api, describe, shortId, when } = page;
  const { showAlert, announce } = window.SwitchboardFeedback;

  let versions = [];
  let uploaded = null; // {name, text} of the chosen case file
  let followed = null; // the id of the run on screen
  let pollTimer = null;

  const activeVersion = () => versions.find((v) => v.active) || null;

  function versionLabel(v) {
    const marks = [v.active ? "active" : null, v.head ? "head" : null].filter(Boolean);
    return `${shortId(v.id)}${marks.length ? ` (${marks.join(", ")})` : ""} · ${v.change}`;
  }

  function fmt(value, kind) {
    if (value === null || value === undefined) return "n/a";
    if (kind === "ratio") return `${(value * 100).toFixed(1)} %`;
    if (kind === "usd") return `$${Number(value).toFixed(6)}`;
    return String(value);
  }

  function outcomeWords(outcome, reason, pass) {
    const what = outcome === "answered" ? "Answered" : `Handed off${reason ? ` (${REASON_WORDS[reason] || reason.replace(/_/g, " ")})` : ""}`;
    const judge = pass === null || pass === undefined ? "" : pass ? ", judge: pass" : ", judge: fail";
    return what + judge;
  }

  // ---- the form ------------------------------------------------------------------------------------

  async function loadVersions() {
    versions = await api("GET", `${KNOWLEDGE}/versions?limit=100`);
    const wanted = new URLSearchParams(location.search).get("version");
    const current = activeVersion();
    const draft =
      versions.find((v) => v.id === wanted) || versions.find((v) => v.head && !v.active) || versions.find((v) => !v.active) || current;
    const fill = (select, chosen) => {
      const keep = select.value;
      select.replaceChildren(...versions.map((v) => el("option", { value: v.id, text: versionLabel(v) })));
      select.value = keep && versions.some((v) => v.id === keep) ? keep : chosen ? chosen.id : "";
    };
    fill($("ev-version"), draft);
    fill($("ev-compare"), current);
  }

  async function chooseFile() {
    const file = $("ev-file").files[0];
    uploaded = null;
    $("ev-file-info").textContent = "";
    if (!file) return;
    const text = await file.text();
    uploaded = { name: file.name, text };
    const lines = text.split("\n").filter((line) => line.trim()).length;
    $("ev-file-info").textContent = `${file.name}: ${lines} case${lines === 1 ? "" : "s"}, checked by the server when the run starts.`;
  }

  function formError(message) {
    $("ev-form-error").hidden = !message;
    $("ev-form-error").textContent = message || "";
  }

  async function submit(event) {
    event.preventDefault();
    formError(null);
    const body = { knowledge_version: $("ev-version").value, compare: $("ev-compare").value || null };
    if ($("ev-cases-upload").checked) {
      if (!uploaded) return formError("Choose a case file to upload, or use the starter set.");
      body.cases = uploaded.text;
    }
    let run;
    $("ev-run").disabled = true;
    try {
      run = await api("POST", RUNS, body);
    } catch (err) {
      $("ev-run").disabled = false;
      formError(`Not started: ${describe(err)}`);
      if (err.code === "evaluation_running") await loadHistory(true);
      return;
    }
    announce(`Evaluation run ${run.id} started: ${run.total} cases to run.`);
    await loadHistory(false);
    follow(run.id);
  }

  // ---- one run -----------------------------------------------------------------------------------

  function follow(id) {
    followed = id;
    clearTimeout(pollTimer);
    poll();
  }

  async function poll() {
    const id = followed;
    let run;
    try {
      run = await api("GET", `${RUNS}/${encodeURIComponent(id)}`);
    } catch (err) {
      if (id === followed) showAlert(describe(err));
      return;
    }
    if (id !== followed) return; // another run was opened meanwhile
    render(run);
    if (run.status === "queued" || run.status === "running") {
      pollTimer = setTimeout(poll, POLL_MS);
    } else {
      $("ev-run").disabled = false;
      await loadHistory(false);
      if (run.status === "finished") announce(`Evaluation run ${run.id} finished.`);
      else announce(`Evaluation run ${run.id} failed.`);
    }
  }

  function render(run) {
    const live = run.status === "queued" || run.status === "running";
    $("run").hidden = false;
    $("run").dataset.status = run.status;
    $("run-id").textContent = run.id;
    $("run-status").textContent = STATUS_WORDS[run.status] || run.status;
    $("run-status").dataset.status = run.status;
    const source = run.cases_source === "upload" ? "an uploaded case file" : "the starter set";
    $("run-what").textContent =
      `Version ${shortId(run.knowledge_version)}` +
      (run.compare_version ? ` compared with ${shortId(run.compare_version)}` : " (no comparison)") +
      `, ${run.cases} case${run.cases === 1 ? "" : "s"} from ${source}, started ${when(run.created_at)}.`;
    $("run-progress").hidden = !live;
    $("run-bar").max = Math.max(1, run.total);
    $("run-bar").value = run.done;
    $("run-progress-text").textContent = `${run.done} of ${run.total} cases done`;
    $("run-error").hidden = run.status !== "failed";
    $("run-error").textContent = run.error ? `The run failed: ${run.error}` : "";
    $("ev-run").disabled = live;
    const report = run.status === "finished" ? run.report : null;
    $("run-result").hidden = !report;
    const evaluated = versions.find((v) => v.id === run.knowledge_version);
    $("ev-activate").hidden = !(report && evaluated && !evaluated.active);
    $("ev-activate").dataset.version = run.knowledge_version;
    if (report) renderReport(run, report);
  }

  function renderReport(run, report) {
    const compare = report.compare || null;
    const draftName = `${shortId(run.knowledge_version)} (evaluated)`;
    const compareName = compare ? `${shortId(compare.knowledge_version)} (compared with)` : "";
    $("col-draft").textContent = draftName;
    $("col-compare").textContent = compareName;
    $("col-compare").hidden = !compare;
    $("summary").querySelector("tbody").replaceChildren(
      ...METRICS.map(([key, label, kind]) => {
        const a = report.summary[key];
        const b = compare ? compare.summary[key] : null;
        return el("tr", { "data-metric": key, "data-changed": compare && a !== b ? "true" : null }, [
          el("th", { scope: "row", text: label }),
          compare ? el("td", { text: fmt(b, kind) }) : null,
          el("td", { text: fmt(a, kind) }),
        ]);
      }),
    );
    $("run-cost").textContent = `This run cost $${Number(run.cost_usd || 0).toFixed(6)} in model calls (answers, triage and the judge${compare ? ", both versions" : ""}).`;
    const changed = compare ? compare.changed : [];
    $("changed-title").hidden = !compare;
    $("changed").hidden = !compare || changed.length === 0;
    $("changed-none").hidden = !compare || changed.length > 0;
    $("changed-draft").textContent = draftName;
    $("changed-compare").textContent = compareName;
    $("changed").querySelector("tbody").replaceChildren(
      ...changed.map((c) =>
        el("tr", { "data-case": c.id }, [
          el("th", { scope: "row", text: c.id }),
          el("td", { "data-outcome": c.other_outcome, text: outcomeWords(c.other_outcome, c.other_reason, c.other_judge_pass) }),
          el("td", { "data-outcome": c.outcome, text: outcomeWords(c.outcome, c.reason, c.judge_pass) }),
        ]),
      ),
    );
    $("all-cases").querySelector("tbody").replaceChildren(
      ...report.cases.map((c) =>
        el("tr", {}, [
          el("th", { scope: "row", text: c.id }),
          el("td", { text: outcomeWords(c.outcome, c.reason, null) }),
          el("td", { text: c.judge ? `${c.judge.pass ? "pass" : "fail"}: ${c.judge.reason}` : "—" }),
          el("td", { text: Number(c.cost_usd).toFixed(6) }),
        ]),
      ),
    );
  }

  async function activate() {
    const id = $("ev-activate").dataset.version;
    const current = activeVersion();
    const ok = await page.confirmAction(
      `Activate version ${shortId(id)}?`,
      `Every conversation answers from it within seconds${current ? `, instead of version ${shortId(current.id)}` : ""}. ` +
        "You can roll back on the Knowledge screen.",
      "Activate",
    );
    if (!ok) return;
    try {
      await api("POST", `${KNOWLEDGE}/versions/${encodeURIComponent(id)}/activate`);
    } catch (err) {
      return showAlert(`Not activated: ${describe(err)}`);
    }
    await loadVersions();
    $("ev-activate").hidden = true;
    announce(`Version ${shortId(id)} is active.`);
  }

  // ---- history -----------------------------------------------------------------------------------

  async function loadHistory(followLive) {
    let runs;
    try {
      runs = await api("GET", RUNS);
    } catch (err) {
      return showAlert(describe(err));
    }
    $("history-empty").hidden = runs.length > 0;
    $("history").replaceChildren(
      ...runs.map((run) =>
        el("li", { "data-id": run.id, "data-status": run.status }, [
          el("button", { type: "button", class: "link", text: run.id, "aria-label": `Open run ${run.id}`, onclick: () => follow(run.id) }),
          el("span", { class: "ev-status", "data-status": run.status, text: STATUS_WORDS[run.status] || run.status }),
          el("span", {
            class: "small muted",
            text: `${shortId(run.knowledge_version)}${run.compare_version ? ` vs ${shortId(run.compare_version)}` : ""} · ${run.cases} cases · ${when(run.created_at)}${run.cost_usd !== null ? ` · $${run.cost_usd.toFixed(6)}` : ""}`,
          }),
        ]),
      ),
    );
    const live = runs.find((r) => r.status === "queued" || r.status === "running");
    if (followLive && (live || runs.length)) follow((live || runs[0]).id);
  }

  // ---- start -----------------------------------------------------------------------------------------

  page.start(async () => {
    $("run-form").addEventListener("submit", submit);
    $("ev-file").addEventListener("change", chooseFile);
    for (const radio of document.querySelectorAll("input[name=cases]")) {
      radio.addEventListener("change", () => {
        $("ev-file").disabled = !$("ev-cases-upload").checked;
        if ($("ev-cases-upload").checked) $("ev-file").focus();
      });
    }
    $("ev-activate").addEventListener("click", activate);
    try {
      await loadVersions();
    } catch (err) {
      return showAlert(describe(err));
    }
    await loadHistory(true);
  });
})();
