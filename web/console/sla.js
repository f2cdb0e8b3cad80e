// SLA chips for the console's queue and Mine rows: "Reply 4:32" counting down to the first-reply target
// (then "Resolve …" once replied), amber in its last fifth, red with "overdue" once breached. The server
// sends each item's `sla` (handoff/sla.py) with absolute due times; the chips tick here every second.
"use strict";

(() => {
  const pad = (n) => String(n).padStart(2, "0");
  const span = (s) => {
    const abs = Math.abs(Math.round(s));
    const h = Math.floor(abs / 3600);
    const m = Math.floor((abs % 3600) / 60);
    return h ? `${h}:${pad(m)}:${pad(abs % 60)}` : `${m}:${pad(abs % 60)}`;
  };

  // The clock that matters now: the first reply until it is met, then resolution.
  function current(sla) {
    if (!sla) return null;
    const first = sla.first_reply;
    if (first && !first.met_at) return { label: "Reply", clock: first };
    if (sla.resolution) return { label: "Resolve", clock: sla.resolution };
    return first ? { label: "Reply", clock: first } : null;
  }

  function paint(chip) {
    const due = Date.parse(chip.dataset.due);
    const target = Number(chip.dataset.target);
    const met = chip.dataset.met ? Date.parse(chip.dataset.met) : null;
    const left = ((met || Date.now()) - due) / -1000;
    const label = chip.dataset.label;
    chip.classList.toggle("breached", left < 0);
    chip.classList.toggle("soon", left >= 0 && left < target / 5);
    chip.textContent = met ? `${label} met` : left < 0 ? `${label} overdue ${span(left)}` : `${label} ${span(left)}`;
    chip.title = left < 0 ? `${label} target (SLA) breached` : `${label} target (SLA): ${span(left)} left`;
  }

  function chip(item) {
    const now = current(item && item.sla);
    if (!now) return null;
    const node = document.createElement("span");
    node.className = "sla-chip";
    node.dataset.due = now.clock.due_at;
    node.dataset.target = String(now.clock.target_s);
    node.dataset.label = now.label;
    if (now.clock.met_at) node.dataset.met = now.clock.met_at;
    paint(node);
    return node;
  }

  setInterval(() => document.querySelectorAll(".sla-chip").forEach(paint), 1000);
  window.SwitchboardSla = Object.freeze({ chip });
})();
