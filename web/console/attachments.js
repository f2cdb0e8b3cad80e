// Switchboard agent console: attachments. Shows the files a message carries in the transcript (images
// as thumbnails, PDFs as download buttons) and lets the agent attach files to a reply. The files are read
// with the agent's bearer token (GET /api/v1/agent/attachments/{id}) into blob URLs: an <img> could not
// send the token, and a token must not go into a URL. Uploads go to
// POST /api/v1/agent/conversations/{id}/attachments; console.js sends the ids with the reply.
// Plain browser JavaScript, no build step.
"use strict";

(() => {
  const ACCEPT = "image/png,image/jpeg,image/gif,image/webp,application/pdf";
  const THUMB_MAX_PX = 220; // thumbnails keep the transcript readable; the full image opens on click
  const $ = (id) => document.getElementById(id);
  const ui = () => window.SwitchboardConsole;
  const blobs = new Map(); // attachment id -> Promise of an object URL (fetched once per page)
  let pending = []; // uploaded, not yet sent: [{id, name, kind, ...}]

  function fetchBlob(id) {
    if (!blobs.has(id)) {
      blobs.set(
        id,
        fetch(`/api/v1/agent/attachments/${encodeURIComponent(id)}`, {
          headers: { Authorization: `Bearer ${ui().token()}` },
        }).then((res) => {
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          return res.blob().then((b) => URL.createObjectURL(b));
        }),
      );
    }
    return blobs.get(id);
  }

  // The transcript's view of a message's files (console.js appends it to the message).
  function node(attachments) {
    if (!Array.isArray(attachments) || !attachments.length) return null;
    const box = document.createElement("div");
    box.className = "atts";
    for (const att of attachments) {
      if (!att || typeof att.id !== "string") continue;
      const name = String(att.name || "file");
      if (att.kind === "image") {
        const link = document.createElement("a");
        link.className = "att-image";
        link.target = "_blank";
        link.rel = "noopener";
        link.title = name;
        const img = document.createElement("img");
        img.alt = `Image ${name}`;
        if (att.width && att.height) {
          img.width = Math.min(att.width, THUMB_MAX_PX);
          img.height = Math.round((img.width * att.height) / att.width);
        }
        fetchBlob(att.id)
          .then((url) => {
            img.src = url;
            link.href = url;
          })
          .catch(() => {
            img.alt = `Image ${name} (could not be loaded)`;
          });
        link.append(img);
        box.append(link);
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "att-file link";
        button.textContent = `PDF · ${name}`;
        button.addEventListener("click", async () => {
          try {
            const a = document.createElement("a");
            a.href = await fetchBlob(att.id);
            a.download = name;
            a.click();
          } catch (err) {
            ui().showAlert(`Could not open ${name}: ${err.message}`);
          }
        });
        box.append(button);
      }
    }
    return box;
  }

  function renderPending() {
    const list = $("composer-attachments");
    if (!list) return;
    list.replaceChildren(
      ...pending.map((att) => {
        const chip = document.createElement("span");
        chip.className = "att-chip";
        chip.textContent = `${att.kind === "image" ? "Image" : "PDF"} · ${att.name}`;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link";
        remove.textContent = "×";
        remove.setAttribute("aria-label", `Remove ${att.name}`);
        remove.addEventListener("click", () => {
          pending = pending.filter((p) => p.id !== att.id);
          renderPending();
        });
        chip.append(remove);
        return chip;
      }),
    );
    list.hidden = !pending.length;
  }

  async function upload(file) {
    const id = ui().selected();
    if (!id) return;
    const url = `/api/v1/agent/conversations/${encodeURIComponent(id)}/attachments?filename=${encodeURIComponent(file.name || "file")}`;
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${ui().token()}`, "Content-Type": file.type || "application/octet-stream" },
        body: file,
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.error?.message || `HTTP ${res.status}`);
      pending.push(body);
      renderPending();
      ui().announce(`${body.name} attached`);
    } catch (err) {
      ui().showAlert(`Could not attach ${file.name}: ${err.message}`);
    }
  }

  function wire() {
    const button = $("attach-button");
    const input = $("attach-input");
    if (!button || !input) return;
    input.accept = ACCEPT;
    button.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      const files = [...(input.files || [])];
      input.value = "";
      for (const file of files) upload(file);
    });
  }

  window.SwitchboardAttachments = {
    node,
    pendingIds: () => pending.map((p) => p.id),
    pendingNames: () => pending.map((p) => p.name),
    clear() {
      pending = [];
      renderPending();
    },
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
