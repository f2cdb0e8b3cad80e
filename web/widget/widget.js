/* Switchboard chat widget. Embed with one tag:
 *   <script src="https://HOST/widget.js" data-widget-key="pk_..." async></script>
 * Optional attributes: data-locale="en|de", data-theme="auto|light|dark".
 * Speaks docs/protocol.md: POST /api/v1/widget/sessions, then WS /api/v1/widget/ws?token=.
 * Plain modern JS, no build step, no dependencies. Everything renders inside a Shadow DOM so the host
 * page's CSS cannot reach it and its CSS cannot reach the host page. */
(() => {
  "use strict";
  if (window.Switchboard && window.Switchboard.version) return; // loaded twice: keep the first

  const script =
    document.currentScript || document.querySelector("script[data-widget-key][src*='widget.js']");
  if (!script) return;
  const KEY = script.dataset.widgetKey || "";
  const API = new URL(".", script.src); // the API lives where the script came from
  const WS_BASE = API.href.replace(/^http/, "ws");
  const STORE_KEY = `switchboard:${API.host}:${KEY}`;

  const BACKOFF_BASE_MS = 500; // first retry soon: most drops are blips or a restarting server
  const BACKOFF_MAX_MS = 15000; // never wait longer than this to try again
  const TYPING_SEND_EVERY_MS = 3000; // at most one `typing` frame per this while the customer types
  const TYPING_SHOW_MS = 5000; // an agent's typing indicator fades after this without news
  const RENEW_BEFORE_MS = 3600000; // renew the session token an hour before it expires (it lasts 24 h)
  const MAX_SOURCES = 3; // "Source:" names at most this many sections under an answer
  // What the server accepts (docs/protocol.md, Attachments); it checks the content itself.
  const ATTACH_ACCEPT = "image/png,image/jpeg,image/gif,image/webp,application/pdf";

  /* ---------- strings ---------- */
  const STRINGS = {
    en: {
      open: "Open chat", close: "Close chat", title: "Support", subtitle: "We usually reply in minutes",
      placeholder: "Write a message…", send: "Send", human: "Talk to a person", end: "End chat",
      bot: "You're chatting with our assistant", queued: "Waiting for a person…",
      queuedPos: "Waiting for a person — you are number {n} in line",
      agent: "{name} is helping you", agentAnon: "A support agent is helping you", agentGeneric: "Support agent",
      queuedNoOne: "{waiting}. No one can answer right now: we answer in this chat when someone is back.",
      emailOffer: "Leave your e-mail address and we'll send the answer there too.",
      emailLabel: "Your e-mail address", emailSend: "E-mail me",
      emailSaved: "Thanks! We'll e-mail the answer to {email} and show it here when you come back.",
      emailInvalid: "Please enter a valid e-mail address, such as name@example.com.",
      resolved: "This conversation is resolved", typing: "{name} is typing…", someone: "Someone",
      assistant: "Assistant", you: "You",
      connecting: "Connecting…", offline: "You're offline. We'll reconnect in {s} s; messages you write now are sent then.",
      offlineNow: "You're offline. Messages you write now are sent when the connection is back.",
      unavailable: "Chat is not available on this site right now.",
      sending: "Sending…", failed: "Not sent: {reason}", retry: "Try again",
      rateTitle: "How did we do?", rateHint: "1 = poor, 5 = great", comment: "Anything to add? (optional)",
      submit: "Send rating", thanks: "Thank you for your feedback!", star: "{n} of 5",
      sysQueued: "A person will take over from here", sysAsked: "You asked for a person: we're getting one",
      sysUrgent: "This looks urgent: a person will take it from here",
      sysNotSure: "Our assistant isn't sure about this one, so a person will take over",
      sysBotDown: "Our assistant can't answer right now, so a person will take over",
      sysAgent: "{name} joined", sysAgentAnon: "A support agent joined", sysBot: "Back with the assistant",
      sysResolved: "Conversation resolved", welcome: "Hi! Ask us anything about your order, returns or our gear.",
      source: "Source:", attach: "Attach an image or PDF", uploading: "Uploading {name}…",
      attachFailed: "Could not attach {name}: {reason}", attachmentImage: "Image {name}",
    },
    de: {
      open: "Chat öffnen", close: "Chat schließen", title: "Support", subtitle: "Wir antworten meist in Minuten",
      placeholder: "Nachricht schreiben…", send: "Senden", human: "Mit einem Menschen sprechen", end: "Chat beenden",
      bot: "Sie chatten mit unserem Assistenten", queued: "Warten auf eine Person…",
      queuedPos: "Warten auf eine Person — Sie sind Nummer {n} in der Warteschlange",
      agent: "{name} hilft Ihnen", agentAnon: "Ein Mitarbeiter des Supports hilft Ihnen", agentGeneric: "Support",
      queuedNoOne: "{waiting}. Gerade kann niemand antworten: Wir antworten in diesem Chat, sobald jemand zurück ist.",
      emailOffer: "Hinterlassen Sie Ihre E-Mail-Adresse, dann senden wir die Antwort auch dorthin.",
      emailLabel: "Ihre E-Mail-Adresse", emailSend: "Per E-Mail",
      emailSaved: "Danke! Wir senden die Antwort an {email} und zeigen sie hier, wenn Sie zurückkommen.",
      emailInvalid: "Bitte geben Sie eine gültige E-Mail-Adresse ein, etwa name@example.com.",
      resolved: "Diese Unterhaltung ist abgeschlossen", typing: "{name} schreibt…", someone: "Jemand",
      assistant: "Assistent", you: "Sie",
      connecting: "Verbinde…", offline: "Sie sind offline. Neuer Versuch in {s} s; Nachrichten werden dann gesendet.",
      offlineNow: "Sie sind offline. Nachrichten werden gesendet, sobald die Verbindung zurück ist.",
      unavailable: "Der Chat ist auf dieser Seite gerade nicht verfügbar.",
      sending: "Wird gesendet…", failed: "Nicht gesendet: {reason}", retry: "Erneut versuchen",
      rateTitle: "Wie waren wir?", rateHint: "1 = schlecht, 5 = sehr gut", comment: "Noch etwas? (optional)",
      submit: "Bewertung senden", thanks: "Danke für Ihr Feedback!", star: "{n} von 5",
      sysQueued: "Eine Person übernimmt ab hier", sysAsked: "Sie haben nach einer Person gefragt: Wir holen jemanden",
      sysUrgent: "Das klingt dringend: Eine Person übernimmt ab hier",
      sysNotSure: "Unser Assistent ist sich hier nicht sicher, deshalb übernimmt eine Person",
      sysBotDown: "Unser Assistent kann gerade nicht antworten, deshalb übernimmt eine Person",
      sysAgent: "{name} ist beigetreten", sysAgentAnon: "Ein Mitarbeiter des Supports ist beigetreten",
      sysBot: "Zurück beim Assistenten", sysResolved: "Unterhaltung abgeschlossen",
      welcome: "Hallo! Fragen Sie uns alles zu Bestellungen, Rücksendungen oder Ausrüstung.",
      source: "Quelle:", attach: "Bild oder PDF anhängen", uploading: "{name} wird hochgeladen…",
      attachFailed: "{name} konnte nicht angehängt werden: {reason}", attachmentImage: "Bild {name}",
    },
  };
  let locale = pickLocale(script.dataset.locale || navigator.language || "en");
  function pickLocale(tag) {
    const base = String(tag).toLowerCase().split(/[-_]/)[0];
    return STRINGS[base] ? base : "en";
  }
  function t(id, vars) {
    const s = STRINGS[locale][id] || STRINGS.en[id] || id;
    return vars ? s.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? "")) : s;
  }

  // Handoff reason codes (docs/protocol.md "Why a person") to the line the customer reads. Codes this
  // widget does not know read as "not sure": true of every other reason the bot hands off for.
  const REASON_LINE = {
    wants_human: "sysAsked", customer_request: "sysAsked", urgent: "sysUrgent",
    draft_failed: "sysBotDown", timeout: "sysBotDown",
  };
  function handoffLine(frame) {
    if (!frame.reason) return t("sysQueued"); // queued again after an agent let go
    return t(REASON_LINE[frame.reason] || "sysNotSure"); // "no one online" is the status line's to say
  }

  // An agent's display name, or null when it would not read as a person's name in "{name} is helping
  // you" (empty, or a pronoun such as "You"): then the widget says "A support agent" instead.
  const NOT_NAMES = new Set([
    "you", "me", "i", "we", "us", "they", "them", "he", "she", "it", "someone", "somebody", "agent", "admin",
    "support", "sie", "du", "ich", "wir", "ihr", "er", "es", "jemand",
  ]);
  function personName(name) {
    const clean = String(name || "").trim();
    return clean && !NOT_NAMES.has(clean.toLowerCase()) ? clean : null;
  }

  /* ---------- persisted state (localStorage) ---------- */
  // token/conversation: the session; lastSeq: highest seq seen with nothing missing below it;
  // outbox: messages written but not yet acknowledged (sent again, same client_id, after a reconnect);
  // rated: resolved-status seqs already rated; visitor: what identify() said.
  const saved = load();
  function load() {
    try {
      return Object.assign(fresh(), JSON.parse(localStorage.getItem(STORE_KEY) || "{}"));
    } catch {
      return fresh();
    }
  }
  function fresh() {
    return {
      token: null, expiresAt: 0, conversationId: null, lastSeq: 0, outbox: [], rated: [], visitor: {}, open: false,
      contactEmail: null, // the address left for a reply by e-mail (this conversation)
    };
  }
  function persist() {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(saved));
    } catch {
      /* private mode or full storage: the widget still works for this page view */
    }
  }

  /* ---------- styles ---------- */
  const CSS = `
:host{all:initial!important;display:block!important;position:fixed!important;right:20px!important;bottom:20px!important;
 left:auto!important;top:auto!important;z-index:2147483000!important;width:auto!important;height:auto!important;
 margin:0!important;padding:0!important;border:0!important;transform:none!important;visibility:visible!important;
 opacity:1!important;filter:none!important}
.root{--bg:#fff;--fg:#1b1f24;--muted:#555d66;--line:#d5dae0;--brand:#1d4fb8;--brand-fg:#fff;--me:#1d4fb8;--me-fg:#fff;
 --them:#eef1f5;--them-fg:#1b1f24;--focus:#f5a623;--warn-bg:#fff4d6;--warn-fg:#5c4400;--err:#b3261e;
 --person:#e6f4ea;--person-fg:#10331c;--person-line:#9fd3ad;--avatar:#1e7b3c;--avatar-fg:#fff;
 font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
 letter-spacing:normal;text-align:left;direction:ltr;-webkit-font-smoothing:antialiased}
.root.dark{--bg:#16191d;--fg:#e8eaed;--muted:#a9b0b8;--line:#343a41;--brand:#7aa7ff;--brand-fg:#0b1220;--me:#2f5fc4;
 --me-fg:#fff;--them:#262b31;--them-fg:#e8eaed;--warn-bg:#3b3216;--warn-fg:#ffe3a3;--err:#ff8a80;
 --person:#17311f;--person-fg:#d7f0dd;--person-line:#2f6b40;--avatar:#5cc27a;--avatar-fg:#0b1a10}
@media (prefers-color-scheme:dark){.root.auto{--bg:#16191d;--fg:#e8eaed;--muted:#a9b0b8;--line:#343a41;--brand:#7aa7ff;
 --brand-fg:#0b1220;--me:#2f5fc4;--me-fg:#fff;--them:#262b31;--them-fg:#e8eaed;--warn-bg:#3b3216;--warn-fg:#ffe3a3;--err:#ff8a80;
 --person:#17311f;--person-fg:#d7f0dd;--person-line:#2f6b40;--avatar:#5cc27a;--avatar-fg:#0b1a10}}
*,*::before,*::after{box-sizing:border-box}
button,textarea,input{font:inherit;color:inherit;margin:0}
button{cursor:pointer}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.launcher{display:flex;align-items:center;justify-content:center;width:56px;height:56px;border-radius:50%;border:0;
 background:var(--brand);color:var(--brand-fg);box-shadow:0 4px 14px rgba(0,0,0,.25);position:relative}
.launcher svg{width:28px;height:28px;fill:currentColor}
.badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;border-radius:10px;background:var(--err);
 color:#fff;font-size:12px;line-height:20px;text-align:center;padding:0 5px}
.panel{position:absolute;right:0;bottom:72px;width:370px;height:min(600px,calc(100vh - 110px));
 height:min(600px,calc(100dvh - 110px));display:flex;
 flex-direction:column;background:var(--bg);color:var(--fg);border:1px solid var(--line);border-radius:14px;
 box-shadow:0 10px 40px rgba(0,0,0,.28);overflow:hidden;overflow:clip}
.panel[hidden],[hidden]{display:none!important}
/* Header, state line, tools and composer keep their size; only the log scrolls (min-height:0 lets a flex
   item shrink below its content), so the header and its × stay in view whatever the log holds. The log is
   the containing block of what is positioned in it (the rating's hidden radio inputs): otherwise those sat
   in the panel's own overflow, and focusing one scrolled the whole panel (header and × out of view). The
   panel clips instead of hiding its overflow, so nothing can scroll it. */
header,.state,.typing,.tools,form.compose{flex:none}
header{display:flex;align-items:center;gap:8px;padding:12px 14px;background:var(--brand);color:var(--brand-fg)}
header .t{flex:1;min-width:0}
header h2{font-size:16px;font-weight:650;margin:0}
header p{font-size:13px;margin:0;opacity:.9}
.x{border:0;background:transparent;color:inherit;width:36px;height:36px;border-radius:8px;font-size:22px;line-height:1}
.state{padding:8px 14px;font-size:13px;color:var(--muted);border-bottom:1px solid var(--line);min-height:34px}
.state.queued,.state.offline{background:var(--warn-bg);color:var(--warn-fg)}
.state.error{color:var(--err)}
.log{position:relative;flex:1 1 auto;min-height:0;overflow-y:auto;padding:12px 14px;display:flex;flex-direction:column;gap:8px;overscroll-behavior:contain}
.msg{max-width:85%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;
 background:var(--them);color:var(--them-fg);align-self:flex-start}
.msg[data-role=customer]{align-self:flex-end;background:var(--me);color:var(--me-fg);border-bottom-right-radius:4px}
.msg[data-role=assistant],.msg[data-role=agent]{border-bottom-left-radius:4px}
.msg[data-role=agent]{position:relative;margin-left:36px;max-width:calc(85% - 36px);background:var(--person);
 color:var(--person-fg);border:1px solid var(--person-line)}
.msg[data-role=agent] .who{color:inherit}
.msg[data-role=agent] .who .tag{font-weight:400;opacity:.8}
.avatar{position:absolute;left:-36px;bottom:0;width:28px;height:28px;border-radius:50%;display:flex;
 align-items:center;justify-content:center;background:var(--avatar);color:var(--avatar-fg);font-size:13px;font-weight:700}
.who{display:block;font-size:12px;font-weight:600;color:var(--muted);margin-bottom:2px}
.msg[data-role=customer] .who{display:none}
.msg.pending{opacity:.75}
.msg.failed{outline:2px solid var(--err)}
.msg .note{display:block;font-size:12px;margin-top:4px}
.msg .sources{display:block;font-size:12px;margin-top:6px;color:var(--muted);white-space:normal}
.msg .sources a{color:inherit;text-decoration:underline}
.msg .sources .sep{padding:0 4px}
.msg.streaming .body::after{content:"▍";animation:blink 1s steps(1) infinite}
@keyframes blink{50%{opacity:0}}
@media (prefers-reduced-motion:reduce){.msg.streaming .body::after{animation:none}}
.sys{align-self:center;font-size:12px;color:var(--muted);text-align:center}
.typing{padding:0 14px 6px;font-size:13px;color:var(--muted);min-height:20px}
.welcome{color:var(--muted);font-size:14px}
.csat{flex:none;margin:4px 0;padding:12px;border:1px solid var(--line);border-radius:12px;background:var(--bg)}
.csat fieldset{border:0;padding:0;margin:0}
.csat legend{font-weight:650;padding:0;margin-bottom:2px}
.csat .hint{font-size:12px;color:var(--muted);margin:0 0 8px}
.stars{display:flex;gap:6px}
.stars label{flex:1;position:relative}
.stars input{position:absolute;opacity:0;width:1px;height:1px}
.stars span{display:block;text-align:center;padding:8px 0;border:1px solid var(--line);border-radius:8px;font-weight:600}
.stars input:checked+span{background:var(--brand);color:var(--brand-fg);border-color:var(--brand)}
.stars input:focus-visible+span{outline:3px solid var(--focus);outline-offset:2px}
.csat textarea{width:100%;margin-top:8px;min-height:54px;padding:6px 8px;border:1px solid var(--line);border-radius:8px;
 background:var(--bg);color:var(--fg);resize:vertical}
.csat .actions{margin-top:8px;display:flex;justify-content:flex-end}
.primary{border:0;border-radius:8px;padding:8px 14px;background:var(--brand);color:var(--brand-fg);font-weight:600}
.primary:disabled{opacity:.5;cursor:default}
.contact{flex:none;margin:8px 14px 0;padding:10px 12px;border:1px solid var(--line);border-radius:12px;background:var(--warn-bg);color:var(--warn-fg)}
.contact p{margin:0 0 8px;font-size:14px}
.contact .row{display:flex;gap:8px;flex-wrap:wrap}
.contact input{flex:1 1 160px;min-width:0;padding:8px 10px;border:1px solid var(--line);border-radius:8px;background:var(--bg);color:var(--fg)}
.contact .err{color:var(--err);font-size:13px;margin:6px 0 0}
.contact.done p{margin:0}
.tools{display:flex;gap:8px;padding:6px 14px 0;flex-wrap:wrap}
.link{border:1px solid var(--line);background:transparent;border-radius:999px;padding:4px 10px;font-size:13px;color:var(--fg)}
form.compose{display:flex;gap:8px;padding:10px 14px 12px;align-items:flex-end}
.attach{flex:none;width:40px;height:40px;border:1px solid var(--line);border-radius:10px;background:transparent;
 color:var(--fg);display:grid;place-items:center;cursor:pointer}
.attach svg{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2}
.attach:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.msg .atts{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px;white-space:normal}
.msg .atts img{display:block;max-width:100%;max-height:180px;border-radius:8px;background:var(--bg)}
.msg .atts a{color:inherit}
.msg .atts .file{display:inline-block;padding:6px 10px;border:1px solid currentColor;border-radius:8px;text-decoration:none}
.msg .atts .ext{font-size:11px;font-weight:700;letter-spacing:.04em;padding:1px 4px;border-radius:4px;border:1px solid currentColor}
.compose textarea{flex:1;resize:none;min-height:40px;max-height:120px;padding:9px 10px;border:1px solid var(--line);
 border-radius:10px;background:var(--bg);color:var(--fg)}
.compose textarea::placeholder{color:var(--muted);opacity:1}
@media (max-width:480px){:host{right:12px!important;bottom:12px!important}
 .panel{position:fixed;inset:0;width:100vw;height:100%;max-height:100dvh;border-radius:0;border:0}
 .root.open .launcher{display:none}}
`;

  const ICON =
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 1-2z"/></svg>';

  const CLIP =
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"/></svg>';

  /* ---------- the element ---------- */
  class SwitchboardWidget extends HTMLElement {
    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `<style>${CSS}</style>
<div class="root auto">
 <section class="panel" role="dialog" aria-modal="false" aria-labelledby="sb-title" hidden id="sb-panel">
  <header><div class="t"><h2 id="sb-title"></h2><p class="sub"></p></div>
   <button type="button" class="x" data-act="close">×</button></header>
  <div class="state" role="status" aria-live="polite"></div>
  <div class="log" role="log" aria-live="polite" aria-relevant="additions text" tabindex="0"><p class="welcome"></p></div>
  <div class="typing" aria-live="polite"></div>
  <form class="contact" novalidate hidden><p class="offer"></p>
   <div class="row"><label class="sr" for="sb-email"></label>
    <input id="sb-email" type="email" autocomplete="email" inputmode="email" maxlength="254" required>
    <button type="submit" class="primary"></button></div>
   <p class="err" role="alert" hidden></p></form>
  <div class="tools"><button type="button" class="link" data-act="human"></button>
   <button type="button" class="link" data-act="end"></button></div>
  <form class="compose"><label class="sr" for="sb-input"></label>
   <button type="button" class="attach">${CLIP}</button>
   <input type="file" class="sr" tabindex="-1" accept="${ATTACH_ACCEPT}" hidden>
   <textarea id="sb-input" rows="1" maxlength="4000"></textarea>
   <button type="submit" class="primary"></button></form>
 </section>
 <button type="button" class="launcher" aria-controls="sb-panel" aria-expanded="false">${ICON}<span class="badge" hidden></span></button>
</div>`;
      this.$ = (sel) => root.querySelector(sel);
    }
  }
  if (!customElements.get("switchboard-widget")) customElements.define("switchboard-widget", SwitchboardWidget);

  const el = document.createElement("switchboard-widget");
  const $ = (sel) => el.$(sel);
  const ui = {
    root: $(".root"), panel: $(".panel"), launcher: $(".launcher"), badge: $(".badge"), state: $(".state"),
    log: $(".log"), typing: $(".typing"), input: $("textarea"), form: $("form.compose"),
    human: $("[data-act=human]"), end: $("[data-act=end]"), welcome: $(".welcome"),
    contact: $("form.contact"), contactInput: $("#sb-email"), contactError: $("form.contact .err"),
    attach: $("button.attach"), file: $("input[type=file]"),
  };
  let contactPending = false; // a `contact` frame awaits its answer (an error frame is about it)

  /* ---------- conversation state (this page view) ---------- */
  const seen = new Set(); // seqs rendered (dedupe across resume and live frames)
  const finished = new Set(); // reply_ids whose persisted message arrived: late deltas are ignored
  const listeners = { message: [], status: [], open: [], close: [] };
  let convo = { state: "bot", position: null, agent: null, lastStatusSeq: 0 };
  let cursor = 0;
  const seenAtLoad = saved.lastSeq; // messages after this arrived while the page was away: unread
  let ws = null;
  let connected = false;
  let attempt = 0;
  let retryTimer = null;
  let retryAt = 0;
  let fatal = false; // the server refused this site: stop retrying until reset()
  let refused = false; // the browser blocked the session request (CORS) while the server is up: keep retrying
  let lastTypingSent = 0;
  let typingTimer = null;
  let unread = 0;
  let theme = script.dataset.theme || "auto";

  function emit(name, payload) {
    for (const fn of listeners[name] || []) {
      try {
        fn(payload);
      } catch (err) {
        console.error("Switchboard listener failed", err);
      }
    }
  }

  /* ---------- rendering ---------- */
  function applyTexts() {
    ui.launcher.setAttribute("aria-label", saved.open ? t("close") : t("open"));
    $(".x").setAttribute("aria-label", t("close"));
    $("#sb-title").textContent = t("title");
    $(".sub").textContent = t("subtitle");
    $("label.sr").textContent = t("placeholder");
    ui.input.placeholder = t("placeholder");
    ui.attach.setAttribute("aria-label", t("attach"));
    ui.attach.title = t("attach");
    $("form.compose .primary").textContent = t("send");
    ui.human.textContent = t("human");
    ui.end.textContent = t("end");
    ui.welcome.textContent = t("welcome");
    $("label[for=sb-email]").textContent = t("emailLabel");
    ui.contactInput.placeholder = t("emailLabel");
    $("form.contact .primary").textContent = t("emailSend");
    ui.root.lang = locale;
    renderState();
  }

  function applyTheme() {
    ui.root.classList.remove("auto", "light", "dark");
    ui.root.classList.add(["light", "dark"].includes(theme) ? theme : "auto");
  }

  function renderState() {
    let text;
    let cls = convo.state;
    if (fatal || refused) {
      text = t("unavailable");
      cls = "error";
    } else if (!connected && attempt > 0) {
      const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      text = navigator.onLine === false ? t("offlineNow") : t("offline", { s });
      cls = "offline";
    } else if (!connected) {
      text = t("connecting");
    } else if (convo.state === "queued") {
      text = convo.position ? t("queuedPos", { n: convo.position }) : t("queued");
      if (convo.noOne) text = t("queuedNoOne", { waiting: text.replace(/…$/, "") });
    } else if (convo.state === "agent") {
      text = convo.agent ? t("agent", { name: convo.agent }) : t("agentAnon");
    } else if (convo.state === "resolved") {
      text = t("resolved");
    } else {
      text = t("bot");
    }
    if (ui.state.textContent !== text) ui.state.textContent = text;
    ui.state.className = `state ${cls}`;
    ui.state.dataset.state = cls;
    // Asking for a person only makes sense while the bot has the conversation: not while one is awaited
    // or helping, and not once it is resolved (the server would refuse it; writing again reopens it).
    ui.human.hidden = convo.state !== "bot" || fatal || refused;
    ui.end.hidden = convo.state === "resolved" || fatal || refused; // chat unavailable: nothing to end
    ui.human.parentElement.hidden = ui.human.hidden && ui.end.hidden; // no empty row above the composer
    renderContact();
  }

  // Nobody can answer (docs/protocol.md "Nobody can answer"): offer to leave an address for a reply by
  // e-mail while the conversation waits, and say where the answer goes once one was left.
  function renderContact() {
    const waiting = connected && !fatal && !refused && (convo.state === "queued" || convo.state === "agent");
    const offer = waiting && convo.state === "queued" && convo.noOne && convo.emailReply;
    const show = (offer || (waiting && saved.contactEmail)) && !fatal;
    ui.contact.hidden = !show;
    if (!show) return;
    const done = Boolean(saved.contactEmail);
    ui.contact.classList.toggle("done", done);
    $("form.contact .offer").textContent = done ? t("emailSaved", { email: saved.contactEmail }) : t("emailOffer");
    $("form.contact .row").hidden = done;
    if (done) ui.contactError.hidden = true;
  }

  function authorLabel(frame) {
    if (frame.role === "agent") return personName(frame.author?.name) || t("agentGeneric");
    if (frame.role === "assistant") return t("assistant");
    return t("you");
  }

  function bubble(role, text, attrs) {
    const node = document.createElement("div");
    node.className = "msg";
    node.dataset.role = role;
    for (const [k, v] of Object.entries(attrs)) if (v != null) node.dataset[k] = String(v);
    const who = document.createElement("span");
    who.className = "who";
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = text;
    node.append(who, body);
    return node;
  }

  // Persisted items are kept in seq order even when a live frame overtakes a replayed one.
  function placeBySeq(node, seq) {
    const after = [...ui.log.querySelectorAll("[data-seq]")].find((n) => Number(n.dataset.seq) > seq);
    if (after) ui.log.insertBefore(node, after);
    else insertBeforeTransient(node);
  }

  // Unsequenced items (pending messages, a reply being streamed, the CSAT form) stay at the bottom.
  function insertBeforeTransient(node) {
    const firstTransient = ui.log.querySelector(".msg:not([data-seq]), .csat");
    ui.log.insertBefore(node, firstTransient);
  }

  function scrollDown() {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function noteUnread(seq) {
    if (saved.open || seq <= seenAtLoad) return;
    unread += 1;
    ui.badge.hidden = false;
    ui.badge.textContent = String(unread);
  }

  /* ---------- frames from the server ---------- */
  function onFrame(frame) {
    switch (frame.type) {
      case "ack":
        return onAck(frame);
      case "delta":
        return onDelta(frame);
      case "reply_aborted":
        return onAborted(frame);
      case "message":
        return onMessage(frame);
      case "status":
        return onStatus(frame);
      case "typing":
        return onTyping(frame);
      case "rating_request":
        return showRating(convo.lastStatusSeq);
      case "error":
        return onError(frame);
      case "contact_saved":
        return onContactSaved(frame);
      default:
        return undefined; // frames added by later servers are ignored
    }
  }

  // cursor: highest seq with nothing missing below it, what `resume` asks after. A new page view starts
  // at 0 so the transcript is rendered again; saved.lastSeq remembers what this browser has seen.
  function markSeen(seq) {
    seen.add(seq);
    while (seen.has(cursor + 1)) cursor += 1;
    if (cursor > saved.lastSeq) saved.lastSeq = cursor;
    persist();
  }

  function onAck(frame) {
    const idx = saved.outbox.findIndex((m) => m.client_id === frame.client_id);
    if (idx >= 0) saved.outbox.splice(idx, 1);
    persist();
    const node = ui.log.querySelector(`.msg[data-client-id="${CSS_ESCAPE(frame.client_id)}"]:not([data-seq])`);
    if (!node) return;
    if (seen.has(frame.seq)) {
      node.remove(); // the stored copy is already on screen (replayed before this ack)
      return;
    }
    node.classList.remove("pending");
    node.dataset.seq = String(frame.seq);
    node.remove();
    placeBySeq(node, frame.seq);
    markSeen(frame.seq);
  }

  function onDelta(frame) {
    if (finished.has(frame.reply_id)) return;
    let node = ui.log.querySelector(`.msg.streaming[data-reply-id="${CSS_ESCAPE(frame.reply_id)}"]`);
    if (!node) {
      node = bubble("assistant", "", { replyId: frame.reply_id });
      node.classList.add("streaming");
      node.setAttribute("aria-busy", "true");
      node.querySelector(".who").textContent = t("assistant");
      insertBeforeTransient(node);
    }
    node.querySelector(".body").textContent += frame.text;
    hideTyping();
    scrollDown();
  }

  function onAborted(frame) {
    const node = ui.log.querySelector(`.msg.streaming[data-reply-id="${CSS_ESCAPE(frame.reply_id)}"]`);
    if (node) node.remove();
  }

  function onMessage(frame) {
    if (seen.has(frame.seq)) {
      // Our own message, placed by its ack: the stored copy completes it (once) for `on("message")`.
      const mine = ui.log.querySelector(`.msg[data-seq="${frame.seq}"][data-client-id]:not([data-id])`);
      if (mine) {
        mine.dataset.id = frame.id;
        emit("message", frame);
      }
      return;
    }
    let node = null;
    if (frame.reply_id) {
      finished.add(frame.reply_id);
      node = ui.log.querySelector(`.msg.streaming[data-reply-id="${CSS_ESCAPE(frame.reply_id)}"]`);
    }
    if (node) {
      // Same element, final text: no remove/insert, so the streamed reply does not flicker.
      node.classList.remove("streaming");
      node.removeAttribute("aria-busy");
      const body = node.querySelector(".body");
      if (body.textContent !== frame.text) body.textContent = frame.text;
      node.dataset.seq = String(frame.seq);
      node.dataset.id = frame.id;
      renderSources(node, frame);
      renderAttachments(node, frame.attachments);
    } else {
      node = bubble(frame.role, frame.text, { seq: frame.seq, id: frame.id, replyId: frame.reply_id });
      const label = authorLabel(frame);
      node.querySelector(".who").textContent = label;
      if (frame.role === "agent") {
        // A person, not the bot: their initial in a round avatar beside a bubble of its own colour.
        const avatar = document.createElement("span");
        avatar.className = "avatar";
        avatar.setAttribute("aria-hidden", "true");
        avatar.textContent = Array.from(label)[0].toUpperCase();
        node.prepend(avatar);
      }
      renderSources(node, frame);
      renderAttachments(node, frame.attachments);
      placeBySeq(node, frame.seq);
    }
    markSeen(frame.seq);
    if (frame.role === "agent" || frame.role === "assistant") {
      hideTyping();
      noteUnread(frame.seq);
    }
    scrollDown();
    emit("message", frame);
  }

  // Files a message carries: an image as a thumbnail linking to the full file, a PDF as a download link.
  // Loaded with the session token (an <img> sends no headers); names are text, never HTML.
  function attachmentUrl(att) {
    const url = new URL(`api/v1/widget/attachments/${encodeURIComponent(att.id)}`, API);
    url.searchParams.set("token", saved.token || "");
    return url.href;
  }

  function renderAttachments(node, attachments) {
    if (!Array.isArray(attachments) || !attachments.length || node.querySelector(".atts")) return;
    const box = document.createElement("span");
    box.className = "atts";
    for (const att of attachments) {
      if (!att || typeof att.id !== "string") continue;
      const link = document.createElement("a");
      link.href = attachmentUrl(att);
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      if (att.kind === "image") {
        const img = document.createElement("img");
        img.src = link.href;
        img.alt = t("attachmentImage", { name: String(att.name || "") });
        img.loading = "lazy";
        if (att.width && att.height) {
          img.width = Math.min(att.width, 240);
          img.height = Math.round((img.width * att.height) / att.width);
        }
        link.append(img);
      } else {
        link.className = "file";
        const ext = document.createElement("span");
        ext.className = "ext";
        ext.textContent = "PDF";
        link.append(ext, ` ${String(att.name || "file")}`);
      }
      box.append(link);
    }
    node.append(box);
  }

  // "Source: <section>" under a bot answer, where the admin lets this widget key show it (the session says
  // so). Text only, never HTML; a link only for an http(s) url, opened in a new tab without an opener.
  function renderSources(node, frame) {
    if (!saved.showSources || frame.role !== "assistant" || !Array.isArray(frame.sources)) return;
    const items = [];
    const seenTitles = new Set();
    for (const src of frame.sources) {
      const title = typeof src?.section === "string" ? src.section.trim() : "";
      if (!title || seenTitles.has(title) || items.length >= MAX_SOURCES) continue;
      seenTitles.add(title);
      items.push({ title, url: safeUrl(src.url) });
    }
    if (!items.length || node.querySelector(".sources")) return;
    const line = document.createElement("span");
    line.className = "sources";
    line.append(document.createTextNode(`${t("source")} `));
    items.forEach((item, i) => {
      if (i) {
        const sep = document.createElement("span");
        sep.className = "sep";
        sep.textContent = "·";
        line.append(sep);
      }
      let el;
      if (item.url) {
        el = document.createElement("a");
        el.href = item.url;
        el.target = "_blank";
        el.rel = "noopener noreferrer";
      } else {
        el = document.createElement("span");
      }
      el.className = "source";
      el.textContent = item.title;
      line.append(el);
    });
    node.append(line);
  }

  function safeUrl(url) {
    if (typeof url !== "string") return null;
    try {
      const parsed = new URL(url);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function onStatus(frame) {
    const repeat = seen.has(frame.seq); // a queue position update re-sends the last status' seq
    if (frame.seq >= convo.lastStatusSeq) {
      convo = {
        state: frame.state,
        position: frame.queue_position ?? null,
        agent: frame.agent ? personName(frame.agent.name) : frame.state === "agent" ? convo.agent : null,
        // A queue-position update repeats the seq without the handoff's fields: keep what it said.
        // Whether someone can answer: `agents_available` (presence and business hours); servers before it
        // sent only `agents_online`. A queue-position update without either keeps what was said.
        noOne:
          frame.state === "queued" &&
          (frame.agents_available !== undefined
            ? frame.agents_available === false
            : frame.agents_online === undefined && repeat
              ? convo.noOne
              : frame.agents_online === false),
        emailReply:
          frame.state === "queued" &&
          (frame.agents_available === undefined && repeat ? convo.emailReply : frame.email_reply === true),
        lastStatusSeq: frame.seq,
      };
      renderState();
      if (frame.state === "resolved") showRating(frame.seq);
      else hideRating();
    }
    if (!repeat) {
      const line = document.createElement("p");
      line.className = "sys";
      line.dataset.seq = String(frame.seq);
      line.textContent = systemLine(frame);
      placeBySeq(line, frame.seq);
      markSeen(frame.seq);
      scrollDown();
    }
    emit("status", { state: frame.state, queuePosition: frame.queue_position ?? null, agent: frame.agent || null, seq: frame.seq });
  }

  function systemLine(frame) {
    if (frame.state === "queued") return handoffLine(frame);
    if (frame.state === "agent") {
      const name = personName(frame.agent?.name);
      return name ? t("sysAgent", { name }) : t("sysAgentAnon");
    }
    if (frame.state === "resolved") return t("sysResolved");
    return t("sysBot");
  }

  function onTyping(frame) {
    if (frame.role !== "agent" && frame.role !== "assistant") return;
    const name = frame.role === "agent" ? convo.agent || t("agentGeneric") : t("assistant");
    ui.typing.textContent = t("typing", { name });
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, TYPING_SHOW_MS);
  }

  function hideTyping() {
    clearTimeout(typingTimer);
    ui.typing.textContent = "";
  }

  function onContactSaved(frame) {
    contactPending = false;
    saved.contactEmail = frame.email;
    persist();
    renderContact();
  }

  function onError(frame) {
    if (contactPending && !frame.client_id && (frame.code === "bad_frame" || frame.code === "email_unavailable")) {
      contactPending = false;
      ui.contactError.textContent = frame.code === "bad_frame" ? t("emailInvalid") : frame.message;
      ui.contactError.hidden = false;
      ui.contactInput.setAttribute("aria-invalid", "true");
      ui.contactInput.focus();
      return;
    }
    if (frame.code === "unauthorized") {
      // The token expired or the secret changed: a new session (the server keeps the conversation if it can).
      saved.token = null;
      persist();
      return;
    }
    if (frame.client_id) {
      const msg = saved.outbox.find((m) => m.client_id === frame.client_id);
      if (frame.code === "rate_limited" && msg) {
        // A shared limit says when (retry_after, seconds); the socket's own burst limit refills in about 2 s.
        const waitMs = Number.isInteger(frame.retry_after) ? frame.retry_after * 1000 : 2000;
        setTimeout(() => sendFrame(messageFrame(msg)), waitMs);
        return;
      }
      saved.outbox = saved.outbox.filter((m) => m.client_id !== frame.client_id);
      persist();
      const node = ui.log.querySelector(`.msg[data-client-id="${CSS_ESCAPE(frame.client_id)}"]`);
      if (node) {
        node.classList.remove("pending");
        node.classList.add("failed");
        const note = document.createElement("span");
        note.className = "note";
        note.textContent = t("failed", { reason: frame.message });
        node.append(note);
      }
      return;
    }
    ui.typing.textContent = frame.message;
  }

  /* ---------- CSAT ---------- */
  function hideRating() {
    const form = ui.log.querySelector(".csat");
    if (form) form.remove();
  }

  function showRating(resolvedSeq) {
    if (ui.log.querySelector(".csat") || saved.rated.includes(resolvedSeq)) return;
    const form = document.createElement("form");
    form.className = "csat";
    const stars = [1, 2, 3, 4, 5]
      .map((n) => `<label><input type="radio" name="score" value="${n}" aria-label="${t("star", { n })}"><span aria-hidden="true">${n}</span></label>`)
      .join("");
    form.innerHTML = `<fieldset><legend></legend><p class="hint"></p><div class="stars">${stars}</div></fieldset>
<label class="sr" for="sb-comment"></label><textarea id="sb-comment" maxlength="2000"></textarea>
<div class="actions"><button type="submit" class="primary" disabled></button></div>`;
    form.querySelector("legend").textContent = t("rateTitle");
    form.querySelector(".hint").textContent = t("rateHint");
    form.querySelector("label.sr").textContent = t("comment");
    form.querySelector("textarea").placeholder = t("comment");
    const submit = form.querySelector("button");
    submit.textContent = t("submit");
    form.addEventListener("change", () => {
      submit.disabled = !form.querySelector("input:checked");
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const picked = form.querySelector("input:checked");
      if (!picked) return;
      const comment = form.querySelector("textarea").value.trim();
      const frame = { type: "rating", score: Number(picked.value) };
      if (comment) frame.comment = comment;
      if (!sendFrame(frame)) saved.pendingRating = frame; // offline: sent after the next resume
      saved.rated.push(resolvedSeq);
      persist();
      const thanks = document.createElement("p");
      thanks.className = "sys thanks";
      thanks.setAttribute("role", "status");
      thanks.textContent = t("thanks");
      form.replaceWith(thanks);
      ui.input.focus();
    });
    ui.log.append(form);
    scrollDown();
  }

  /* ---------- sending ---------- */
  function newClientId() {
    return crypto.randomUUID ? crypto.randomUUID() : `c${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  }

  function messageFrame(m) {
    const frame = { type: "message", client_id: m.client_id, text: m.text };
    if (Array.isArray(m.attachments) && m.attachments.length) frame.attachments = m.attachments.map((a) => a.id);
    return frame;
  }

  function sendFrame(frame) {
    if (!connected) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function sendMessage(text, attachments) {
    const msg = { client_id: newClientId(), text };
    if (attachments && attachments.length) msg.attachments = attachments;
    saved.outbox.push(msg);
    persist();
    renderPending(msg);
    sendFrame(messageFrame(msg));
    scrollDown();
  }

  function renderPending(msg) {
    const node = bubble("customer", msg.text, { clientId: msg.client_id });
    node.classList.add("pending");
    node.querySelector(".who").textContent = t("you");
    renderAttachments(node, msg.attachments);
    insertBeforeTransient(node);
  }

  // Upload the chosen file (the raw bytes; the server decides what it is), then send it in a message whose
  // text is what the customer typed, or the file's name.
  async function attachFile(file) {
    const name = file.name || "file";
    ui.typing.textContent = t("uploading", { name });
    try {
      if (!saved.token) await openSession();
      const url = new URL("api/v1/widget/attachments", API);
      url.searchParams.set("token", saved.token);
      url.searchParams.set("filename", name);
      const resp = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": file.type || "application/octet-stream" },
        body: file,
        credentials: "omit",
      });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error(body.error?.message || `HTTP ${resp.status}`);
      ui.typing.textContent = "";
      const text = ui.input.value.trim() || body.name || name;
      ui.input.value = "";
      sendMessage(text, [body]);
    } catch (err) {
      ui.typing.textContent = t("attachFailed", { name, reason: err.message || String(err) });
    }
  }

  /* ---------- connection ---------- */
  async function openSession() {
    const body = { widget_key: KEY, visitor: {} };
    const v = saved.visitor || {};
    if (v.id) body.visitor.id = String(v.id);
    if (v.name) body.visitor.name = String(v.name);
    if (v.email) body.visitor.email = String(v.email);
    if (v.identityHash) body.visitor.identity_hash = String(v.identityHash);
    if (saved.token) body.token = saved.token;
    let resp;
    try {
      resp = await fetch(new URL("api/v1/widget/sessions", API), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "omit",
      });
    } catch (err) {
      // A page can't tell a CORS refusal from a network failure. If the server answers a no-cors request
      // it is up, so this site's origin is not allowed: say so. Not final (a proxy's error page during a
      // deploy has no CORS headers either), so the backoff keeps trying.
      refused = await reachable();
      throw err;
    }
    refused = false;
    if (resp.status === 403 || resp.status === 400) {
      fatal = true;
      throw new Error(`session refused (${resp.status})`);
    }
    if (!resp.ok) throw new Error(`session failed (${resp.status})`);
    const session = await resp.json();
    if (saved.conversationId && saved.conversationId !== session.conversation_id) clearConversation();
    saved.token = session.token;
    saved.showSources = session.show_sources === true;
    saved.expiresAt = Date.parse(session.expires_at) || 0;
    saved.conversationId = session.conversation_id;
    persist();
  }

  async function reachable() {
    try {
      await fetch(new URL("healthz", API), { mode: "no-cors", credentials: "omit", cache: "no-store" });
      return true;
    } catch {
      return false;
    }
  }

  async function connect() {
    clearTimeout(retryTimer);
    if (fatal || ws) return;
    try {
      // A token near its expiry is renewed with itself, which keeps the same conversation.
      if (!saved.token || Date.now() > saved.expiresAt - RENEW_BEFORE_MS) await openSession();
    } catch (err) {
      return scheduleReconnect(err);
    }
    const socket = new WebSocket(`${WS_BASE}api/v1/widget/ws?token=${encodeURIComponent(saved.token)}`);
    ws = socket;
    socket.onopen = () => {
      connected = true;
      attempt = 0;
      // Unacknowledged messages first: their acks then arrive before the replay, so a message stored
      // before the drop is matched to its pending bubble by seq instead of being shown twice.
      for (const m of saved.outbox) socket.send(JSON.stringify(messageFrame(m)));
      socket.send(JSON.stringify({ type: "resume", after: cursor }));
      if (saved.pendingRating) {
        socket.send(JSON.stringify(saved.pendingRating));
        delete saved.pendingRating;
        persist();
      }
      renderState();
    };
    socket.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      onFrame(frame);
    };
    socket.onclose = () => {
      if (ws !== socket) return;
      ws = null;
      connected = false;
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    renderState();
    if (fatal) return;
    attempt += 1;
    // Exponential backoff with jitter: a restarted server is not hit by every widget at the same instant.
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    retryAt = Date.now() + delay;
    retryTimer = setTimeout(connect, delay);
    renderState();
  }

  function clearConversation() {
    saved.lastSeq = 0;
    cursor = 0;
    saved.outbox = [];
    saved.rated = [];
    delete saved.pendingRating;
    saved.contactEmail = null;
    seen.clear();
    finished.clear();
    convo = { state: "bot", position: null, agent: null, lastStatusSeq: 0 };
    for (const n of ui.log.querySelectorAll(".msg, .sys, .csat")) n.remove();
  }

  /* ---------- UI events ---------- */
  function setOpen(open) {
    if (saved.open === open) return;
    saved.open = open;
    persist();
    renderOpen();
    if (open) ui.input.focus();
    else if (el.shadowRoot.activeElement) ui.launcher.focus();
    emit(open ? "open" : "close", {});
  }

  function renderOpen() {
    const open = saved.open;
    ui.panel.hidden = !open;
    ui.root.classList.toggle("open", open); // small screens: the full-screen panel replaces the launcher
    ui.launcher.setAttribute("aria-expanded", String(open));
    ui.launcher.setAttribute("aria-label", open ? t("close") : t("open"));
    if (open) {
      unread = 0;
      ui.badge.hidden = true;
      scrollDown();
    }
  }

  ui.launcher.addEventListener("click", () => setOpen(!saved.open));
  $(".x").addEventListener("click", () => setOpen(false));
  ui.panel.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") setOpen(false);
  });
  ui.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = ui.input.value.trim();
    if (!text) return;
    ui.input.value = "";
    ui.input.style.height = "";
    sendMessage(text);
  });
  ui.attach.addEventListener("click", () => ui.file.click());
  ui.file.addEventListener("change", () => {
    const file = ui.file.files && ui.file.files[0];
    ui.file.value = "";
    if (file) attachFile(file);
  });
  ui.input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.form.requestSubmit();
    }
  });
  ui.input.addEventListener("input", () => {
    ui.input.style.height = "auto";
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 120)}px`;
    const now = Date.now();
    if (now - lastTypingSent > TYPING_SEND_EVERY_MS && sendFrame({ type: "typing" })) lastTypingSent = now;
  });
  ui.contact.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const address = ui.contactInput.value.trim();
    // The server checks the address (a `bad_frame` error); this only spares an obviously empty one.
    if (!address || !ui.contactInput.checkValidity()) {
      ui.contactError.textContent = t("emailInvalid");
      ui.contactError.hidden = false;
      ui.contactInput.setAttribute("aria-invalid", "true");
      return;
    }
    ui.contactError.hidden = true;
    ui.contactInput.removeAttribute("aria-invalid");
    if (sendFrame({ type: "contact", email: address })) contactPending = true;
  });
  ui.contactInput.addEventListener("input", () => {
    ui.contactError.hidden = true;
    ui.contactInput.removeAttribute("aria-invalid");
  });
  ui.human.addEventListener("click", () => sendFrame({ type: "request_human" }));
  ui.end.addEventListener("click", () => sendFrame({ type: "close" }));
  window.addEventListener("online", () => {
    if (!connected) connect();
  });
  window.addEventListener("offline", renderState);
  setInterval(() => {
    if (!connected && attempt > 0) renderState(); // the countdown in the offline message
  }, 1000);

  const CSS_ESCAPE = (s) => (window.CSS && CSS.escape ? CSS.escape(String(s)) : String(s).replace(/["\\]/g, "\\$&"));

  /* ---------- public API ---------- */
  const api = {
    version: "1",
    open: () => setOpen(true),
    close: () => setOpen(false),
    identify(visitor) {
      const next = { id: visitor?.id, name: visitor?.name, email: visitor?.email, identityHash: visitor?.identityHash };
      const before = JSON.stringify(saved.visitor || {});
      const changedPerson = saved.visitor?.id && next.id && saved.visitor.id !== next.id;
      saved.visitor = next;
      persist();
      if (changedPerson) api.reset(); // another person on this browser: never show them the old chat
      else if (saved.token && JSON.stringify(next) !== before) openSession().catch(() => {}); // tell agents who it is
    },
    setLocale(tag) {
      locale = pickLocale(tag);
      applyTexts();
    },
    setTheme(name) {
      theme = name;
      applyTheme();
    },
    on(name, fn) {
      if (listeners[name] && typeof fn === "function") listeners[name].push(fn);
      return api;
    },
    reset() {
      // Forget the conversation on this browser (logout): a new session starts a new conversation.
      const visitor = saved.visitor;
      clearConversation();
      Object.assign(saved, fresh(), { visitor, open: saved.open });
      persist();
      fatal = false;
      refused = false;
      const old = ws;
      ws = null;
      connected = false;
      if (old) old.close();
      attempt = 0;
      connect();
    },
  };

  // Calls made before this script loaded: `window.Switchboard = {q: [[name, args], ...]}` (see docs).
  const early = window.Switchboard && Array.isArray(window.Switchboard.q) ? window.Switchboard.q : [];
  window.Switchboard = api;

  function start() {
    applyTheme();
    applyTexts();
    document.body.append(el);
    for (const m of saved.outbox) renderPending(m);
    renderOpen(); // open or closed as the visitor left it on the previous page
    for (const [name, args] of early) if (typeof api[name] === "function") api[name](...args);
    connect();
  }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
