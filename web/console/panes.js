// Switchboard agent console on a phone: one pane at a time. The lists ("list"), then the open
// conversation ("conversation"), then its assist and actions panel ("panel"), each with a back button.
// The pane is `data-pane` on #console-view; console.css shows only that pane below 700 px and ignores it
// on wider screens, where all three sit side by side. Plain browser JavaScript, no build step.
"use strict";

(() => {
  const PHONE = window.matchMedia("(max-width: 700px)");
  const PANES = ["list", "conversation", "panel"];
  const $ = (id) => document.getElementById(id);
  let pending = null; // a conversation the agent just picked in a list: show it once it has loaded

  function show(pane) {
    if (!PANES.includes(pane)) return;
    const view = $("console-view");
    if (view.dataset.pane === pane) return;
    view.dataset.pane = pane;
    if (!PHONE.matches) return;
    window.scrollTo(0, 0);
    // Focus follows the pane so a keyboard or screen reader user lands in what they opened.
    const target = { list: focusInList, conversation: () => $("conv-title"), panel: () => $("panel-back") }[pane]();
    if (target) target.focus({ preventScroll: true });
  }

  function focusInList() {
    const open = $("console-view").querySelector('.sidebar .conv-item[aria-current="true"]');
    return open || $("mine-heading");
  }

  // Back one step: panel -> conversation -> list. False when there is nowhere to go back to.
  function back() {
    const pane = $("console-view").dataset.pane || "list";
    if (pane === "panel") show("conversation");
    else if (pane === "conversation") show("list");
    else return false;
    return true;
  }

  $("console-view").dataset.pane = "list";
  $("conv-title").tabIndex = -1; // a focus target when the conversation pane opens, not a tab stop
  $("mine-heading").tabIndex = -1;
  // Picking a conversation (click, Enter or a claim) opens its pane once it has loaded.
  $("console-view").querySelector(".sidebar").addEventListener("click", (event) => {
    const row = event.target.closest("[data-row]");
    if (row && event.target.closest("button")) pending = row.dataset.row;
  });
  document.addEventListener("switchboard:opened", (event) => {
    if (event.detail && event.detail.id === pending) {
      pending = null;
      show("conversation");
    }
  });
  document.addEventListener("switchboard:closed", () => show("list"));
  document.addEventListener("switchboard:signed-out", () => show("list"));
  $("conv-back").addEventListener("click", () => show("list"));
  $("conv-actions").addEventListener("click", () => show("panel"));
  $("panel-back").addEventListener("click", () => show("conversation"));

  window.SwitchboardPanes = Object.freeze({ show, back, phone: () => PHONE.matches });
})();
