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
      cells.forEach((c) => {
        const cell = document.createElement(tag);
        if (c instanceof Node) cell.append(c);
        else cell.textContent = c === null || c === undefined ? "–" : c;
        row.append(cell);
      });
      return row;
    };
    node.append(tr(head, "th"), ...rows.map((r) => {
      const row = tr(r.cells || r, "td");
      if (r.className) row.className = r.className;
      return row;
    }));
    if (!rows.length) { // a header over nothing looks broken: say so
      const empty = tr(["No data in this range."], "td");
      empty.firstChild.colSpan = head.length;
      empty.className = "empty";
      node.append(empty);
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // Words for the values the conversation reports cut by (the API gives labels for groups; the drill-down
  // shows its filters in words too, so it keeps them here).
  const RESOLUTION_TYPE_WORDS = {
    bot: "Bot only", handed_off: "Handed off, a person replied", unanswered: "Handed off, nobody replied",
    human: "A person only",
  };
  const CHANNEL_WORDS = { chat: "Chat", ticket: "Ticket" };
  const NONE = "__none__"; // the drill-down's filter value for "no value" (e.g. not triaged)
  const NONE_WORDS = {
    intent: "Not triaged", agent: "No agent (the bot)", policy_version: "No policy version",
    resolution: "None", channel: "None", day: "None", week: "None", handoff_reason: "No reason recorded",
  };
  // What each `only` keeps, as a sentence's end: "Conversations <words>".
  const ONLY_WORDS = {
    bot_resolved: "resolved by the bot (confirmed or assumed)",
    bot_confirmed: "resolved by the bot, confirmed by the customer",
    bot_assumed: "resolved by the bot, assumed (no customer message for 24 h after its last reply)",
    reopened: "reopened within 7 days of a resolution",
    resolved: "resolved (by the bot, or by a person after a handoff)",
    handed_off: "handed off to a person",
    unanswered: "handed off with no person's reply",
    rated: "rated by the customer",
    satisfied: "rated 4–5 by the customer",
    dissatisfied: "rated 1–3 by the customer",
    asked: "asked for a rating (resolved: the response rate's denominator)",
    predicted: "with a predicted satisfaction score (not rated)",
    predicted_satisfied: "predicted 4–5 (not rated)",
  };
  // group_by -> the drill-down's filter of the same name.
  const FILTER_OF = {
    resolution: "resolution", intent: "intent", agent: "agent", channel: "channel", day: "day", week: "week",
    policy_version: "policy_version",
  };
  const FILTER_NAMES = { resolution: "Resolution", intent: "Intent", agent: "Agent", channel: "Channel", day: "Day",
    week: "Week of", policy_version: "Policy version", handoff_reason: "Handoff reason" };
  const SAT_GROUP_BYS = ["day", "resolution", "intent", "agent"]; // what the satisfaction report cuts by

  const secs = (v) => {
    if (v === null || v === undefined) return "–";
    const n = Number(v);
    if (n < 60) return `${n < 10 ? n.toFixed(1) : Math.round(n)} s`;
    if (n < 3600) return `${(n / 60).toFixed(1)} min`;
    if (n < 86400) return `${(n / 3600).toFixed(1)} h`;
    return `${(n / 86400).toFixed(1)} d`;
  };
  const pair = (q) => (q ? `${secs(q.p50)} / ${secs(q.p90)}` : "–");
  const when = (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}, ${isoClock(d)} UTC`;
  };
  const isoClock = (d) => d.toISOString().slice(11, 16);
  // A list's dates: "5 Dec 09:00" this year, "5 Dec 2025 09:00" before (UTC; the header says so).
  const shortWhen = (iso) => {
    const d = new Date(iso);
    const year = d.getUTCFullYear() === new Date().getUTCFullYear() ? "" : ` ${d.getUTCFullYear()}`;
    return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}${year} ${isoClock(d)}`;
  };
  const dayWords = (key) => {
    const [y, m, d] = String(key).slice(0, 10).split("-");
    return m ? `${Number(d)} ${MONTHS[Number(m) - 1]} ${y}` : String(key);
  };
  const intentLabel = (v) => (v ? v.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()) : NONE_WORDS.intent);

  function link(href, text, title) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (title) a.title = title;
    return a;
  }

  // The reporting range and cut of the numbers on screen: what every drill-down link carries.
  let shown = { from: null, to: null, group_by: "none" };
  let lastList = "#overview"; // the drill-down the open conversation came from (its "back")

  // A link to the conversations behind one number: the range, the group's value (its words ride along as
  // `w.<filter>` for the filter line; they are not sent to the API) and the number's own filters.
  function drillHref(row, extra) {
    const p = new URLSearchParams();
    if (shown.from) p.set("from", shown.from);
    if (shown.to) p.set("to", shown.to);
    const filter = FILTER_OF[shown.group_by];
    if (row && filter && row !== "total") {
      p.set(filter, row.key === null || row.key === undefined ? NONE : row.key);
      if (row.label) p.set("w." + filter, row.label);
    }
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return "#conversations?" + p;
  }
  // A count of conversations: a link to them when there are any.
  function countLink(row, n, extra, what) {
    const v = Number(n) || 0;
    if (!v) return "0";
    return link(drillHref(row, extra), String(v), `Show the ${v} conversation${v === 1 ? "" : "s"}${what ? " " + what : ""}`);
  }

  function query() {
    const form = new FormData($("range"));
    const params = new URLSearchParams();
    if (form.get("from")) params.set("from", form.get("from"));
    if (form.get("to")) params.set("to", form.get("to"));
    return params;
  }
  const withParams = (params, more) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(more)) p.set(k, v);
    return p;
  };

  // The chart's bucket: days for up to five weeks, weeks beyond (or when the range is open-ended).
  function chartUnit(fromValue, toValue) {
    if (!fromValue || !toValue) return "week";
    return (dayOf(toValue) - dayOf(fromValue)) / 86400000 + 1 <= 35 ? "day" : "week";
  }

  let loaded = false;
  async function load() {
    loaded = true;
    $("error").textContent = "";
    const params = query();
    const groupBy = new FormData($("range")).get("group_by");
    const satGroup = SAT_GROUP_BYS.includes(groupBy) ? groupBy : "day";
    const sat = withParams(params, { group_by: satGroup });
    const unit = chartUnit(params.get("from"), params.get("to"));
    const cut = withParams(params, { group_by: groupBy });
    const csvs = {
      overview: cut, "handoff-reasons": cut, satisfaction: sat, operations: params,
      usage: withParams(params, { group_by: "model_purpose" }), edits: withParams(params, { group_by: "intent" }),
    };
    for (const button of document.querySelectorAll("#dashboard button.csv")) {
      const name = button.dataset.csv;
      button.dataset.href = `/api/v1/reports/${name}?` + withParams(csvs[name], { format: "csv" });
    }
    const failed = [];
    const attempt = (fn) => fn().catch((err) => failed.push(err.message));
    await Promise.all([
      attempt(async () => {
        const [s, o] = await Promise.all([
          api("/api/v1/reports/satisfaction?" + sat), api("/api/v1/reports/operations?" + params),
        ]);
        renderSatisfaction(s);
        renderOperations(o, params.get("from"), params.get("to"));
      }),
      attempt(async () => {
        const [ov, mix, weeks] = await Promise.all([
          api("/api/v1/reports/overview?" + cut),
          api("/api/v1/reports/overview?" + withParams(params, { group_by: unit })),
          api("/api/v1/reports/overview?" + withParams(params, { group_by: "week" })),
        ]);
        renderOverview(ov);
        renderMix(mix, unit);
        renderCsatWeeks(weeks);
      }),
      attempt(async () => renderReasons(await api("/api/v1/reports/handoff-reasons?" + cut))),
      attempt(async () => renderUsage(await api("/api/v1/reports/usage?" + csvs.usage))),
      attempt(async () => renderEdits(await api("/api/v1/reports/edits?" + csvs.edits))),
    ]);
    $("error").textContent = [...new Set(failed)].join(" ");
  }

  function groupName(row) {
    if (row.key && shown.group_by === "day") return dayWords(row.key);
    if (row.key && shown.group_by === "week") return "week of " + dayWords(row.key);
    return row.label || row.key || NONE_WORDS[shown.group_by] || "–";
  }
  // Rows of a cut with the total last (emphasised); with no cut, the total only.
  function cutRows(ov, cells) {
    const rows = shown.group_by === "none" ? [] : ov.groups.map((g) => ({ cells: [groupName(g), ...cells(g)] }));
    rows.push({ cells: ["All", ...cells("total")], className: "total" });
    return rows;
  }

  function renderOverview(ov) {
    shown = { from: ov.from, to: ov.to, group_by: ov.group_by };
    const t = ov.total;
    $("ov-range").textContent = rangeWords(ov.from, ov.to) + (ov.now ? ` · assumed resolutions as of ${when(ov.now)}` : "");
    const satisfied = (r) => Math.round((r.csat || 0) * r.rated);
    const tileItems = [
      ["conversations", countLink("total", t.conversations)],
      ["bot resolution rate", pct(t.bot_resolution_rate), countLink("total", t.bot_confirmed + t.bot_assumed, { only: "bot_resolved" }), "resolved by the bot"],
      ["resolved", countLink("total", t.resolved, { only: "resolved" })],
      ["handoff rate", pct(t.handoff_rate), countLink("total", t.handed_off, { only: "handed_off" }), "handed off"],
      ["CSAT (4–5 of rated)", pct(t.csat), countLink("total", t.rated, { only: "rated" }), "rated"],
      ["predicted CSAT (not rated)", t.predicted && t.predicted.count ? pct(t.predicted.csat) : "–",
        countLink("total", t.predicted ? t.predicted.count : 0, { only: "predicted" }), "predicted"],
      ["cost per resolved conversation", t.cost_per_resolution_usd === null ? "–" : usd(t.cost_per_resolution_usd)],
      ["first bot reply p50", secs(t.first_response_bot_s && t.first_response_bot_s.p50)],
    ];
    $("ov-tiles").replaceChildren(...tileItems.map(([k, v, n, what]) => {
      const tile = document.createElement("div");
      tile.className = "tile";
      const value = document.createElement("div");
      value.className = "v";
      value.append(v);
      const key = document.createElement("div");
      key.className = "k";
      key.textContent = k;
      tile.append(value, key);
      if (n !== undefined) {
        const sub = document.createElement("div");
        sub.className = "k";
        sub.append(n, ` ${what}`);
        tile.append(sub);
      }
      return tile;
    }));
    const cutName = ov.group_by === "none" ? "" : ov.group_by.replace(/_/g, " ");
    const first = cutName || "range";
    $("ov-resolution-title").textContent = `Resolution${cutName ? " by " + cutName : ""}`;
    table($("ov-resolution"), [first, "conversations", "bot only", "handed off", "unanswered", "person only",
      "bot confirmed", "bot assumed", "bot resolution rate", "reopened", "resolved", "handoffs", "handoff rate"],
    cutRows(ov, (g) => {
      const r = g === "total" ? t : g;
      return [
        countLink(g, r.conversations),
        countLink(g, r.resolution.bot, { resolution: "bot" }),
        countLink(g, r.resolution.handed_off, { resolution: "handed_off" }),
        countLink(g, r.resolution.unanswered, { resolution: "unanswered" }),
        countLink(g, r.resolution.human, { resolution: "human" }),
        countLink(g, r.bot_confirmed, { only: "bot_confirmed" }),
        countLink(g, r.bot_assumed, { only: "bot_assumed" }),
        pct(r.bot_resolution_rate),
        countLink(g, r.reopened, { only: "reopened" }),
        countLink(g, r.resolved, { only: "resolved" }),
        countLink(g, r.handed_off, { only: "handed_off" }),
        pct(r.handoff_rate),
      ];
    }));
    $("ov-times-title").textContent = `Response times, p50 / p90${cutName ? ", by " + cutName : ""}`;
    table($("ov-times"), [first, "conversations", "first bot reply", "first person's reply", "queue wait", "time to resolution"],
      cutRows(ov, (g) => {
        const r = g === "total" ? t : g;
        return [countLink(g, r.conversations), pair(r.first_response_bot_s), pair(r.first_response_human_s),
          pair(r.queue_wait_s), pair(r.resolution_s)];
      }));
    $("ov-satcost-title").textContent = `Satisfaction and cost${cutName ? " by " + cutName : ""}`;
    table($("ov-satcost"), [first, "rated", "satisfied (4–5)", "CSAT", "mean rating", "response rate",
      "predicted", "predicted mean", "predicted CSAT", "cost", "per conversation", "per resolved"],
    cutRows(ov, (g) => {
      const r = g === "total" ? t : g;
      const p = r.predicted || { count: 0, mean: null, csat: null };
      return [
        countLink(g, r.rated, { only: "rated" }),
        countLink(g, satisfied(r), { only: "satisfied" }),
        pct(r.csat), num(r.mean_rating), pct(r.response_rate),
        countLink(g, p.count, { only: "predicted" }), num(p.mean), pct(p.csat),
        usd(r.cost_usd), r.cost_per_conversation_usd === null ? "–" : usd(r.cost_per_conversation_usd),
        r.cost_per_resolution_usd === null ? "–" : usd(r.cost_per_resolution_usd),
      ];
    }));
  }

  function rangeWords(fromIso, toIso) {
    if (!fromIso && !toIso) return "All time";
    const start = fromIso ? dayWords(fromIso) : "the start";
    let end = "now";
    if (toIso) { // an exclusive bound at midnight reads as the day before, inclusive
      const d = new Date(toIso);
      if (d.getUTCHours() === 0 && d.getUTCMinutes() === 0) d.setUTCDate(d.getUTCDate() - 1);
      end = dayWords(isoDay(d));
    }
    return start === end ? `Started on ${start}` : `Started ${start} – ${end}`;
  }

  // A chart's key in HTML under it: the entries wrap on a narrow screen instead of running into each other.
  function legend(series) {
    const list = document.createElement("ul");
    list.className = "legend";
    for (const s of series) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = s.color;
      item.append(swatch, s.label);
      list.append(item);
    }
    return list;
  }

  // The groups of a day or week cut with the empty days (weeks) of the range as zeros: the axis is time.
  function everyBucket(groups, fromIso, toIso, unit) {
    if (!fromIso || !toIso) return groups;
    const have = new Map(groups.map((g) => [g.key, g]));
    const first = dayOf(fromIso), end = new Date(toIso);
    if (unit === "week") first.setUTCDate(first.getUTCDate() - ((first.getUTCDay() + 6) % 7));
    const out = [];
    for (let d = first; d < end && out.length < 400; d.setUTCDate(d.getUTCDate() + (unit === "week" ? 7 : 1))) {
      const key = isoDay(d);
      out.push(have.get(key) || { key, label: key, conversations: 0, resolution: { bot: 0, handed_off: 0, unanswered: 0, human: 0 } });
    }
    return out;
  }

  // Resolution mix per day (or week): stacked columns, each part a link to its conversations.
  const MIX = [
    { key: "bot", label: "bot only", color: "#2e7d32" },
    { key: "handed_off", label: "handed off", color: "#2754c5" },
    { key: "unanswered", label: "unanswered", color: "#c0392b" },
    { key: "human", label: "person only", color: "#8e6bbf" },
  ];
  function renderMix(report, unit) {
    const box = $("ov-mix");
    box.dataset.unit = unit;
    $("ov-mix-caption").textContent = `Resolution mix per ${unit}`;
    box.replaceChildren();
    const groups = everyBucket(report.groups.filter((g) => g.key), report.from, report.to, unit);
    if (!groups.some((g) => g.conversations)) { box.innerHTML = '<p class="empty">No conversations in this range.</p>'; return; }
    const width = 360, height = 170, pad = 40, slot = Math.min(48, (width - pad) / groups.length);
    const left = pad + ((width - pad) - slot * groups.length) / 2;
    const top = Math.max(...groups.map((g) => g.conversations), 1);
    const svg = el("svg", { viewBox: `0 0 ${width} ${height + 34}`, role: "img",
      "aria-label": `Resolution mix per ${unit}: ` + groups.map((g) => `${dayWords(g.key)} ` + MIX.map((m) => `${m.label} ${g.resolution[m.key]}`).join(", ")).join("; ") });
    svg.append(el("line", { x1: pad, y1: height, x2: width, y2: height, stroke: "#b9c0cc" }));
    svg.append(el("text", { x: pad - 4, y: 18, "text-anchor": "end" }, String(top)));
    svg.append(el("text", { x: pad - 4, y: height, "text-anchor": "end" }, "0"));
    const every = Math.ceil(groups.length / Math.floor((width - pad) / 44));
    const saved = shown;
    shown = { from: report.from, to: report.to, group_by: unit };
    groups.forEach((g, i) => {
      let y = height;
      for (const m of MIX) {
        const n = g.resolution[m.key] || 0;
        if (!n) continue;
        const h = (height - 14) * (n / top);
        y -= h;
        const a = el("a", { href: drillHref(g, { resolution: m.key }) });
        const bar = el("rect", { class: "seg", "data-part": m.key, x: left + i * slot + 3, y, width: Math.max(2, slot - 6), height: h, fill: m.color });
        bar.append(el("title", {}, `${unit === "week" ? "week of " : ""}${dayWords(g.key)}: ${n} ${m.label}`));
        a.append(bar);
        svg.append(a);
      }
      if (i % every === 0)
        svg.append(el("text", { x: left + i * slot + slot / 2, y: height + 14, "text-anchor": "middle" }, dayWords(g.key).replace(/ \d{4}$/, "")));
    });
    shown = saved;
    svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
    box.append(svg, legend(MIX));
  }

  // CSAT per week: the customers' ratings and the model's prediction (of conversations nobody rated) as
  // two separate columns per week, different colours and a gap between them: never one number.
  function renderCsatWeeks(report) {
    const box = $("ov-csat");
    box.replaceChildren();
    const weeks = everyBucket(report.groups.filter((g) => g.key), report.from, report.to, "week");
    if (!weeks.some((g) => g.rated || (g.predicted && g.predicted.count))) { box.innerHTML = '<p class="empty">No ratings or predictions in this range.</p>'; return; }
    const width = 360, height = 170, pad = 40, slot = Math.min(64, (width - pad) / weeks.length);
    const left = pad + ((width - pad) - slot * weeks.length) / 2;
    const series = [
      { label: "rated by customers", color: "#2754c5", value: (g) => g.csat, n: (g) => g.rated || 0, part: "rated" },
      { label: "predicted (not rated)", color: "#d2691e", value: (g) => g.predicted && g.predicted.csat, n: (g) => (g.predicted ? g.predicted.count : 0), part: "predicted" },
    ];
    const svg = el("svg", { viewBox: `0 0 ${width} ${height + 34}`, role: "img",
      "aria-label": "CSAT per week: " + weeks.map((g) => `week of ${dayWords(g.key)} ` + series.map((s) => `${s.label} ${pct(s.value(g))} of ${s.n(g)}`).join(", ")).join("; ") });
    svg.append(el("line", { x1: pad, y1: height, x2: width, y2: height, stroke: "#b9c0cc" }));
    svg.append(el("line", { x1: pad, y1: 14, x2: width, y2: 14, stroke: "#e3e6eb", "stroke-dasharray": "3 3" }));
    svg.append(el("text", { x: pad - 4, y: 18, "text-anchor": "end" }, "100%"));
    svg.append(el("text", { x: pad - 4, y: height, "text-anchor": "end" }, "0%"));
    const every = Math.ceil(weeks.length / Math.floor((width - pad) / 44));
    weeks.forEach((g, i) => {
      const w = Math.max(2, (slot - 10) / 2);
      series.forEach((s, j) => {
        const v = s.value(g);
        if (v === null || v === undefined || !s.n(g)) return;
        const h = (height - 14) * v;
        const bar = el("rect", { class: "col", "data-part": s.part, x: left + i * slot + 3 + j * (w + 4), y: height - h, width: w, height: Math.max(h, 1), fill: s.color });
        bar.append(el("title", {}, `week of ${dayWords(g.key)}: ${s.label} ${pct(v)} (${s.n(g)} conversations)`));
        svg.append(bar);
      });
      if (i % every === 0)
        svg.append(el("text", { x: left + i * slot + slot / 2, y: height + 14, "text-anchor": "middle" }, dayWords(g.key).replace(/ \d{4}$/, "")));
    });
    svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
    box.append(svg, legend(series));
  }

  // Handoff reasons per group: each group's handed-off conversations (a link to them), then one row per
  // reason of their first handoff with its count.
  function renderReasons(report) {
    const rows = [];
    const groups = report.group_by === "none" ? [] : report.groups;
    const saved = shown;
    shown = { from: report.from, to: report.to, group_by: report.group_by };
    for (const g of [...groups, { ...report.total, total: true }]) {
      const row = g.total ? "total" : g;
      (g.reasons.length ? g.reasons : [null]).forEach((r, i) => {
        if (r && r.reason) reasonWords[r.reason] = r.label;
        rows.push({
          cells: [i ? "" : g.total ? "All" : groupName(g), i ? "" : countLink(row, g.handed_off, { only: "handed_off" }, "handed off"),
            r ? r.label || reasonText(r.reason) : "–", r ? countLink(row, r.count, { only: "handed_off", handoff_reason: r.reason ?? NONE }) : "–"],
          className: (g.total ? "total" : "") + (i ? " cont" : ""),
        });
      });
    }
    shown = saved;
    const cutName = report.group_by === "none" ? "" : report.group_by.replace(/_/g, " ");
    $("hr-title").textContent = `Handoff reasons${cutName ? " by " + cutName : ""}`;
    table($("hr-table"), [cutName || "range", "handed off", "reason (of the first handoff)", "conversations"], rows);
  }

  function renderUsage(report) {
    const cells = (r, purpose, model) => [purpose, model, r.calls, r.errors, r.input_tokens, r.cache_write_tokens,
      r.cache_read_tokens, r.output_tokens, usd(r.cost_usd), pct(r.cache_hit_ratio)];
    const rows = report.groups.map((r) => cells(r, r.purpose || r.label, r.model || ""));
    rows.push({ cells: cells(report.total, "All", ""), className: "total" });
    $("usage-title").textContent = "Model usage by purpose and model";
    table($("usage-table"), ["purpose", "model", "calls", "errors", "input", "cache write", "cache read", "output",
      "cost", "cache hit ratio (answers)"], rows);
  }

  function renderEdits(report) {
    const cells = (r, name) => [name, r.agent_replies, r.from_draft, r.edited, pct(r.edited_share), num(r.mean_edit_ratio)];
    const rows = report.groups.map((g) => cells(g, g.label || intentLabel(g.key)));
    rows.push({ cells: cells(report.total, "All"), className: "total" });
    table($("edits-table"), ["intent", "agent replies", "sent from a bot draft", "edited", "edited share", "mean edit ratio"], rows);
  }

  // ---------------------------------------------------------------------------------------------------
  // Drill-down: the conversations behind a number, newest first, a page at a time.
  const PAGE = 50;
  // `generation` counts the lists opened: a page that answers after another list was opened is dropped.
  let drill = { params: null, cursor: null, rows: 0, generation: 0 };

  function filterWords(params) {
    const items = [rangeWords(params.get("from"), params.get("to"))];
    for (const [k, v] of params) {
      if (["from", "to", "only", "limit", "cursor", "format"].includes(k) || k.startsWith("w.")) continue;
      let words = params.get("w." + k) || v;
      if (v === NONE) words = NONE_WORDS[k] || "None";
      else if (k === "resolution") words = RESOLUTION_TYPE_WORDS[v] || v;
      else if (k === "channel") words = CHANNEL_WORDS[v] || v;
      else if (k === "handoff_reason") words = reasonText(v);
      else if (k === "day" || k === "week") words = dayWords(v);
      else if (k === "intent" && !params.get("w.intent")) words = intentLabel(v);
      items.push(`${FILTER_NAMES[k] || k}: ${words}`);
    }
    if (params.get("only")) items.push("Only conversations " + (ONLY_WORDS[params.get("only")] || params.get("only")));
    return items;
  }

  function apiParams(params) {
    const p = new URLSearchParams();
    for (const [k, v] of params) if (!k.startsWith("w.")) p.set(k, v);
    return p;
  }

  async function openDrill(hashQuery) {
    const params = new URLSearchParams(hashQuery);
    drill = { params: apiParams(params), cursor: null, rows: 0, generation: drill.generation + 1 };
    $("drill-filters").replaceChildren(...filterWords(params).map((w) => {
      const li = document.createElement("li");
      li.textContent = w;
      return li;
    }));
    const all = withParams(drill.params, { format: "csv" });
    all.delete("limit");
    $("drill-csv").dataset.href = "/api/v1/reports/conversations?" + all;
    table($("drill-table"), DRILL_HEAD, []);
    $("drill-table").querySelector("tr.empty td").textContent = "Loading…";
    $("drill-count").textContent = "Conversations";
    await morePage(true);
  }

  const DRILL_HEAD = ["started (UTC)", "channel", "resolution", "bot resolution", "intent", "agent", "handoff reason",
    "rating", "predicted", "reopened", "first bot reply", "time to resolution", "cost"];

  function drillRow(c) {
    const open = link(`#conversation/${encodeURIComponent(c.conversation_id)}`, shortWhen(c.started_at), `Open conversation ${c.conversation_id} (started ${when(c.started_at)})`);
    open.className = "open";
    return {
      cells: [open, CHANNEL_WORDS[c.channel] || c.channel, RESOLUTION_TYPE_WORDS[c.resolution_type] || c.resolution_type,
        c.bot_resolution || "–", c.intent_label || intentLabel(c.intent), c.agent_name || c.agent_id || "–",
        c.handoff_reason ? reasonText(c.handoff_reason) : "–", c.rating ?? "–",
        c.rating != null || c.predicted_score == null ? "–" : `${c.predicted_score} (predicted)`,
        c.reopened ? "yes" : "no", secs(c.bot_first_response_s), secs(c.resolution_s), usd(c.cost_usd)],
      id: c.conversation_id,
    };
  }

  async function morePage(first) {
    $("drill-error").textContent = "";
    $("drill-more").disabled = true;
    const p = new URLSearchParams(drill.params); // a `limit` in the address sets the page size
    if (!p.has("limit")) p.set("limit", String(PAGE));
    if (drill.cursor) p.set("cursor", drill.cursor);
    try {
      const generation = drill.generation;
      const body = await api("/api/v1/reports/conversations?" + p);
      if (generation !== drill.generation) return;
      const list = body.conversations;
      const tableNode = $("drill-table");
      if (first) table(tableNode, DRILL_HEAD, list.map(drillRow));
      else {
        const scratch = document.createElement("table");
        table(scratch, DRILL_HEAD, list.map(drillRow));
        tableNode.append(...[...scratch.querySelectorAll("tr")].slice(1).filter((r) => !r.classList.contains("empty")));
      }
      for (const tr of tableNode.querySelectorAll("tr")) {
        const a = tr.querySelector("a.open");
        if (a) tr.dataset.id = decodeURIComponent(a.getAttribute("href").slice("#conversation/".length));
      }
      if (first && !list.length) tableNode.querySelector("tr.empty td").textContent = "No conversations match.";
      drill.rows += list.length;
      drill.cursor = body.next_cursor || null;
      $("drill-more").hidden = !drill.cursor;
      $("drill-count").textContent = drill.cursor
        ? `The newest ${drill.rows} conversations (more below)`
        : `${drill.rows} conversation${drill.rows === 1 ? "" : "s"}`;
    } catch (err) {
      $("drill-error").textContent = err.message;
    } finally {
      $("drill-more").disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // One conversation, read-only: the transcript and, beside it, what the reports count for it.
  const ROLE_WORDS = { customer: "Customer", assistant: "Bot", agent: "Agent", system: "System", note: "Note" };

  async function openConversation(id) {
    $("conv-error").textContent = "";
    $("conv-id").textContent = id;
    $("conv-transcript").replaceChildren();
    $("conv-facts").replaceChildren();
    $("conv-ticket").hidden = true;
    $("conv-back").href = lastList;
    $("conv-back").textContent = lastList.startsWith("#conversations") ? "← Back to the list" : "← All reports";
    try {
      const body = await api(`/api/v1/reports/conversations/${encodeURIComponent(id)}`);
      if ($("conv-id").textContent !== id) return; // another conversation was opened meanwhile
      renderTranscript(body.transcript || []);
      renderFacts(body.facts || {});
      if (body.ticket) {
        $("conv-ticket").hidden = false;
        facts($("conv-ticket").querySelector("dl"), Object.entries(body.ticket)
          .filter(([, v]) => v !== null && typeof v !== "object")
          .map(([k, v]) => [k.replace(/_/g, " "), /_at$/.test(k) ? when(v) : String(v)]));
      }
    } catch (err) {
      $("conv-error").textContent = err.message;
    }
  }

  function renderTranscript(events) {
    const list = $("conv-transcript");
    list.replaceChildren(...events.map((e) => {
      const li = document.createElement("li");
      const role = e.role || "system";
      li.className = "msg";
      li.dataset.role = role;
      li.dataset.seq = e.seq;
      const meta = document.createElement("span");
      meta.className = "meta";
      const who = role === "agent" ? (e.author && e.author.name) || "Agent" : ROLE_WORDS[role] || role;
      meta.textContent = `${who} · ${when(e.created_at)}`;
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = e.text || "";
      li.append(meta, text);
      return li;
    }));
    if (!events.length) list.innerHTML = '<li class="empty">No messages kept for this conversation.</li>';
  }

  function facts(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v === null || v === undefined || v === "" ? "–" : v;
      dl.append(dt, dd);
    }
  }

  function renderFacts(f) {
    const bot = f.bot_resolution ? `${f.bot_resolution}${f.bot_resolution === "assumed" ? " (no customer message for 24 h)" : ""}` : "–";
    facts($("conv-facts"), [
      ["Channel", CHANNEL_WORDS[f.channel] || f.channel],
      ["Started", when(f.started_at)],
      ["Resolution", RESOLUTION_TYPE_WORDS[f.resolution_type] || f.resolution_type],
      ["Bot resolution", bot],
      ["Intent", f.intent_label || intentLabel(f.intent)],
      ["Agent", f.agent_name || f.agent_id],
      ["Handoff reason", f.handoff_reason ? reasonText(f.handoff_reason) : null],
      ["Rating", f.rating ? `${f.rating} of 5` : "not rated"],
      ["Predicted satisfaction", f.predicted_score ? `${f.predicted_score} of 5 (predicted, not a rating)${f.predicted_reason ? ": " + f.predicted_reason : ""}` : null],
      ["Confirmed by the customer", f.confirmed ? "yes" : "no"],
      ["Reopened", f.reopened ? "yes" : "no"],
      ["Resolved", f.resolved_at ? when(f.resolved_at) : "no"],
      ["First bot reply", secs(f.bot_first_response_s)],
      ["First person's reply", secs(f.human_first_response_s)],
      ["Queue wait", secs(f.queue_wait_s)],
      ["Time to resolution", secs(f.resolution_s)],
      ["Model cost", usd(f.cost_usd)],
      ["Policy version", f.policy_version],
    ]);
  }

  // A CSV the API sends only with the bearer header: fetched, then handed to the browser as a file.
  async function downloadCsv(href, fallbackName) {
    const resp = await fetch(href, { headers: { Authorization: "Bearer " + token } });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || resp.statusText);
    }
    const named = /filename="?([^";]+)"?/.exec(resp.headers.get("Content-Disposition") || "");
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = named ? named[1] : fallbackName;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
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

  // ---------------------------------------------------------------------------------------------------
  // Views by the address's fragment: `#conversations?<filters>` the drill-down, `#conversation/<id>` one
  // conversation, anything else the reports (a section's id scrolls to it). Back and forward work.
  let previous = "";
  let fromList = false; // the open conversation was opened from the list just before it (Back = history)
  function route() {
    if (!token) return;
    const hash = location.hash;
    const came = previous;
    previous = hash;
    const drillView = hash.startsWith("#conversations?") || hash === "#conversations";
    const convView = hash.startsWith("#conversation/");
    $("dashboard").hidden = drillView || convView;
    $("drill").hidden = !drillView;
    $("conversation").hidden = !convView;
    if (drillView) {
      lastList = hash;
      openDrill(hash.slice("#conversations".length).replace(/^\?/, ""));
      window.scrollTo(0, 0);
    } else if (convView) {
      fromList = came.startsWith("#conversations");
      openConversation(decodeURIComponent(hash.slice("#conversation/".length)));
      window.scrollTo(0, 0);
    } else {
      lastList = "#overview";
      if (!loaded) load();
      const target = hash.length > 1 && document.getElementById(hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  function show() {
    $("login").hidden = !!token;
    $("app").hidden = !token;
    $("signout").hidden = !token;
    if (token) route();
    else $("login").querySelector("input").focus();
  }

  function signOut() {
    token = null;
    loaded = false;
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
  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.csv");
    if (!button || !button.dataset.href) return;
    const errorBox = button.id === "drill-csv" ? $("drill-error") : $("error");
    try {
      await downloadCsv(button.dataset.href, (button.dataset.csv || "conversations") + ".csv");
    } catch (err) {
      errorBox.textContent = err.message;
    }
  });
  $("drill-more").addEventListener("click", () => morePage(false));
  $("conv-back").addEventListener("click", (ev) => {
    if (!fromList) return; // opened by its address: the link goes to the list (or the reports)
    ev.preventDefault();
    history.back();
  });
  // A drill-down row opens its conversation wherever it is clicked (the date is the row's real link).
  $("drill-table").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-id]");
    if (tr && !ev.target.closest("a")) location.hash = `#conversation/${encodeURIComponent(tr.dataset.id)}`;
  });
  window.addEventListener("hashchange", route);
  session.onSignedOutElsewhere(() => {
    token = null;
    loaded = false;
    show();
  });
  session.ready.then((signed) => {
    token = signed.token;
    show();
  });
})();
