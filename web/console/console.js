// Switchboard agent console: plain browser JavaScript, no framework, no build step.
//
// It talks to the agent API (/api/v1/agent/...) with the bearer token from login, kept by session.js (in
// sessionStorage, so a closed tab forgets it; shared with the reports and examples pages), and follows the agent WebSocket for live queue, transcript, typing, notes
// and drafts. The WebSocket reconnects with jittered exponential backoff; after a reconnect the open
// conversation is reloaded from HTTP so nothing missed while offline is lost.
"use strict";

(() => {
  const API = "/api/v1/agent";
  const session = window.SwitchboardSession; // session.js: the sign-in shared with reports and examples
  // At most one typing notice per this interval: enough for the customer's indicator, cheap for the server.
  const TYPING_THROTTLE_MS = 2000;
  // The customer's typing frames are ephemeral; without a new one the indicator goes away after this.
  const CUSTOMER_TYPING_HIDE_MS = 5000;
  const RECONNECT_BASE_MS = 500;
  const RECONNECT_MAX_MS = 15000;

  // Reason codes in words, so the agent sees at once why the conversation is theirs. The server sends
  // its own `reason_text` in the packet (preferred); this covers queue rows and older servers.
  const REASONS = {
    wants_human: "Customer asked for a person",
    customer_request: "Customer pressed “talk to a person”",
    urgent: "Urgent (safety, fraud or money at stake)",
    not_helped: "Bot answers did not help",
    negative_sentiment: "Customer is upset",
    too_many_bot_turns: "Long conversation with the bot, not resolved",
    low_confidence: "Bot not confident enough to answer",
    draft_declined: "Bot declined: not covered by the policy",
    ungrounded: "Bot answer not grounded in the policy",
    draft_failed: "Model unavailable",
    timeout: "Answer took too long",
    lease_expired: "Previous agent disconnected",
  };
  const UNASSIGNED = {
    released: "Released back to the queue.",
    resolved: "Resolved: the customer was asked for a rating.",
    returned_to_bot: "Returned to the bot.",
    transferred: "This conversation was transferred to another agent.",
    lease_expired: "Your hold on this conversation expired; it went back to the queue.",
  };

  const TICKET_RESOLVED = "Resolved: the ticket is closed and its integration told.";

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  };

  const state = {
    token: session.token(),
    agent: session.agent(),
    socket: null,
    reconnectAttempt: 0,
    reconnectTimer: null,
    queue: [],
    mine: [],
    unread: new Set(),
    selected: null, // conversation id shown in the middle
    packet: null, // its handoff packet
    watching: null, // a queued conversation followed live over the socket
    seqNodes: new Map(), // seq -> transcript <li>, to dedupe and order events
    noteIds: new Set(),
    usedDrafts: new Set(),
    composerDraftId: null, // set while the composer holds (an edit of) the bot's draft
    lastTypingSentAt: 0,
    customerTypingTimer: null,
    knownQueueIds: new Set(),
    ownAction: null, // {id, at}: my own resolve/release/transfer, whose banner the echo must not replace
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = {};
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    // Paths are relative to the agent API; admin screens pass a full `/api/v1/admin/...` path.
    const res = await fetch(path.startsWith("/api/") ? path : API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) {
      let error = { code: `http_${res.status}`, message: res.statusText || "request failed" };
      try {
        error = (await res.json()).error || error;
      } catch {
        // not JSON: keep the status line
      }
      if (res.status === 401 && path !== "/login" && state.token) {
        // A revoked token (an admin deactivated the account or changed its role) says so.
        logout(
          /revoked/.test(error.message || "")
            ? "An admin changed or deactivated your account. Sign in again."
            : "Your session expired. Sign in again.",
        );
      }
      throw new ApiError(res.status, error.code, error.message);
    }
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // ---- feedback --------------------------------------------------------------------------------

  const { showAlert, announce } = window.SwitchboardFeedback; // feedback.js, loaded first

  function failed(err) {
    if (err instanceof ApiError && err.status === 401) return;
    showAlert(err instanceof ApiError ? err.message : `Something went wrong: ${err.message || err}`);
  }

  // ---- formatting ------------------------------------------------------------------------------

  const humanize = (code) => {
    if (!code) return "—";
    const words = String(code).replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  };
  const reasonText = (code, text) => text || REASONS[code] || humanize(code);
  const customerName = (customer) =>
    (customer && (customer.name || customer.email)) || "Visitor";

  // Tickets (filed over REST by an integration) sit in the same queue as chats. Their customer is not
  // on a live socket: a reply goes back through the integration (by e-mail for an e-mail ticket).
  const CHANNELS = { email: "Email", form: "Form", api: "API" };
  const isTicket = (item) => Boolean(item && item.kind === "ticket");
  const channelText = (ticket) => CHANNELS[ticket && ticket.channel] || humanize(ticket && ticket.channel);
  const ticketBadge = (ticket) => `Ticket · ${channelText(ticket)}`;
  const ticketSubject = (ticket) => (ticket && ticket.subject) || "Ticket";
  const replyTo = (ticket, customer) => (ticket && ticket.email) || (customer && customer.email) || "the customer";
  const viaWords = (ticket) =>
    ticket && ticket.channel === "email"
      ? "by e-mail"
      : ticket && ticket.channel === "form"
        ? "through the web form's integration"
        : "through the integration that filed it";
  function replyVia(ticket, customer) {
    if (ticket && ticket.channel === "email") {
      return `Replies are e-mailed to ${replyTo(ticket, customer)}, not shown live: write a complete answer.`;
    }
    return `Replies go back to ${replyTo(ticket, customer)} ${viaWords(ticket)}, not live: write a complete answer.`;
  }
  // A ticket's first customer message is "subject, blank line, body"; the subject is the title already.
  function ticketBodyOf(text) {
    const ticket = state.packet && state.packet.ticket;
    if (!ticket || !ticket.subject || typeof text !== "string") return text;
    const prefix = `${ticket.subject}\n\n`;
    return text.startsWith(prefix) ? text.slice(prefix.length) : text;
  }
  const previewOf = (item) => {
    const text = item.preview || "";
    const subject = item.ticket && item.ticket.subject;
    return subject && text.startsWith(subject) ? text.slice(subject.length).trim() : text;
  };

  function waitText(since) {
    if (!since) return "";
    const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000));
    if (Number.isNaN(seconds)) return "";
    if (seconds < 60) return `${seconds}s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, "0")}s`;
    return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
  }

  function clock(iso) {
    const date = iso ? new Date(iso) : null;
    if (!date || Number.isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // The server's `last_message` is the last event, which may be a status change rather than a message.
  const lastMessageText = (message) => {
    if (typeof message === "string") return message;
    if (!message) return "";
    return message.type === "status" ? statusText(message) : message.text || "";
  };

  // ---- login / logout --------------------------------------------------------------------------

  async function login(event) {
    event.preventDefault();
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    const error = $("login-error");
    error.hidden = true;
    if (!email || !password) {
      error.textContent = "Enter your email and password.";
      error.hidden = false;
      return;
    }
    $("login-submit").disabled = true;
    try {
      const result = await api("POST", "/login", { email, password });
      state.token = result.token;
      state.agent = result.agent;
      session.signedIn(result.token, result.agent);
      $("login-password").value = "";
      start();
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 401
          ? "Wrong email or password."
          : (err && err.message) || "Sign-in failed.";
      error.hidden = false;
    } finally {
      $("login-submit").disabled = false;
    }
  }

  function logout(message) {
    state.token = null;
    state.agent = null;
    session.signOut();
    clearTimeout(state.reconnectTimer);
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close(1000, "logout");
    state.queue = [];
    state.mine = [];
    state.unread.clear();
    closeConversation();
    document.dispatchEvent(new CustomEvent("switchboard:signed-out"));
    $("console-view").hidden = true;
    $("login-view").hidden = false;
    const error = $("login-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("login-email").focus();
  }

  async function start() {
    $("login-view").hidden = true;
    $("console-view").hidden = false;
    $("me").textContent = state.agent ? `${state.agent.name} (${state.agent.role})` : "";
    connect();
    const token = state.token;
    try {
      const me = await api("GET", "/me");
      if (state.token !== token) return; // signed out meanwhile: a late profile must not be stored again
      state.agent = { ...state.agent, ...me };
      session.setAgent(state.agent);
      $("me").textContent = `${me.name} (${me.role})`;
      // Knowledge, Evaluate, Examples and Reports are for admins only
      for (const link of document.querySelectorAll("[data-admin-link]")) link.hidden = me.role !== "admin";
    } catch (err) {
      failed(err);
      return;
    }
    await refreshMine();
    document.dispatchEvent(new CustomEvent("switchboard:signed-in", { detail: state.agent }));
  }

  // ---- live socket -----------------------------------------------------------------------------

  function setConnection(status, text) {
    const badge = $("connection");
    badge.dataset.state = status;
    badge.textContent = text;
  }

  function connect() {
    if (!state.token) return;
    clearTimeout(state.reconnectTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}${API}/ws?token=${encodeURIComponent(state.token)}`;
    const socket = new WebSocket(url);
    state.socket = socket;
    setConnection("connecting", state.reconnectAttempt ? "Reconnecting…" : "Connecting…");
    socket.addEventListener("open", () => {
      if (state.socket !== socket) return;
      const wasReconnect = state.reconnectAttempt > 0;
      state.reconnectAttempt = 0;
      setConnection("open", "Live");
      if (state.watching) sendFrame({ type: "watch", conversation_id: state.watching });
      if (wasReconnect) {
        refreshMine();
        if (state.selected) loadConversation(state.selected, { keepComposer: true });
      }
    });
    socket.addEventListener("message", (event) => {
      if (state.socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      handleFrame(frame);
    });
    let opened = false;
    socket.addEventListener("open", () => (opened = true));
    socket.addEventListener("close", (event) => {
      if (state.socket !== socket) return;
      state.socket = null;
      if (!state.token) return;
      if (event.code === 1008 || !opened) {
        // Refused (a bad token fails the handshake itself), or the server is down: find out whether the
        // token is still good; api() signs out on 401, anything else means try again later.
        api("GET", "/me").then(scheduleReconnect, (err) => {
          if (!(err instanceof ApiError && err.status === 401)) scheduleReconnect();
        });
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (!state.token) return;
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** state.reconnectAttempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    state.reconnectAttempt += 1;
    setConnection("closed", `Offline, retrying in ${Math.ceil(delay / 1000)}s`);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function sendFrame(frame) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify(frame));
    }
  }

  function handleFrame(frame) {
    const id = frame.conversation_id;
    // Every frame, for the console's other modules (notify.js), after this module has seen it.
    queueMicrotask(() => document.dispatchEvent(new CustomEvent("switchboard:live", { detail: frame })));
    switch (frame.type) {
      case "queue":
        onQueue(frame.items || []);
        break;
      case "assigned":
        onAssigned(id, frame.agent);
        break;
      case "unassigned":
        onUnassigned(id, frame.reason, frame.agent_id);
        break;
      case "event":
        onEvent(id, frame.event || {});
        break;
      case "typing":
        if (id === state.selected && frame.role !== "agent") showCustomerTyping();
        break;
      case "note":
        if (id === state.selected && frame.note) addNote(frame.note);
        break;
      case "draft":
        if (id === state.selected && state.packet) {
          state.packet.draft = frame.draft;
          renderDraft();
        }
        break;
      case "error":
        showAlert(frame.message || "The server refused a live update request.");
        break;
      default:
        // Other console screens (presence.js) listen for the rest; newer server frames are ignored.
        document.dispatchEvent(new CustomEvent("switchboard:frame", { detail: frame }));
        break;
    }
  }

  function onQueue(items) {
    const fresh = items.filter((item) => !state.knownQueueIds.has(item.conversation_id));
    state.knownQueueIds = new Set(items.map((item) => item.conversation_id));
    state.queue = items;
    renderQueue();
    if (fresh.length === 1) {
      const first = fresh[0];
      const what = isTicket(first)
        ? `ticket from ${customerName(first.customer)}: ${ticketSubject(first.ticket)}`
        : customerName(first.customer);
      announce(`New in queue: ${what}, ${reasonText(first.reason, first.reason_text)}`);
    } else if (fresh.length > 1) {
      announce(`${fresh.length} new conversations in the queue`);
    }
    if (state.packet && state.packet.state === "queued") renderWaiting();
  }

  function onAssigned(id, agent) {
    const toMe = agent && state.agent && agent.id === state.agent.id;
    refreshMine();
    if (id === state.selected) {
      loadConversation(id, { keepComposer: true });
    } else if (toMe) {
      state.unread.add(id);
      announce("A conversation was assigned to you");
    }
  }

  function onUnassigned(id, reason, agentId) {
    if (agentId && state.agent && agentId !== state.agent.id) {
      // Someone else let go of it: only the view of a conversation I am previewing changes.
      if (id === state.selected) loadConversation(id, { keepComposer: true });
      return;
    }
    state.mine = state.mine.filter((item) => item.conversation_id !== id);
    state.unread.delete(id);
    renderMine();
    if (id === state.selected) {
      const own = state.ownAction && state.ownAction.id === id && Date.now() - state.ownAction.at < 10000;
      if (!own) {
        showBanner(UNASSIGNED[reason] || `No longer yours (${humanize(reason)}).`);
        announce(UNASSIGNED[reason] || "This conversation is no longer yours");
      }
      loadConversation(id, { keepBanner: true });
    }
  }

  function onEvent(id, event) {
    if (id === state.selected && state.packet) {
      appendEvent(event);
      if (event.type === "status" && event.state) {
        state.packet.state = event.state;
        renderOwnership();
      }
      if (event.type === "message" && event.role === "customer") {
        hideCustomerTyping();
        announce(`Customer: ${event.text}`);
      }
    } else if (state.mine.some((item) => item.conversation_id === id)) {
      if (event.type === "message" && event.role === "customer") {
        state.unread.add(id);
        announce(`New customer message in a conversation of yours`);
      }
    }
    const mine = state.mine.find((item) => item.conversation_id === id);
    if (mine && (event.type === "message" || event.type === "status")) {
      mine.last_message = event;
      renderMine();
    }
  }

  // ---- lists -----------------------------------------------------------------------------------

  // Lists are re-rendered on every change; a keyboard user keeps focus on the same control.
  function keepingFocus(list, render) {
    const active = document.activeElement;
    const within = active && list.contains(active);
    const id = within && active.closest("[data-row]") ? active.closest("[data-row]").dataset.row : null;
    const selector = within && active.classList.contains("claim-btn") ? ".claim-btn" : ".conv-item";
    render();
    if (!id) return;
    const row = [...list.querySelectorAll("[data-row]")].find((node) => node.dataset.row === id);
    const again = row && row.querySelector(selector);
    if (again) again.focus();
  }

  let mineRequests = 0;
  async function refreshMine() {
    const request = ++mineRequests;
    try {
      const mine = (await api("GET", "/conversations")) || [];
      if (request !== mineRequests) return; // a later refresh (an `assigned` frame's) answers for now
      state.mine = mine;
      renderMine();
    } catch (err) {
      failed(err);
    }
  }

  // The SLA countdown of a row (sla.js; absent: no chip).
  const slaChip = (item) => (window.SwitchboardSla ? window.SwitchboardSla.chip(item) : null);

  function renderMine() {
    const list = $("mine-list");
    keepingFocus(list, () => list.replaceChildren(
      ...state.mine.map((item) => {
        const id = item.conversation_id;
        const button = el(
          "button",
          {
            type: "button",
            class: `conv-item${state.unread.has(id) ? " unread" : ""}`,
            "aria-current": id === state.selected ? "true" : "false",
            "data-conversation": id,
            onclick: () => selectConversation(id),
          },
          el("span", { class: "who", text: isTicket(item) ? ticketSubject(item.ticket) : customerName(item.customer) }),
          el("span", { class: "when", text: humanize(item.state) }),
          el(
            "span",
            { class: "why" },
            isTicket(item) ? el("span", { class: "kind-badge", text: ticketBadge(item.ticket) }) : null,
            isTicket(item) ? ` ${customerName(item.customer)} · ` : "",
            reasonText(item.reason, item.reason_text),
            slaChip(item),
          ),
          el("span", { class: "preview", text: lastMessageText(item.last_message) }),
        );
        return el("li", { "data-row": id }, button);
      }),
    ));
    $("mine-count").textContent = String(state.mine.length);
    $("mine-empty").hidden = state.mine.length > 0;
  }

  function renderQueue() {
    const list = $("queue-list");
    keepingFocus(list, () => list.replaceChildren(
      ...state.queue.map((item) => {
        const id = item.conversation_id;
        const name = customerName(item.customer);
        const ticket = isTicket(item);
        const what = ticket ? `ticket from ${name}: ${ticketSubject(item.ticket)}` : `conversation with ${name}`;
        const select = el(
          "button",
          {
            type: "button",
            class: `conv-item${ticket ? " ticket" : ""}`,
            "aria-current": id === state.selected ? "true" : "false",
            "data-conversation": id,
            "data-kind": item.kind || "chat",
            "aria-label": `Preview ${what}`,
            onclick: () => selectConversation(id),
          },
          el("span", { class: "who", text: ticket ? ticketSubject(item.ticket) : name }),
          el("span", { class: "when", "data-since": item.waiting_since, text: waitText(item.waiting_since) }),
          el(
            "span",
            { class: "why" },
            ticket ? el("span", { class: "kind-badge", text: ticketBadge(item.ticket) }) : null,
            ticket ? " " : null,
            el("span", { class: "prio", "data-priority": item.priority, text: humanize(item.priority) }),
            ` ${reasonText(item.reason, item.reason_text)}`,
            item.intent ? ` · ${humanize(item.intent)}` : "",
            slaChip(item),
          ),
          el("span", { class: "preview", text: ticket ? `${name}: ${previewOf(item)}` : item.preview || "" }),
        );
        const claimButton = el("button", {
          type: "button",
          class: "claim-btn primary",
          "aria-label": `Claim ${what}`,
          text: "Claim",
          onclick: () => claim(id),
        });
        return el("li", { class: "queue-row", "data-row": id }, select, claimButton);
      }),
    ));
    $("queue-count").textContent = String(state.queue.length);
    $("queue-empty").hidden = state.queue.length > 0;
  }

  // ---- one conversation ------------------------------------------------------------------------

  function closeConversation() {
    if (state.watching) sendFrame({ type: "unwatch", conversation_id: state.watching });
    state.watching = null;
    state.selected = null;
    state.packet = null;
    $("conv-body").hidden = true;
    $("side").hidden = true;
    $("conv-placeholder").hidden = false;
    document.dispatchEvent(new CustomEvent("switchboard:closed"));
  }

  async function selectConversation(id) {
    if (id !== state.selected) {
      resetComposer();
      $("conv-banner").hidden = true;
    }
    await loadConversation(id);
    // On a phone the lists sit above the conversation: bring the one just opened into view.
    if (state.selected === id && window.matchMedia("(max-width: 700px)").matches) {
      $("conversation").scrollIntoView({ block: "start" });
    }
  }

  async function loadConversation(id, { keepComposer = false, keepBanner = false } = {}) {
    const switching = id !== state.selected;
    if (switching && state.watching && state.watching !== id) {
      sendFrame({ type: "unwatch", conversation_id: state.watching });
      state.watching = null;
    }
    state.selected = id;
    state.unread.delete(id);
    try {
      const packet = await api("GET", `/conversations/${encodeURIComponent(id)}`);
      if (state.selected !== id) return; // the agent moved on while it loaded
      showPacket(packet, { keepComposer: keepComposer && !switching, keepBanner });
    } catch (err) {
      failed(err);
    }
  }

  function showPacket(packet, { keepComposer = false, keepBanner = false } = {}) {
    state.packet = packet;
    state.selected = packet.conversation_id;
    state.unread.delete(packet.conversation_id); // an `assigned` echo may have beaten the claim's answer
    if (!keepComposer) resetComposer();
    if (!keepBanner) $("conv-banner").hidden = true;
    // Follow a conversation that is not ours yet, so the preview stays live.
    if (!isMine() && packet.state === "queued" && state.watching !== packet.conversation_id) {
      state.watching = packet.conversation_id;
      sendFrame({ type: "watch", conversation_id: packet.conversation_id });
    } else if (isMine() && state.watching === packet.conversation_id) {
      sendFrame({ type: "unwatch", conversation_id: state.watching });
      state.watching = null;
    }
    $("conv-placeholder").hidden = true;
    $("conv-body").hidden = false;
    $("side").hidden = false;
    renderPacketHead();
    renderTranscript();
    renderDraft();
    renderSuggestions();
    renderNotes();
    renderOwnership();
    renderMine();
    renderQueue();
    document.dispatchEvent(new CustomEvent("switchboard:opened", { detail: { id: packet.conversation_id } }));
    // Other screens follow the open conversation (search.js: the customer's profile link, labels).
    document.dispatchEvent(new CustomEvent("switchboard:packet", { detail: packet }));
  }

  const isMine = () =>
    Boolean(
      state.packet &&
        state.packet.state === "agent" &&
        state.packet.assignee &&
        state.agent &&
        state.packet.assignee.id === state.agent.id,
    );

  function renderPacketHead() {
    const p = state.packet;
    const ticket = isTicket(p);
    $("conv-title").textContent = ticket ? ticketSubject(p.ticket) : customerName(p.customer);
    $("conv-kind").textContent = ticket ? ticketBadge(p.ticket) : "";
    $("conv-kind").hidden = !ticket;
    // A chat whose customer left an address while nobody could answer: replies are e-mailed too.
    const mailed = !ticket && p.contact_email;
    $("conv-via").textContent = ticket
      ? replyVia(p.ticket, p.customer)
      : mailed
        ? `The customer left ${p.contact_email} while nobody could answer: replies are e-mailed there and shown in the chat.`
        : "";
    $("conv-via").hidden = !ticket && !mailed;
    $("composer-via").textContent = ticket
      ? `Sent ${viaWords(p.ticket)} to ${replyTo(p.ticket, p.customer)}`
      : mailed
        ? `Sent in the chat and by e-mail to ${p.contact_email}`
        : "";
    $("composer-via").hidden = !ticket && !mailed;
    // A ticket's customer is not waiting in a chat: the bot cannot take it back, and nobody sees typing.
    $("return-to-bot").hidden = ticket;
    $("conv-body").dataset.kind = ticket ? "ticket" : "chat";
    $("conv-reason").textContent = reasonText(p.reason, p.reason_text);
    $("conv-reason").dataset.code = p.reason || "";
    const prio = $("conv-priority");
    prio.textContent = p.priority === undefined || p.priority === null ? "" : `Priority: ${humanize(p.priority)}`;
    prio.hidden = !prio.textContent;
    const customer = p.customer || {};
    // `verified`: the widget key's identity secret proved the id (see docs/protocol.md, identity verification).
    const id = customer.id ? `id ${customer.id}${customer.verified ? " (verified)" : " (unverified)"}` : null;
    const identity = [customer.name, customer.email, id].filter(Boolean);
    $("conv-customer").textContent = identity.length ? identity.join(" · ") : "Anonymous visitor";
    $("conv-summary").textContent = p.summary || "No summary yet (short conversation: see the transcript).";
    const chips = $("triage-chips");
    const triage = p.triage;
    if (!triage) {
      chips.replaceChildren(el("li", { text: "No triage verdict" }));
    } else {
      const items = [
        ["Intent", humanize(triage.intent)],
        ["Urgency", humanize(triage.urgency), triage.urgency === "urgent" || triage.urgency === "high"],
        ["Sentiment", humanize(triage.sentiment), triage.sentiment === "negative" || triage.sentiment === "angry"],
        ["Language", triage.language],
        [
          "Confidence",
          typeof triage.confidence === "number" ? `${Math.round(triage.confidence * 100)}%` : null,
          typeof triage.confidence === "number" && triage.confidence < 0.6,
        ],
        ["Wants human", triage.wants_human ? "yes" : "no", Boolean(triage.wants_human)],
      ];
      chips.replaceChildren(
        ...items
          .filter(([, value]) => value !== null && value !== undefined && value !== "" && value !== "—")
          .map(([label, value, warn]) =>
            el("li", { "data-level": warn ? "warn" : null }, el("b", { text: `${label}: ` }), String(value)),
          ),
      );
    }
    renderWaiting();
  }

  function renderWaiting() {
    const p = state.packet;
    const badge = $("conv-state");
    badge.dataset.state = p.state;
    const inQueue = state.queue.find((item) => item.conversation_id === p.conversation_id);
    badge.textContent =
      p.state === "agent" && p.assignee
        ? `With ${p.assignee.name}`
        : p.state === "queued" && inQueue && inQueue.position
          ? `Queued #${inQueue.position}`
          : humanize(p.state);
    const waiting = $("conv-waiting");
    waiting.dataset.since = p.state === "queued" ? p.waiting_since || "" : "";
    waiting.textContent = p.state === "queued" && p.waiting_since ? `waiting ${waitText(p.waiting_since)}` : "";
  }

  function renderOwnership() {
    if (!state.packet) return;
    renderWaiting();
    const mine = isMine();
    const queued = state.packet.state === "queued";
    $("claim").hidden = !queued;
    for (const id of ["resolve", "return-to-bot", "release", "transfer", "send", "composer-text"]) {
      $(id).disabled = !mine;
    }
    $("draft-send").disabled = !mine;
    $("draft-edit").disabled = !mine;
    $("composer").setAttribute("aria-disabled", String(!mine));
    const ticket = isTicket(state.packet);
    $("composer-text").placeholder = mine
      ? ticket
        ? "Reply to the ticket (Ctrl+Enter sends, Enter for a new line)"
        : "Reply to the customer (Enter sends, Shift+Enter for a new line)"
      : queued
        ? `Claim this ${ticket ? "ticket" : "conversation"} to reply`
        : "You do not hold this conversation";
    for (const button of $("canned-list").querySelectorAll("button")) button.disabled = !mine;
    $("composer-hint").textContent = ticket
      ? "Ctrl+Enter sends · Enter new line"
      : "Enter sends · Shift+Enter new line";
  }

  function showBanner(text) {
    const banner = $("conv-banner");
    banner.textContent = text;
    banner.hidden = false;
  }

  // ---- transcript ------------------------------------------------------------------------------

  function renderTranscript() {
    state.seqNodes.clear();
    $("transcript").replaceChildren();
    hideCustomerTyping();
    for (const event of state.packet.transcript || []) appendEvent(event, { scroll: false });
    scrollTranscript();
  }

  function statusText(event) {
    switch (event.state) {
      case "queued":
        return event.queue_position ? `Handed off — queue position ${event.queue_position}` : "Handed off to the queue";
      case "agent":
        return `${(event.agent && event.agent.name) || "An agent"} joined`;
      case "resolved":
        return "Resolved";
      case "bot":
        return "Returned to the bot";
      default:
        return humanize(event.state);
    }
  }

  function eventNode(event) {
    if (event.type === "status") {
      return el("li", { class: "msg", "data-role": "status", "data-seq": event.seq, text: statusText(event) });
    }
    const role = event.role || "system";
    const ticket = isTicket(state.packet);
    // In a ticket, say how each side's words travel: the customer's came in, the agent's go out, by e-mail etc.
    const via =
      ticket && (role === "customer" || role === "agent" || role === "assistant")
        ? `${role === "customer" ? "filed" : "replied"} by ${channelText(state.packet.ticket).toLowerCase()} · `
        : "";
    const who =
      role === "customer"
        ? customerName(state.packet && state.packet.customer)
        : role === "assistant"
          ? "Bot"
          : role === "agent"
            ? (event.author && event.author.name) || "Agent"
            : "System";
    // An agent's message is a person's: their initial in an avatar, a solid bubble; the bot's is dashed.
    const avatar =
      role === "agent" ? el("span", { class: "avatar", "aria-hidden": "true", text: Array.from(who)[0].toUpperCase() }) : null;
    return el(
      "li",
      { class: "msg", "data-role": role, "data-seq": event.seq },
      avatar,
      el("span", { class: "meta", text: `${who} · ${role === "agent" ? "agent · " : ""}${via}${clock(event.created_at)}` }),
      (role === "customer" && ticket ? ticketBodyOf(event.text) : event.text) || "",
      role === "assistant" ? sourcesNode(event.sources) : null,
      window.SwitchboardAttachments ? window.SwitchboardAttachments.node(event.attachments) : null,
    );
  }

  // The knowledge sections a bot answer cites: their titles at a glance, the cited text on opening.
  function sourcesNode(sources) {
    if (!Array.isArray(sources) || !sources.length) return null;
    const titles = sources.map((s) => String(s.section || s.document || "")).filter(Boolean);
    return el(
      "details",
      { class: "sources" },
      el("summary", { text: `Sources: ${titles.join(" · ")}` }),
      el(
        "ul",
        {},
        ...sources.map((s) =>
          el(
            "li",
            {},
            el("span", { class: "source-title", text: `${s.document || ""} — ${s.section || ""}` }),
            s.cited_text ? el("q", { text: s.cited_text }) : null,
          ),
        ),
      ),
    );
  }

  function appendEvent(event, { scroll = true } = {}) {
    if (event.type !== "message" && event.type !== "status") return;
    const list = $("transcript");
    const node = eventNode(event);
    const seq = typeof event.seq === "number" ? event.seq : null;
    if (seq !== null && state.seqNodes.has(seq)) {
      state.seqNodes.get(seq).replaceWith(node); // a newer frame for the same event (e.g. queue position)
      state.seqNodes.set(seq, node);
      return;
    }
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    if (seq !== null) {
      state.seqNodes.set(seq, node);
      const later = [...state.seqNodes.entries()].filter(([s]) => s > seq).sort(([a], [b]) => a - b)[0];
      if (later) {
        list.insertBefore(node, later[1]);
        return;
      }
    }
    list.append(node);
    if (scroll && nearBottom) scrollTranscript();
  }

  function scrollTranscript() {
    const list = $("transcript");
    list.scrollTop = list.scrollHeight;
  }

  function showCustomerTyping() {
    $("customer-typing").hidden = false;
    clearTimeout(state.customerTypingTimer);
    state.customerTypingTimer = setTimeout(hideCustomerTyping, CUSTOMER_TYPING_HIDE_MS);
  }

  function hideCustomerTyping() {
    clearTimeout(state.customerTypingTimer);
    $("customer-typing").hidden = true;
  }

  // ---- draft, canned replies, composer ---------------------------------------------------------

  function currentDraft() {
    const draft = state.packet && state.packet.draft;
    return draft && draft.text && !state.usedDrafts.has(draft.id) ? draft : null;
  }

  function renderDraft() {
    const draft = currentDraft();
    $("draft-text").hidden = !draft;
    $("draft-text").textContent = draft ? draft.text : "";
    const used = state.packet && state.packet.draft && state.usedDrafts.has(state.packet.draft.id);
    $("draft-none").textContent = used ? "You used the draft." : "No draft for this conversation.";
    $("draft-none").hidden = Boolean(draft);
    $("draft-actions").hidden = !draft;
  }

  function renderSuggestions() {
    const suggestions = (state.packet && state.packet.suggestions) || [];
    $("canned-list").replaceChildren(
      ...suggestions.map((s) =>
        el(
          "li",
          { "data-example-id": s.id },
          s.customer_message ? el("div", { class: "q", text: `For: “${s.customer_message}”` }) : null,
          el("div", { text: s.text }),
          el("button", {
            type: "button",
            text: "Use",
            "aria-label": `Use canned reply: ${s.text.slice(0, 60)}`,
            disabled: !isMine(),
            onclick: () => useText(s.text, null, "Using a canned reply"),
          }),
        ),
      ),
    );
    $("canned-empty").hidden = suggestions.length > 0;
  }

  function setComposerMode(draftId, label) {
    state.composerDraftId = draftId;
    $("composer-mode").textContent = label;
    $("composer").querySelector(".composer-mode").dataset.mode = draftId ? "draft" : "new";
    $("discard-draft").hidden = !draftId && label === "Writing a new reply";
  }

  function resetComposer() {
    $("composer-text").value = "";
    setComposerMode(null, "Writing a new reply");
  }

  function useText(text, draftId, label) {
    const box = $("composer-text");
    box.value = text;
    setComposerMode(draftId, label);
    box.focus();
    box.setSelectionRange(text.length, text.length);
  }

  async function sendReply(text, draftId) {
    const id = state.selected;
    const body = { text };
    if (draftId) body.draft_id = draftId;
    const attached = window.SwitchboardAttachments ? window.SwitchboardAttachments.pendingIds() : [];
    if (attached.length) body.attachments = attached;
    $("send").disabled = true;
    try {
      await api("POST", `/conversations/${encodeURIComponent(id)}/messages`, body);
      if (draftId) {
        state.usedDrafts.add(draftId);
        renderDraft();
      }
      resetComposer();
      if (attached.length) window.SwitchboardAttachments.clear();
      // Without a live socket the sent message would not show up: reload instead.
      if (!state.socket || state.socket.readyState !== WebSocket.OPEN) loadConversation(id, { keepComposer: true });
    } catch (err) {
      failed(err);
    } finally {
      $("send").disabled = !isMine();
    }
  }

  function submitComposer(event) {
    event.preventDefault();
    if (!isMine()) return;
    const files = window.SwitchboardAttachments ? window.SwitchboardAttachments.pendingNames() : [];
    const text = $("composer-text").value.trim() || files.join(", ");
    if (!text) {
      showAlert("Write a reply first.");
      return;
    }
    sendReply(text, state.composerDraftId);
  }

  function onComposerInput() {
    if (!isMine() || isTicket(state.packet)) return; // nobody watches a ticket being typed
    const now = Date.now();
    if (now - state.lastTypingSentAt < TYPING_THROTTLE_MS) return;
    state.lastTypingSentAt = now;
    api("POST", `/conversations/${encodeURIComponent(state.selected)}/typing`).catch(() => {
      // a lost typing notice is harmless
    });
  }

  // ---- notes -----------------------------------------------------------------------------------

  function renderNotes() {
    state.noteIds.clear();
    $("notes-list").replaceChildren();
    for (const note of (state.packet && state.packet.notes) || []) addNote(note);
  }

  function addNote(note) {
    if (note.id !== undefined && state.noteIds.has(note.id)) return;
    if (note.id !== undefined) state.noteIds.add(note.id);
    const author = (note.author && note.author.name) || "Agent";
    $("notes-list").append(
      el(
        "li",
        { "data-note": note.id },
        el("span", { class: "meta", text: `${author} · ${clock(note.created_at)}` }),
        note.text,
      ),
    );
  }

  async function submitNote(event) {
    event.preventDefault();
    const box = $("note-text");
    const text = box.value.trim();
    if (!text || !state.selected) return;
    $("note-add").disabled = true;
    try {
      const note = await api("POST", `/conversations/${encodeURIComponent(state.selected)}/notes`, { text });
      if (note) addNote(note);
      box.value = "";
    } catch (err) {
      failed(err);
    } finally {
      $("note-add").disabled = false;
    }
  }

  // ---- actions ---------------------------------------------------------------------------------

  async function claim(id) {
    try {
      const packet = await api("POST", `/conversations/${encodeURIComponent(id)}/claim`);
      if (id !== state.selected) resetComposer();
      state.selected = id;
      if (packet && packet.conversation_id) showPacket(packet);
      else await loadConversation(id);
      announce(
        isTicket(state.packet)
          ? `You now hold the ticket ${ticketSubject(state.packet.ticket)}`
          : `You now hold the conversation with ${customerName(state.packet && state.packet.customer)}`,
      );
      refreshMine();
      $("composer-text").focus();
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        showAlert(`Could not claim: ${err.message}`);
        if (id === state.selected) loadConversation(id);
      } else {
        failed(err);
      }
    }
  }

  async function act(action, words) {
    const id = state.selected;
    if (!id) return;
    state.ownAction = { id, at: Date.now() };
    try {
      await api("POST", `/conversations/${encodeURIComponent(id)}/${action}`);
      resetComposer();
      showBanner(words);
      announce(words);
      await loadConversation(id, { keepBanner: true });
      refreshMine();
    } catch (err) {
      failed(err);
    }
  }

  async function openTransfer() {
    const dialog = $("transfer-dialog");
    const select = $("transfer-target");
    const error = $("transfer-error");
    error.hidden = true;
    select.replaceChildren(el("option", { value: "", text: "Loading agents…" }));
    dialog.showModal();
    try {
      const agents = ((await api("GET", "/agents")) || []).filter((a) => !state.agent || a.id !== state.agent.id);
      if (!agents.length) {
        select.replaceChildren(el("option", { value: "", text: "No other agents" }));
        return;
      }
      select.replaceChildren(
        ...agents.map((a) => {
          const full = typeof a.capacity === "number" && typeof a.load === "number" && a.load >= a.capacity;
          // Their presence (presence.js); an older server says only whether a console is open.
          const presence = a.presence || (a.online ? "online" : "offline");
          const status = `${presence}, ${a.load ?? 0}/${a.capacity ?? "?"}`;
          return el("option", { value: a.id, disabled: full, text: `${a.name} (${status}${full ? ", full" : ""})` });
        }),
      );
      const firstFree = [...select.options].find((o) => !o.disabled);
      if (firstFree) select.value = firstFree.value;
      select.focus();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  }

  async function confirmTransfer(event) {
    event.preventDefault();
    const target = $("transfer-target").value;
    const error = $("transfer-error");
    if (!target) {
      error.textContent = "Pick an agent.";
      error.hidden = false;
      return;
    }
    const id = state.selected;
    state.ownAction = { id, at: Date.now() };
    try {
      await api("POST", `/conversations/${encodeURIComponent(id)}/transfer`, { agent_id: target });
      $("transfer-dialog").close();
      const name = $("transfer-target").selectedOptions[0]?.textContent.replace(/ \(.*$/, "") || "another agent";
      showBanner(`Transferred to ${name}.`);
      announce(`Transferred to ${name}`);
      resetComposer();
      await loadConversation(id, { keepBanner: true });
      refreshMine();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  }

  // ---- wiring ----------------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => logout(""));
    $("claim").addEventListener("click", () => state.selected && claim(state.selected));
    $("composer").addEventListener("submit", submitComposer);
    $("composer-text").addEventListener("input", onComposerInput);
    $("composer-text").addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      // A ticket's answer is a letter (new lines are common): Ctrl+Enter sends it. A chat's: Enter.
      const send = isTicket(state.packet) ? event.ctrlKey || event.metaKey : !event.shiftKey;
      if (send) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("discard-draft").addEventListener("click", () => {
      resetComposer();
      $("composer-text").focus();
    });
    $("draft-edit").addEventListener("click", () => {
      const draft = currentDraft();
      if (draft) useText(draft.text, draft.id, "Editing the bot's draft");
    });
    $("draft-send").addEventListener("click", () => {
      const draft = currentDraft();
      if (draft && isMine()) sendReply(draft.text, draft.id);
    });
    $("note-form").addEventListener("submit", submitNote);
    $("note-text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        $("note-form").requestSubmit();
      }
    });
    $("resolve").addEventListener("click", () =>
      act("resolve", isTicket(state.packet) ? TICKET_RESOLVED : UNASSIGNED.resolved),
    );
    $("return-to-bot").addEventListener("click", () => act("return-to-bot", UNASSIGNED.returned_to_bot));
    $("release").addEventListener("click", () => act("release", UNASSIGNED.released));
    $("transfer").addEventListener("click", openTransfer);
    $("transfer-form").addEventListener("submit", confirmTransfer);
    $("transfer-cancel").addEventListener("click", () => $("transfer-dialog").close());
    // Waiting times tick without re-rendering the lists.
    setInterval(() => {
      for (const node of document.querySelectorAll("[data-since]")) {
        const since = node.dataset.since;
        if (!since) continue;
        node.textContent = node.id === "conv-waiting" ? `waiting ${waitText(since)}` : waitText(since);
      }
    }, 1000);
  }

  // What other console screens (agents.js) share: the API client and the feedback channels.
  window.SwitchboardConsole = {
    api, ApiError, showAlert, announce, failed, me: () => state.agent, selected: () => state.selected,
    // For notify.js and keys.js: open a conversation; one I hold (from Mine, or the one shown).
    open: (id) => selectConversation(id),
    held: (id) =>
      state.mine.find((item) => item.conversation_id === id) ||
      (id === state.selected && isMine() ? state.packet : null),
  };
  // attachments.js reads files with the agent's token and uploads to the open conversation.
  Object.assign(window.SwitchboardConsole, { token: () => state.token });

  wire();
  session.onSignedOutElsewhere(() => {
    if (state.token) logout("You signed out in another tab.");
  });
  // A tab opened without a token asks the signed-in tabs of this origin first (session.js).
  session.ready.then(({ token, agent }) => {
    state.token = token;
    state.agent = agent;
    if (state.token) {
      start();
    } else {
      $("login-view").hidden = false;
      $("login-email").focus();
    }
  });
})();
