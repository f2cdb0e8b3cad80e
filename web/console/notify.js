// Switchboard agent console: notifications while the agent looks elsewhere. When the tab is hidden, a
// conversation put in Mine (a claim elsewhere, a transfer, automatic assignment: the socket's `assigned`
// frame naming me) and a customer's message in a conversation I hold raise a desktop notification and a
// short tone (with the bell on), and count in the tab title: "(3) Switchboard · Agent console" (always).
// Nothing fires while the tab is visible: the console shows and announces those itself. Clicking a
// notification focuses the tab and opens that conversation.
//
// The bell in the top bar turns this on and off. Browsers only ask for the permission from a user
// gesture, so the bell's click asks; the choice is kept in localStorage. The tone is synthesized with
// WebAudio (no sound file), whose context may also only start from a gesture: the bell's click starts it.
// Plain browser JavaScript, no build step; load it after console.js.
"use strict";

(() => {
  const STORAGE_KEY = "switchboard.console.notify";
  const TONE_S = 0.18; // long enough to notice, short enough not to annoy when several come in
  const TONE_HZ = 880;
  const TEXT_CHARS = 140; // a notification shows two or three lines; the console has the rest
  const $ = (id) => document.getElementById(id);
  const ui = () => window.SwitchboardConsole;
  const baseTitle = document.title;
  const supported = "Notification" in window;
  let unseen = 0;
  let audio = null;

  const wanted = () => localStorage.getItem(STORAGE_KEY) === "on";
  const enabled = () => wanted() && supported && Notification.permission === "granted";

  function renderBell() {
    const bell = $("notify-toggle");
    const on = enabled();
    bell.setAttribute("aria-pressed", String(on));
    const denied = supported && Notification.permission === "denied";
    bell.title = !supported
      ? "This browser cannot show notifications"
      : denied
        ? "Notifications are blocked for this site in the browser's settings"
        : on
          ? "Notifications on: new assignments and customer messages while this tab is hidden"
          : "Turn on notifications for new assignments and customer messages";
    bell.dataset.state = on ? "on" : denied ? "blocked" : "off";
  }

  async function toggle() {
    if (enabled()) {
      localStorage.setItem(STORAGE_KEY, "off");
      renderBell();
      ui().announce("Notifications off");
      return;
    }
    if (!supported) {
      ui().showAlert("This browser cannot show notifications.");
      return;
    }
    startAudio(); // inside the click: the only moment a browser lets a page start sound
    const answer = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    if (answer !== "granted") {
      localStorage.setItem(STORAGE_KEY, "off");
      renderBell();
      ui().showAlert("Notifications are blocked: allow them for this site in the browser's settings.");
      return;
    }
    localStorage.setItem(STORAGE_KEY, "on");
    renderBell();
    ui().announce("Notifications on while this tab is hidden");
  }

  function startAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) audio = new Context();
    if (audio.state === "suspended") audio.resume().catch(() => {});
  }

  // A short two-step chime: a sine that falls a fifth and fades out.
  function chime() {
    if (!audio) startAudio();
    if (!audio) return;
    const now = audio.currentTime;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.setValueAtTime(TONE_HZ, now);
    osc.frequency.setValueAtTime((TONE_HZ * 2) / 3, now + TONE_S / 2);
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.2, now + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + TONE_S);
    osc.connect(gain).connect(audio.destination);
    osc.start(now);
    osc.stop(now + TONE_S + 0.02);
  }

  function renderTitle() {
    document.title = unseen > 0 ? `(${unseen}) ${baseTitle}` : baseTitle;
  }

  function notify(conversationId, title, body) {
    if (document.visibilityState !== "hidden") return;
    // The count in the title needs no permission: it shows with the bell off too.
    unseen += 1;
    renderTitle();
    if (!enabled()) return;
    const note = new Notification(title, {
      body: body.length > TEXT_CHARS ? `${body.slice(0, TEXT_CHARS - 1)}…` : body,
      // One notification per conversation on screen: a newer message replaces the older one.
      tag: `switchboard:${conversationId}`,
    });
    note.addEventListener("click", () => {
      window.focus();
      note.close();
      Promise.resolve(ui().open(conversationId)).then(() => {
        if (window.SwitchboardPanes) window.SwitchboardPanes.show("conversation");
      });
    });
    chime();
  }

  const nameOf = (item) => {
    if (!item) return "a customer";
    if (item.kind === "ticket" && item.ticket && item.ticket.subject) return item.ticket.subject;
    const customer = item.customer || {};
    return customer.name || customer.email || "a visitor";
  };

  async function onAssigned(frame) {
    const me = ui().me();
    // A frame that names its agent is checked at once; one that does not, by the packet's assignee.
    if (!me || (frame.agent && frame.agent.id !== me.id)) return;
    if (document.visibilityState !== "hidden") return;
    let packet = null;
    try {
      packet = await ui().api("GET", `/conversations/${encodeURIComponent(frame.conversation_id)}`);
    } catch {
      if (!frame.agent) return; // whose it is stays unknown: say nothing rather than something wrong
    }
    if (!frame.agent && !(packet && packet.assignee && packet.assignee.id === me.id)) return;
    const reason = packet && (packet.reason_text || packet.reason);
    notify(frame.conversation_id, `Assigned to you: ${nameOf(packet)}`, reason ? String(reason) : "Open the console to answer.");
  }

  function onLive(event) {
    const frame = event.detail || {};
    if (frame.type === "assigned") {
      onAssigned(frame);
    } else if (frame.type === "event" && frame.event && frame.event.type === "message" && frame.event.role === "customer") {
      const held = ui().held(frame.conversation_id);
      if (held) notify(frame.conversation_id, `New message from ${nameOf(held)}`, String(frame.event.text || ""));
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && unseen) {
      unseen = 0;
      renderTitle();
    }
  });
  document.addEventListener("switchboard:live", onLive);
  document.addEventListener("switchboard:signed-out", () => {
    unseen = 0;
    renderTitle();
  });
  // After a reload with the bell on, the first click or key press in the page starts the sound.
  const warm = () => {
    if (enabled()) startAudio();
  };
  document.addEventListener("pointerdown", warm, { once: true });
  document.addEventListener("keydown", warm, { once: true });
  $("notify-toggle").addEventListener("click", toggle);
  renderBell();
})();
