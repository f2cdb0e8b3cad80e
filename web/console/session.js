// One sign-in for the agent console, the examples review and the reports pages (same origin).
//
// The bearer token from POST /api/v1/agent/login is kept in sessionStorage under one key, so a closed tab
// forgets it and it never outlives the browser session. A page opened in another tab starts with an empty
// sessionStorage: it asks the tabs of this origin that are signed in (BroadcastChannel, same origin only)
// and takes the token from the first that answers, so the console and reports do not each ask for a
// password. Signing out in one tab signs out every tab. Plain JS, no build step; loaded before the page's
// own script, which waits for `SwitchboardSession.ready` before deciding between sign-in and its screen.
"use strict";

(() => {
  const TOKEN_KEY = "switchboard.agent.token";
  const AGENT_KEY = "switchboard.agent";
  const ASK_MS = 250; // how long a new tab waits for a signed-in tab to answer before showing sign-in
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("switchboard.agent.session") : null;
  const listeners = [];

  const read = () => ({
    token: sessionStorage.getItem(TOKEN_KEY),
    agent: JSON.parse(sessionStorage.getItem(AGENT_KEY) || "null"),
  });

  function store(token, agent) {
    sessionStorage.setItem(TOKEN_KEY, token);
    if (agent) sessionStorage.setItem(AGENT_KEY, JSON.stringify(agent));
  }

  function forget() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(AGENT_KEY);
  }

  if (channel) {
    channel.onmessage = (ev) => {
      const msg = ev.data || {};
      const mine = read();
      if (msg.type === "ask" && mine.token) channel.postMessage({ type: "token", ...mine });
      else if (msg.type === "signed-out" && mine.token === msg.token) {
        forget();
        for (const fn of listeners) fn();
      }
    };
  }

  const ready = new Promise((resolve) => {
    if (read().token || !channel) return resolve(read());
    const timer = setTimeout(() => resolve(read()), ASK_MS);
    channel.addEventListener("message", function answer(ev) {
      const msg = ev.data || {};
      if (msg.type !== "token" || !msg.token || read().token) return;
      store(msg.token, msg.agent);
      clearTimeout(timer);
      channel.removeEventListener("message", answer);
      resolve(read());
    });
    channel.postMessage({ type: "ask" });
  });

  window.SwitchboardSession = {
    ready,
    token: () => read().token,
    agent: () => read().agent,
    signedIn(token, agent) {
      store(token, agent);
    },
    setAgent(agent) {
      sessionStorage.setItem(AGENT_KEY, JSON.stringify(agent));
    },
    // Forget the token here and in every other tab of this origin that holds the same one.
    signOut() {
      const { token } = read();
      forget();
      if (channel && token) channel.postMessage({ type: "signed-out", token });
    },
    onSignedOutElsewhere(fn) {
      listeners.push(fn);
    },
  };
})();
