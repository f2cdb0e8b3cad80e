// Switchboard reports: satisfaction (CSAT) and operations, for admins. Plain JS, no build step.
// Charts are drawn as inline SVG here (bars and columns), so the page needs no chart library.
// The sign-in is the agent console's (/console/session.js): signed in there, signed in here, either tab.
(function () {
  "use strict";
  const session = window.SwitchboardSession;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let token = null; // set once session.js has asked the other tabs of this origin
  let reasonWords = {}; // reason code -> words, from the operations report

  // Money, one rule everywhere: cents for amounts of a cent or more ($0.06, $12.40), four decimals for
  // smaller non-zero amounts such as one call's cost ($0.0042), and "< $0.0001" below that.
  function usd(value) {
    const n = Number(value);
    if (!isFinite(n)) return "–";
    if (n === 0) return "$0.00";
    const abs = Math.abs(n), sign = n < 0 ? "-" : "";
    if (abs >= 0.01) return sign + "$" + abs.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    if (abs >= 0.0001) return sign + "$" + abs.toFixed(4);
    return "< $0.0001";
  }
  const reasonText = (code) => reasonWords[code] || String(code).replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

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

  // Vertical columns per bucket (day, week or month), one or two series: [{key, label, color}]; `show`
  // formats values (axis and the accessible label). Columns are at most 64 units wide, so a range with
  // one bucket is one column, not a slab across the chart.
  function columns(container, buckets, series, label, show) {
    container.replaceChildren();
    if (!buckets.length) { container.innerHTML = '<p class="empty">No data in this range.</p>'; return; }
    const width = 360, height = 170, pad = 48, slot = Math.min(64, (width - pad) / buckets.length);
    const left = pad + ((width - pad) - slot * buckets.length) / 2;
    const max = Math.max(...buckets.flatMap((d) => series.map((s) => Number(d[s.key]) || 0)));
    const top = max > 0 ? max : 1;
    const svg = el("svg", { viewBox: `0 0 ${width} ${height + 34}`, role: "img",
      "aria-label": label + ": " + buckets.map((d) => d.label + " " + series.map((s) => `${s.label} ${show(d[s.key])}`).join(" ")).join("; ") });
    svg.append(el("line", { x1: pad, y1: height, x2: width, y2: height, stroke: "#b9c0cc" }));
    svg.append(el("line", { x1: pad, y1: 14, x2: width, y2: 14, stroke: "#e3e6eb", "stroke-dasharray": "3 3" }));
    svg.append(el("text", { x: pad - 4, y: 18, "text-anchor": "end" }, show(max)));
    svg.append(el("text", { x: pad - 4, y: height, "text-anchor": "end" }, show(0)));
    const every = Math.ceil(buckets.length / Math.floor((width - pad) / 44)); // labels never overlap
    buckets.forEach((d, i) => {
      const w = Math.max(2, (slot - 6) / series.length);
      series.forEach((s, j) => {
        const v = Number(d[s.key]) || 0, h = (height - 14) * (v / top);
        const bar = el("rect", { class: "col", x: left + i * slot + 3 + j * w, y: height - h, width: w - 1, height: h, fill: s.color });
        bar.append(el("title", {}, `${d.label}: ${s.label} ${show(v)}`));
        svg.append(bar);
      });
      if (i % every === 0)
        svg.append(el("text", { x: left + i * slot + slot / 2, y: height + 14, "text-anchor": "middle" }, d.short));
    });
    series.forEach((s, j) => {
      svg.append(el("rect", { x: pad + j * 120, y: height + 22, width: 10, height: 10, fill: s.color }));
      svg.append(el("text", { x: pad + j * 120 + 14, y: height + 31 }, s.label));
    });
    container.append(svg);
  }

  // The per-day series in buckets that suit the range: days up to five weeks, weeks up to half a year,
  // months beyond. Empty days inside the range are zeros, so the axis is time, not just days with data.
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const dayOf = (iso) => new Date(iso.slice(0, 10) + "T00:00:00Z");
  const isoDay = (d) => d.toISOString().slice(0, 10);
  function bucketed(days, fromValue, toValue) {
    if (!days.length) return { unit: "day", rows: [] };
    const first = dayOf(fromValue || days[0].day), last = dayOf(toValue || days[days.length - 1].day);
    const span = Math.round((last - first) / 86400000) + 1;
    const unit = span <= 35 ? "day" : span <= 183 ? "week" : "month";
    const keyOf = (d) => {
      if (unit === "day") return isoDay(d);
      if (unit === "month") return isoDay(d).slice(0, 7);
      const monday = new Date(d);
      monday.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
      return isoDay(monday);
    };
    const rows = new Map();
    for (let d = new Date(first); d <= last; d.setUTCDate(d.getUTCDate() + 1)) {
      const key = keyOf(d);
      if (!rows.has(key)) rows.set(key, { key, conversations: 0, handoffs: 0, cost_usd: 0 });
    }
    for (const row of days) {
      const b = rows.get(keyOf(dayOf(row.day)));
      if (!b) continue;
      b.conversations += row.conversations;
      b.handoffs += row.handoffs;
      b.cost_usd += Number(row.cost_usd);
    }
    for (const b of rows.values()) {
      const [y, m, d] = b.key.split("-");
      const month = MONTHS[Number(m) - 1];
      b.label = unit === "month" ? `${month} ${y}` : unit === "week" ? `week of ${Number(d)} ${month} ${y}` : `${Number(d)} ${month} ${y}`;
      b.short = unit === "month" ? (m === "01" || rows.size <= 12 ? `${month} ${y.slice(2)}` : month) : `${Number(d)} ${month}`;
    }
    return { unit, rows: [...rows.values()] };
  }

  function fmt(v) {
    const n = Number(v);
    if (!isFinite(n)) return String(v);
    return n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toPrecision(2);
  }
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
  const count = (v) => String(Math.round(Number(v) || 0));
  const ms = (v) => (v === null || v === undefined ? "–" : String(Math.round(v)));

  // Horizontal bars in HTML (labels in words wrap and read at the page's size): rows of {label, value,
  // text?, color?} (text: what is written after the bar, default the value); `scale` fixes the full bar's
  // value.
  function hbars(container, rows, label, scale) {
    container.replaceChildren();
    if (!rows.length) { container.innerHTML = '<p class="empty">No data in this range.</p>'; return; }
    const max = scale || Math.max(...rows.map((r) => r.value), 1);
    const list = document.createElement("ul");
    list.className = "hbars";
    list.setAttribute("aria-label", label);
    for (const r of rows) {
      const item = document.createElement("li");
      item.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="n"></span>';
      item.querySelector(".name").textContent = r.label;
      item.querySelector(".fill").style.width = `${(100 * r.value) / max}%`;
      if (r.color) item.querySelector(".fill").style.background = r.color;
      item.querySelector(".n").textContent = r.text ?? String(r.value);
      list.append(item);
    }
    container.append(list);
  }
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
    if (!rows.length) { // a header over nothing looks broken: say so
      const empty = tr(["No data in this range."], "td");
      empty.firstChild.colSpan = head.length;
      empty.className = "empty";
      node.append(empty);
    }
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
      renderOperations(o, params.get("from"), params.get("to"));
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
    hbars($("sat-dist"), ["5", "4", "3", "2", "1"].map((k) => ({
      label: k + " ★", value: s.distribution[k], text: String(s.distribution[k]), color: colors[k],
    })), "Ratings by score");
    $("sat-groups-caption").textContent = "Average by " + s.group_by;
    hbars($("sat-groups"), s.groups.map((g) => ({  // group names are words: HTML bars let them wrap
      label: g.label || g.key || "–", value: g.average || 0, text: `${num(g.average)} (${g.count})`,
    })), "Average by " + s.group_by, 5);
    table($("sat-table"), [s.group_by, "ratings", "average", "1", "2", "3", "4", "5"],
      s.groups.map((g) => [g.label || g.key || "–", g.count, num(g.average), ...["1", "2", "3", "4", "5"].map((k) => g.distribution[k])]));
  }

  function renderOperations(o, fromValue, toValue) {
    reasonWords = o.handoff_reason_labels || {};
    tiles($("ops-tiles"), [
      ["conversations", String(o.conversations)], ["customer turns", String(o.customer_turns)],
      ["model cost", usd(o.cost_usd)], ["cost per conversation", o.cost_per_conversation_usd ? usd(o.cost_per_conversation_usd) : "–"],
      ["cache hit ratio", pct(o.cache_hit_ratio)], ["answer TTFT p50 / p95", `${ms(o.answer_ttft_ms_p50)} / ${ms(o.answer_ttft_ms_p95)} ms`],
      ["handoff rate", pct(o.handoff_rate)], ["time to claim p50", num(o.claim_wait_s_p50, " s")],
      ["first agent reply p50", num(o.first_response_s_p50, " s")], ["model errors", String(o.model_errors)],
    ]);
    const { unit, rows } = bucketed(o.days, fromValue, toValue);
    $("ops-cost-caption").textContent = `Model cost per ${unit}`;
    $("ops-volume-caption").textContent = `Conversations and handoffs per ${unit}`;
    $("ops-cost").dataset.unit = $("ops-volume").dataset.unit = unit;
    columns($("ops-cost"), rows, [{ key: "cost_usd", label: "cost", color: "#2754c5" }], `Model cost per ${unit}`, usd);
    columns($("ops-volume"), rows, [
      { key: "conversations", label: "conversations", color: "#2754c5" },
      { key: "handoffs", label: "handoffs", color: "#d2691e" },
    ], `Conversations and handoffs per ${unit}`, count);
    hbars($("ops-reasons"), Object.entries(o.handoff_reasons).sort((a, b) => b[1] - a[1])
      .map(([k, v]) => ({ label: reasonText(k), value: v })), "Handoff reasons");
    table($("ops-models"), ["purpose", "model", "calls", "errors", "input", "cache write", "cache read", "output", "cost"],
      o.by_model.map((r) => [r.purpose, r.model, r.calls, r.errors, r.input_tokens, r.cache_write_tokens, r.cache_read_tokens, r.output_tokens, usd(r.cost_usd)]));
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
    session.signOut(); // every tab of the console and reports
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
    session.signedIn(token, body.agent);
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
  session.onSignedOutElsewhere(() => {
    token = null;
    show();
  });
  session.ready.then((signed) => {
    token = signed.token;
    show();
  });
})();
