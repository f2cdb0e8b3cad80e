// Switchboard agent console: keyboard shortcuts, listed in the dialog that `?` opens (#keys-dialog).
// Every action is also a button reachable with Tab; the shortcuts make the common path quick:
//   j / k   next / previous conversation in the lists (Mine, then Queue)
//   Enter   open the focused conversation (a focused button's own behaviour)
//   c       claim the open queued conversation, or the focused queue row
//   r       write a reply (focus the composer)
//   e       resolve the open conversation
//   /       focus search, where the console has one
//   Esc     leave the reply box; back to the list (on a phone: back one screen); close a dialog
//   ?       this list
// Single letters act only when no text field has the focus and no modifier is held, so typing a reply
// never triggers them. Plain browser JavaScript, no build step; load it after console.js.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = () => window.SwitchboardConsole;
  const panes = () => window.SwitchboardPanes;

  const typing = (node) =>
    Boolean(node) &&
    (node.isContentEditable ||
      node.tagName === "TEXTAREA" ||
      node.tagName === "SELECT" ||
      (node.tagName === "INPUT" && !["button", "checkbox", "radio", "submit", "reset"].includes(node.type)));

  const visible = (node) => Boolean(node) && node.getClientRects().length > 0;

  // The conversation buttons of Mine then Queue, in reading order, that are on screen.
  const rows = () => [...document.querySelectorAll("#mine-list .conv-item, #queue-list .conv-item")].filter(visible);

  function move(step) {
    const items = rows();
    if (!items.length) return;
    const active = document.activeElement;
    const at = items.findIndex((item) => item === active || item.closest("li").contains(active));
    const current = at >= 0 ? at : items.findIndex((item) => item.getAttribute("aria-current") === "true");
    const next = current < 0 ? (step > 0 ? 0 : items.length - 1) : Math.min(items.length - 1, Math.max(0, current + step));
    if (panes() && panes().phone()) panes().show("list");
    items[next].focus();
    items[next].scrollIntoView({ block: "nearest" });
  }

  const press = (button) => {
    if (button && !button.disabled && visible(button)) {
      button.click();
      return true;
    }
    return false;
  };

  function claim() {
    const row = document.activeElement && document.activeElement.closest("#queue-list [data-row]");
    if (row) return press(row.querySelector(".claim-btn"));
    return press($("claim"));
  }

  function reply() {
    const box = $("composer-text");
    if (!ui().selected() || box.disabled) return false;
    if (panes() && panes().phone()) panes().show("conversation");
    box.focus();
    return true;
  }

  function resolve() {
    const button = $("resolve");
    if (!ui().selected() || button.disabled) return false;
    button.click();
    return true;
  }

  const searchBox = () => document.querySelector('#console-view input[type="search"]');

  function search() {
    const box = searchBox();
    if (!visible(box)) return false;
    box.focus();
    box.select();
    return true;
  }

  function escape() {
    if (panes() && panes().phone()) return panes().back();
    // Wide screen: back to the open conversation's row (or the first) in the lists.
    const items = rows();
    const open = items.find((item) => item.getAttribute("aria-current") === "true") || items[0];
    if (!open || open === document.activeElement) return false;
    open.focus();
    return true;
  }

  function help() {
    const dialog = $("keys-dialog");
    const noSearch = !searchBox(); // the line for `/` only where the console has a search box
    $("keys-search-key").hidden = noSearch;
    $("keys-search-what").hidden = noSearch;
    if (!dialog.open) dialog.showModal();
    return true;
  }

  const ACTIONS = { j: () => move(1), k: () => move(-1), c: claim, r: reply, e: resolve, "/": search, "?": help };

  function onKey(event) {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    if ($("console-view").hidden || document.querySelector("dialog[open]")) return; // a dialog has its own keys
    if (event.key === "Escape") {
      const active = document.activeElement;
      if (typing(active)) {
        active.blur(); // out of the reply box: the shortcuts work again
        escape();
        event.preventDefault();
      } else if (escape()) {
        event.preventDefault();
      }
      return;
    }
    if (typing(document.activeElement)) return;
    const action = ACTIONS[event.key];
    if (action && action() !== false) event.preventDefault();
  }

  document.addEventListener("keydown", onKey);
  $("keys-help").addEventListener("click", help);
  $("keys-close").addEventListener("click", () => $("keys-dialog").close());
})();
