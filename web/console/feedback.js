// Switchboard console feedback, shared by the console (console.js) and the examples review (examples.js):
// a visible alert that hides itself, and a polite announcement for screen readers. Both pages have the
// #alert and #announcer elements. Plain browser JavaScript, no build step; load it before either script.
"use strict";

(() => {
  const ALERT_MS = 6000; // long enough to read a sentence; the next alert replaces it at once
  const $ = (id) => document.getElementById(id);
  let alertTimer = null;

  // Messages are put into the page as text only: server errors may quote what a customer wrote.
  function showAlert(message) {
    const box = $("alert");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(alertTimer);
    alertTimer = setTimeout(() => (box.hidden = true), ALERT_MS);
  }

  function announce(message) {
    const region = $("announcer");
    region.textContent = "";
    // A fresh text node after a tick so screen readers announce repeated messages too.
    setTimeout(() => (region.textContent = message), 30);
  }

  window.SwitchboardFeedback = Object.freeze({ showAlert, announce });
})();
