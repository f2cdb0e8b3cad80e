// Switchboard console, admins only: a team's business hours (time zone, weekly ranges, holidays) over
// GET /api/v1/admin/teams and PUT /api/v1/admin/teams/{id}/hours. The server validates (support/hours.py)
// and its 400 says which field is wrong; the message is shown under that field. The form checks only the
// shape of a range first, so a typo is pointed at before a round trip. Plain browser JavaScript, no build
// step; uses admin-page.js for sign-in, the API client and elements.
"use strict";

(() => {
  const TEAMS = "/api/v1/admin/teams";
  const DAYS = [
    ["mon", "Monday"],
    ["tue", "Tuesday"],
    ["wed", "Wednesday"],
    ["thu", "Thursday"],
    ["fri", "Friday"],
    ["sat", "Saturday"],
    ["sun", "Sunday"],
  ];
  const RANGE = /^\d{2}:\d{2}-\d{2}:\d{2}$/;
  const $ = (id) => document.getElementById(id);
  const page = () => window.SwitchboardAdminPage;
  const { showAlert, announce } = window.SwitchboardFeedback;
  let teams = [];
  let holidays = [];

  function buildDays() {
    const box = $("days");
    for (const [day, name] of DAYS) {
      const input = page().el("input", {
        id: `day-${day}`,
        autocomplete: "off",
        spellcheck: "false",
        inputmode: "numeric",
        placeholder: "Closed",
        "aria-describedby": `day-${day}-error`,
      });
      input.addEventListener("input", () => fieldError(input.id, ""));
      box.append(
        page().el("label", { for: `day-${day}`, text: name }),
        input,
        page().el("p", { id: `day-${day}-error`, class: "form-error small", hidden: true }),
      );
    }
    if (typeof Intl.supportedValuesOf === "function") {
      $("timezones").replaceChildren(...Intl.supportedValuesOf("timeZone").map((zone) => page().el("option", { value: zone })));
    }
  }

  // Show (or clear, with "") the error of one field: under it, and on the field for screen readers.
  function fieldError(fieldId, message) {
    const field = $(fieldId);
    const box = $(`${fieldId === "holiday-new" ? "holidays" : fieldId}-error`);
    box.textContent = message;
    box.hidden = !message;
    if (message) field.setAttribute("aria-invalid", "true");
    else field.removeAttribute("aria-invalid");
  }

  function clearErrors() {
    for (const [day] of DAYS) fieldError(`day-${day}`, "");
    fieldError("timezone", "");
    fieldError("holiday-new", "");
    $("form-error").hidden = true;
  }

  const team = () => teams.find((t) => t.id === $("team").value) || teams[0];

  function render() {
    const current = team();
    if (!current) return;
    const hours = current.business_hours;
    $("timezone").value = hours ? hours.timezone : "";
    for (const [day] of DAYS) $(`day-${day}`).value = hours && hours.weekly[day] ? hours.weekly[day].join(", ") : "";
    holidays = hours ? [...hours.holidays] : [];
    renderHolidays();
    const open = $("open-now");
    open.dataset.open = String(current.open_now);
    open.textContent = current.open_now ? "Open now" : "Closed now";
    $("source").textContent =
      current.source === "admin"
        ? `Set by an admin, ${page().when(current.updated_at)}.`
        : hours
          ? "From the server's SWITCHBOARD_BUSINESS_HOURS setting; saving here overrides it."
          : "No hours set: always open. Saving here sets them.";
    $("use-setting").disabled = current.source !== "admin";
    clearErrors();
  }

  function renderHolidays() {
    holidays.sort();
    $("holidays").replaceChildren(
      ...holidays.map((day) =>
        page().el("li", { "data-day": day }, [
          page().el("span", { text: day }),
          page().el("button", {
            type: "button",
            "aria-label": `Remove holiday ${day}`,
            text: "×",
            onclick: () => {
              holidays = holidays.filter((d) => d !== day);
              renderHolidays();
              $("holiday-new").focus();
            },
          }),
        ]),
      ),
    );
    if (!holidays.length) $("holidays").append(page().el("li", { class: "muted small", text: "None" }));
  }

  function addHoliday() {
    const input = $("holiday-new");
    if (!input.value) {
      fieldError("holiday-new", "Pick a date first.");
      input.focus();
      return;
    }
    fieldError("holiday-new", "");
    if (!holidays.includes(input.value)) holidays.push(input.value);
    input.value = "";
    renderHolidays();
  }

  // The form as the API's object, or null after marking what is malformed.
  function collect() {
    clearErrors();
    let first = null;
    const fail = (id, message) => {
      fieldError(id, message);
      first = first || id;
    };
    const timezone = $("timezone").value.trim();
    if (!timezone) fail("timezone", "Enter a time zone, such as Europe/Berlin.");
    const weekly = {};
    for (const [day, name] of DAYS) {
      const text = $(`day-${day}`).value.trim();
      if (!text) continue;
      const ranges = text.split(",").map((part) => part.replace(/\s+/g, "")).filter(Boolean);
      const bad = ranges.find((range) => !RANGE.test(range));
      if (bad) fail(`day-${day}`, `${name}: “${bad}” is not a range like 09:00-17:00.`);
      weekly[day] = ranges;
    }
    if (first) {
      $(first).focus();
      return null;
    }
    return { timezone, weekly, holidays: [...holidays] };
  }

  // The server names the field in its message: `weekly.tue`, the time zone, or a holiday.
  function showServerError(err) {
    const message = err.message || "The hours were not saved.";
    const day = /`weekly\.(\w+)`/.exec(message);
    const id =
      day && $(`day-${day[1]}`)
        ? `day-${day[1]}`
        : /time ?zone/i.test(message)
          ? "timezone"
          : /holiday/i.test(message)
            ? "holiday-new"
            : null;
    if (id) {
      fieldError(id, message.replace(/^`weekly\.\w+`: /, ""));
      $(id).focus();
    } else {
      $("form-error").textContent = page().describe(err);
      $("form-error").hidden = false;
    }
  }

  async function save(value) {
    const current = team();
    $("saved").textContent = "";
    $("save").disabled = true;
    try {
      const updated = await page().api("PUT", `${TEAMS}/${encodeURIComponent(current.id)}/hours`, {
        business_hours: value,
      });
      teams = teams.map((t) => (t.id === updated.id ? updated : t));
      render();
      const words = value ? "Hours saved." : "Hours reset to the server's setting.";
      $("saved").textContent = words;
      announce(words);
    } catch (err) {
      if (err.status === 400) showServerError(err);
      else showAlert(page().describe(err));
    } finally {
      $("save").disabled = false;
    }
  }

  async function load() {
    try {
      teams = (await page().api("GET", TEAMS)) || [];
    } catch (err) {
      showAlert(page().describe(err));
      return;
    }
    const chosen = $("team").value;
    $("team").replaceChildren(...teams.map((t) => page().el("option", { value: t.id, text: t.name || t.id })));
    if (chosen && teams.some((t) => t.id === chosen)) $("team").value = chosen;
    render();
  }

  buildDays();
  $("team").addEventListener("change", render);
  $("holiday-add").addEventListener("click", addHoliday);
  $("holiday-new").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      addHoliday();
    }
  });
  $("timezone").addEventListener("input", () => fieldError("timezone", ""));
  $("hours-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = collect();
    if (value) save(value);
  });
  $("use-setting").addEventListener("click", () => save(null));
  page().start(load);
})();
