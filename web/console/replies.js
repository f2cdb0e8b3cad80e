// Switchboard agent console: the saved-replies picker in the composer, and "Save as reply" on the packet's
// suggested replies. Typing "/" at the start of the reply (or the "Saved replies" button) opens a list of
// the team's replies and the agent's own, filtered as the shortcut is typed; ArrowUp/ArrowDown choose,
// Enter or Tab inserts, Escape closes. Inserting asks the server to fill the placeholders
// ({{customer.name}} ...) for the open conversation (POST /saved-replies/{id}/render), so the agent sees
// and may edit exactly what will be sent. Plain browser JavaScript, no build step; loaded after console.js.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = () => window.SwitchboardConsole;
  const SHORTCUT_TYPED = /^\/[a-z0-9_-]*$/i; // the whole composer is "/" and a partial shortcut
  let replies = [];
  let shown = [];
  let active = -1;
  let loadedAt = 0;
  const FRESH_MS = 15000; // a library changed on the manage screen shows up within this long

  async function load(force) {
    if (!force && Date.now() - loadedAt < FRESH_MS) return replies;
    replies = (await ui().api("GET", "/api/v1/agent/saved-replies")) || [];
    loadedAt = Date.now();
    return replies;
  }

  const isOpen = () => !$("replies-picker").hidden;

  function close() {
    $("replies-picker").hidden = true;
    $("composer-text").removeAttribute("aria-activedescendant");
    active = -1;
  }

  function matches(reply, needle) {
    if (!needle) return true;
    const n = needle.toLowerCase();
    return reply.shortcut.includes(n) || reply.title.toLowerCase().includes(n) || reply.text.toLowerCase().includes(n);
  }

  function render(needle) {
    shown = replies.filter((r) => matches(r, needle));
    // Shortcut prefix matches first: "/ref" puts /refund before a reply that only mentions refunds.
    shown.sort((a, b) => Number(!a.shortcut.startsWith(needle || "/")) - Number(!b.shortcut.startsWith(needle || "/")));
    active = shown.length ? 0 : -1;
    const list = $("replies-options");
    list.replaceChildren(
      ...shown.map((r, i) => {
        const li = document.createElement("li");
        li.id = `reply-option-${i}`;
        li.className = "reply-option";
        li.setAttribute("role", "option");
        const head = document.createElement("span");
        head.className = "reply-option-head";
        const code = document.createElement("code");
        code.textContent = r.shortcut;
        const title = document.createElement("span");
        title.textContent = r.title;
        const scope = document.createElement("span");
        scope.className = `reply-scope reply-scope-${r.scope}`;
        scope.textContent = r.scope === "team" ? "Team" : "Mine";
        head.append(code, title, scope);
        const text = document.createElement("span");
        text.className = "reply-option-text";
        text.textContent = r.text;
        li.append(head, text);
        li.addEventListener("mousedown", (event) => event.preventDefault()); // keep the composer's focus
        li.addEventListener("click", () => insert(r));
        return li;
      }),
    );
    $("replies-empty").hidden = shown.length > 0;
    highlight();
  }

  function highlight() {
    const options = $("replies-options").children;
    for (let i = 0; i < options.length; i++) options[i].setAttribute("aria-selected", i === active ? "true" : "false");
    const box = $("composer-text");
    if (active >= 0) {
      box.setAttribute("aria-activedescendant", `reply-option-${active}`);
      options[active].scrollIntoView({ block: "nearest" });
    } else {
      box.removeAttribute("aria-activedescendant");
    }
  }

  async function open(needle) {
    try {
      await load(false);
    } catch (err) {
      ui().failed(err);
      return;
    }
    $("replies-picker").hidden = false;
    render(needle);
  }

  async function insert(reply) {
    const box = $("composer-text");
    const conversation = ui().selected();
    close();
    let text = reply.text;
    try {
      if (conversation) {
        const path = `/api/v1/agent/saved-replies/${encodeURIComponent(reply.id)}/render`;
        text = (await ui().api("POST", path, { conversation_id: conversation })).text;
      }
    } catch (err) {
      ui().failed(err);
      return;
    }
    // A typed "/shortcut" is replaced; otherwise the reply goes in at the cursor.
    const typed = SHORTCUT_TYPED.test(box.value.trim());
    const start = typed ? 0 : box.selectionStart;
    const end = typed ? box.value.length : box.selectionEnd;
    box.value = box.value.slice(0, start) + text + box.value.slice(end);
    box.focus();
    const caret = start + text.length;
    box.setSelectionRange(caret, caret);
    box.dispatchEvent(new Event("input", { bubbles: true }));
    ui().announce(`Inserted saved reply ${reply.shortcut}`);
  }

  function onInput() {
    const value = $("composer-text").value;
    if (SHORTCUT_TYPED.test(value)) open(value.toLowerCase());
    else if (isOpen()) close();
  }

  // On the form, in the capture phase: before console.js's Enter-sends handler on the textarea.
  function onKeydown(event) {
    if (!isOpen() || event.target !== $("composer-text")) return;
    const keys = { ArrowDown: 1, ArrowUp: -1 };
    if (event.key in keys) {
      if (shown.length) active = (active + keys[event.key] + shown.length) % shown.length;
      highlight();
    } else if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey && active >= 0) {
      insert(shown[active]);
    } else if (event.key === "Escape") {
      close();
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  }

  // "Save as reply" on each suggested reply (an approved example): saved to the agent's own library.
  function addSaveButtons() {
    for (const li of $("canned-list").querySelectorAll("li[data-example-id]")) {
      if (li.querySelector(".save-as-reply")) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "save-as-reply quiet";
      button.textContent = "Save as reply";
      button.addEventListener("click", async () => {
        try {
          const saved = await ui().api("POST", "/api/v1/agent/saved-replies/from-example", {
            example_id: li.dataset.exampleId,
            scope: "personal",
          });
          loadedAt = 0;
          button.textContent = `Saved as ${saved.shortcut}`;
          button.disabled = true;
          ui().announce(`Saved as your reply ${saved.shortcut}`);
        } catch (err) {
          ui().failed(err);
        }
      });
      li.append(button);
    }
  }

  function wire() {
    const box = $("composer-text");
    box.setAttribute("aria-autocomplete", "list");
    box.setAttribute("aria-controls", "replies-options");
    box.addEventListener("input", onInput);
    box.addEventListener("blur", () => setTimeout(close, 150));
    $("composer").addEventListener("keydown", onKeydown, true);
    $("replies-open").addEventListener("mousedown", (event) => event.preventDefault()); // keep focus
    $("replies-open").addEventListener("click", () => {
      if (isOpen()) return close();
      $("composer-text").focus();
      open("");
    });
    new MutationObserver(addSaveButtons).observe($("canned-list"), { childList: true });
  }

  wire();
})();
