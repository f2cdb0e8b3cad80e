// Switchboard reports: satisfaction (CSAT) and operations, for admins. Plain JS, no build step.
// Charts are drawn as inline SVG here (bars and columns), so the page needs no chart library.
(function () {
  "use strict";
  const TOKEN_KEY = "switchboard.agent.token"; // shared with the agent console: one sign-in for both
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let token = sessionStorage.getItem(TOKEN_KEY);

  function el(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token } });
    if (resp.status === 401) { signOut(); throw new Error("Your sign-in expired; sign in again."); }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error((body.error && body.error.message) || resp.statusText);
    return body;
  }

  // Horizontal bars: rows of {label, value, text}; max sets the scale.
  function bars(container, rows, opts) {
    container.replaceChildren();
    if (!rows.length) { container.innerHTML = '<p class="empty">No data in this range.</p>'; return; }
    const rowH = 26, labelW = 130, width = 460, max = opts.max || Math.max(...rows.map((r) => r.value), 1);
    const svg = el("svg", { viewBox: `0 0 ${width} ${rows.length * rowH + 6}`, role: "img",
      "aria-label": opts.label + ": " + rows.map((r) => `${r.label} ${r.text}`).join(", ") });
    rows.forEach((r, i) => {
      const y = i * rowH + 3, w = Math.max(1, ((width - labelW - 60) * r.value) / max);
      svg.append(el("text", { x: labelW - 6, y: y + 15, "text-anchor": "end" }, r.label));
      svg.append(el("rect", { x: labelW, y, width: w, height: rowH - 8, rx: 3, fill: r.color || "#2754c5" }));
      svg.append(el("text", { x: labelW + w + 6, y: y + 15 }, r.text));
    });
    container.append(svg);
  }

  // Vertical columns per day, one or two series: [{key, label, color}], data rows keyed by day.
  function columns(container, days, series, label) {
    container.replaceChildren();
    if (!days.length) { container.innerHTML = '<p class="empty">No data in this range.</p>'; return; }
    const width = 460, height = 180, pad = 28, slot = (width - pad) / days.length;
    const max = Math.max(...days.flatMap((d) => series.map((s) => Number(d[s.key]) || 0)), 1e-9);
    const svg = el("svg", { viewBox: `0 0 ${width} ${height + 34}`, role: "img",
      "aria-label": label + ": " + days.map((d) => d.day + " " + series.map((s) => `${s.label} ${d[s.key]}`).join(" ")).join("; ") });
    svg.append(el("line", { x1: pad, y1: height, x2: width, y2: height, stroke: "#b9c0cc" }));
    svg.append(el("text", { x: 0, y: 10 }, fmt(max)));
    days.forEach((d, i) => {
      const w = Math.max(2, (slot - 6) / series.length);
      series.forEach((s, j) => {
        const v = Number(d[s.key]) || 0, h = (height - 14) * (v / max);
        svg.append(el("rect", { x: pad + i * slot + 3 + j * w, y: height - h, width: w - 1, height: h, fill: s.color }));
      });
      if (days.length <= 14 || i % Math.ceil(days.length / 14) === 0)
        svg.append(el("text", { x: pad + i * slot + slot / 2, y: height + 14, "text-anchor": "middle" }, d.day.slice(5)));
    });
    series.forEach((s, j) => {
      svg.append(el("rect", { x: pad + j * 120, y: height + 22, width: 10, height: 10, fill: s.color }));
      svg.append(el("text", { x: pad + j * 120 + 14, y: height + 31 }, s.label));
    });
    container.append(svg);
  }

  function fmt(v) {
    const n = Number(v);
    if (!isFinite(n)) return String(v);
    return n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toPrecision(2);
  }
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
  const num = (v, unit) => (v === null || v === undefined ? "–" : fmt(v) + (unit || ""));

  function tiles(container, items) {
    container.replaceChildren(...items.map(([k, v]) => {
      const t = document.createElement("div");
      t.className = "tile";
      t.innerHTML = '<div class="v"></div><div class="k"></div>';
      t.firstChild.textContent = v;
      t.lastChild.textContent = k;
      return t;
    }));
  }

  function table(node, head, rows) {
    node.replaceChildren();
    const tr = (cells, tag) => {
      const row = document.createElement("tr");
      cells.forEach((c) => { const cell = document.createElement(tag); cell.textContent = c; row.append(cell); });
      return row;
    };
    node.append(tr(head, "th"), ...rows.map((r) => tr(r, "td")));
  }

  function query() {
    const form = new FormData($("range"));
    const params = new URLSearchParams();
    if (form.get("from")) params.set("from", form.get("from"));
    if (form.get("to")) params.set("to", form.get("to"));
    return params;
  }

  async function load() {
    $("error").textContent = "";
    const params = query();
    const groupBy = new FormData($("range")).get("group_by");
    const sat = new URLSearchParams(params);
    sat.set("group_by", groupBy);
    try {
      const [s, o] = await Promise.all([
        api("/api/v1/reports/satisfaction?" + sat), api("/api/v1/reports/operations?" + params),
      ]);
      renderSatisfaction(s);
      renderOperations(o);
      const csv = new URLSearchParams(sat);
      csv.set("format", "csv");
      $("csv").dataset.href = "/api/v1/reports/satisfaction?" + csv;
    } catch (err) {
      $("error").textContent = err.message;
    }
  }

  function renderSatisfaction(s) {
    tiles($("sat-tiles"), [["ratings", String(s.count)], ["average (1–5)", num(s.average)],
      ["satisfied (4–5)", s.count ? pct((s.distribution["4"] + s.distribution["5"]) / s.count) : "–"]]);
    const colors = { 1: "#c0392b", 2: "#e67e22", 3: "#f1c40f", 4: "#7cb342", 5: "#2e7d32" };
    bars($("sat-dist"), ["5", "4", "3", "2", "1"].map((k) => ({
      label: k + " ★", value: s.distribution[k], text: String(s.distribution[k]), color: colors[k],
    })), { label: "Ratings by score" });
    $("sat-groups-caption").textContent = "Average by " + s.group_by;
    bars($("sat-groups"), s.groups.map((g) => ({
      label: g.label || g.key || "(none)", value: g.average || 0, text: `${num(g.average)} (${g.count})`,
    })), { label: "Average by " + s.group_by, max: 5 });
    table($("sat-table"), [s.group_by, "ratings", "average", "1", "2", "3", "4", "5"],
      s.groups.map((g) => [g.label || g.key || "(none)", g.count, num(g.average), ...["1", "2", "3", "4", "5"].map((k) => g.distribution[k])]));
  }

  function renderOperations(o) {
    tiles($("ops-tiles"), [
      ["conversations", String(o.conversations)], ["customer turns", String(o.customer_turns)],
      ["model cost (USD)", "$" + o.cost_usd], ["cost per conversation", o.cost_per_conversation_usd ? "$" + o.cost_per_conversation_usd : "–"],
      ["cache hit ratio", pct(o.cache_hit_ratio)], ["answer TTFT p50 / p95", `${num(o.answer_ttft_ms_p50)} / ${num(o.answer_ttft_ms_p95, " ms")}`],
      ["handoff rate", pct(o.handoff_rate)], ["time to claim p50", num(o.claim_wait_s_p50, " s")],
      ["first agent reply p50", num(o.first_response_s_p50, " s")], ["model errors", String(o.model_errors)],
    ]);
    columns($("ops-cost"), o.days, [{ key: "cost_usd", label: "cost (USD)", color: "#2754c5" }], "Model cost per day");
    columns($("ops-volume"), o.days, [
      { key: "conversations", label: "conversations", color: "#2754c5" },
      { key: "handoffs", label: "handoffs", color: "#d2691e" },
    ], "Conversations and handoffs per day");
    bars($("ops-reasons"), Object.entries(o.handoff_reasons).sort((a, b) => b[1] - a[1])
      .map(([k, v]) => ({ label: k, value: v, text: String(v), color: "#d2691e" })), { label: "Handoff reasons" });
    table($("ops-models"), ["purpose", "model", "calls", "errors", "input", "cache write", "cache read", "output", "cost (USD)"],
      o.by_model.map((r) => [r.purpose, r.model, r.calls, r.errors, r.input_tokens, r.cache_write_tokens, r.cache_read_tokens, r.output_tokens, r.cost_usd]));
  }

  function show() {
    $("login").hidden = !!token;
    $("app").hidden = !token;
    $("signout").hidden = !token;
    if (token) load();
    else $("login").querySelector("input").focus();
  }

  function signOut() {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    show();
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    $("login-error").textContent = "";
    const resp = await fetch("/api/v1/agent/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: form.get("email"), password: form.get("password") }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) { $("login-error").textContent = (body.error && body.error.message) || "Sign-in failed"; return; }
    if (body.agent.role !== "admin") { $("login-error").textContent = "Reports are for admins."; return; }
    token = body.token;
    sessionStorage.setItem(TOKEN_KEY, token);
    show();
  });
  $("range").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  $("signout").addEventListener("click", signOut);
  $("csv").addEventListener("click", async (ev) => {
    ev.preventDefault();
    const resp = await fetch(ev.target.dataset.href, { headers: { Authorization: "Bearer " + token } });
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement("a");
    a.href = url; a.download = "satisfaction.csv"; a.click();
    URL.revokeObjectURL(url);
  });
  show();
})();
