// DOM building (text only, never innerHTML with data) and the formats the dashboard shows.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "style") setStyle(el, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
function setStyle(el, text) {
  for (const decl of String(text).split(";")) {
    const at = decl.indexOf(":");
    if (at > 0) el.style.setProperty(decl.slice(0, at).trim(), decl.slice(at + 1).trim());
  }
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function replace(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

const numberFmt = new Intl.NumberFormat("en-US");
export function num(n) {
  return numberFmt.format(Math.round(n || 0));
}

// Micro-credits as credits: enough decimals to see small demo amounts move.
export function credits(micro) {
  const v = (micro || 0) / 1e6;
  if (v === 0) return "0";
  const digits = v >= 100 ? 0 : v >= 1 ? 2 : 4;
  return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function amount(metric, value) {
  return metric === "credits" ? `${credits(value)} credits` : `${num(value)} ${metric}`;
}

export function duration(seconds) {
  const s = Math.round(seconds);
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

// Times in the tenant's timezone (what "midnight" and "today" mean for caps).
export function clock(ms, tz, withDay) {
  if (ms === null || ms === undefined) return "";
  const opts = { hour: "2-digit", minute: "2-digit", timeZone: tz || "UTC", hourCycle: "h23" };
  if (withDay) Object.assign(opts, { month: "short", day: "numeric" });
  try {
    return new Intl.DateTimeFormat("en-GB", opts).format(new Date(ms));
  } catch (e) {
    return new Date(ms).toISOString().slice(11, 16);
  }
}

export function clockSeconds(ms, tz) {
  try {
    return new Intl.DateTimeFormat("en-GB", {
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: tz || "UTC", hourCycle: "h23",
    }).format(new Date(ms));
  } catch (e) {
    return new Date(ms).toISOString().slice(11, 19);
  }
}

export function sameDay(a, b, tz) {
  const f = new Intl.DateTimeFormat("en-CA", { timeZone: tz || "UTC" });
  return f.format(new Date(a)) === f.format(new Date(b));
}

export function today(tz) {
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz || "UTC" }).format(new Date());
  } catch (e) {
    return new Date().toISOString().slice(0, 10);
  }
}

// Show a request's field errors next to the fields (elements with data-error="<field>").
export function showErrors(form, err) {
  clearErrors(form);
  const slots = [...form.querySelectorAll("[data-error]")];
  const names = slots.map((s) => s.dataset.error);
  let placed = false;
  for (const f of (err && err.fields) || []) {
    const parts = String(f.field).split(".");
    let slot = null;
    for (let i = parts.length; i > 0 && !slot; i--) {
      const name = parts.slice(0, i).join(".");
      if (names.includes(name)) slot = slots[names.indexOf(name)];
    }
    if (!slot) continue;
    slot.textContent = slot.textContent ? `${slot.textContent} ${f.message}` : f.message;
    const input = slot.parentElement && slot.parentElement.querySelector("input, select, textarea");
    const target = form.querySelector(`[data-field="${CSS.escape(f.field)}"]`) || input;
    if (target) target.setAttribute("aria-invalid", "true");
    placed = true;
  }
  if (!placed) {
    const general = form.querySelector('[data-error="_form"]');
    if (general) general.textContent = (err && err.message) || "something went wrong";
  }
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error]")) slot.textContent = "";
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute("aria-invalid");
}
