// Cap behaviour: language, timezone, fallback message with a live {{TIMEFRAME}} preview,
// auto-downgrade (Pro+), throttle, daily and monthly caps per category, each with an
// optional forecast alert (hours ahead of the projected cap), in credits or in the account's
// currency (budgets in money: the API converts an amount to credits at the account's rate).
import { query } from "./api.js";
import { clearErrors, h, replace, showErrors } from "./dom.js";
import { attachTryOnPast } from "./simulate.js";

const CATEGORIES = ["text", "vision", "audio", "documents"];
const DOWNGRADE_PLANS = ["pro", "enterprise"];

function toCredits(micro) {
  return micro === null || micro === undefined ? "" : String(micro / 1e6);
}

function toHours(seconds) {
  return seconds === null || seconds === undefined ? "" : String(seconds / 3600);
}

function toSeconds(text) {
  const t = text.trim();
  if (t === "") return null;
  const v = Number(t);
  return Number.isFinite(v) ? Math.round(v * 3600) : NaN;
}

function toMicro(text) {
  const t = text.trim();
  if (t === "") return null;
  const v = Number(t);
  return Number.isFinite(v) ? Math.round(v * 1e6) : NaN;
}

export class CapSettings {
  constructor(app) {
    this.app = app;
    this.form = document.getElementById("settings-form");
    const $ = (id) => document.getElementById(id);
    this.f = {
      language: $("s-language"), timezone: $("s-timezone"), owner: $("s-owner"),
      fallback: $("s-fallback"), downgrade: $("s-downgrade"), downgradeNote: $("s-downgrade-note"),
      caps: $("s-caps"), saved: $("settings-saved"), save: $("settings-save"),
      daily: $("s-preview-daily"), monthly: $("s-preview-monthly"),
    };
    this.current = null;
    this.unit = null; // {currency, rate} of the account's prices (null: none)
    this.f.capUnit = $("s-cap-unit");
    this.f.capUnitMoney = $("s-cap-unit-money");
    this.f.capUnit.addEventListener("change", () => { if (this.current) this.fillCaps(this.current); });
    this.form.addEventListener("input", (e) => { if (e.target.dataset.cap) this.hintCaps(); });
    this.previewTimer = null;
    this.previewSeq = 0;
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
    attachTryOnPast(app, {
      form: this.form, anchor: this.f.save, kind: "settings", draft: () => ({ settings: this.body() }),
    });
    this.f.fallback.addEventListener("input", () => this.schedulePreview());
    this.f.language.addEventListener("change", () => this.schedulePreview(0));
    $("s-insert-timeframe").addEventListener("click", () => this.insertToken());
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    replace($("timezones"), zones.map((z) => h("option", { value: z })));
    replace(this.f.caps, this.capInputs());
  }

  capInputs() {
    const cells = [h("span", { class: "head", text: "category" }), h("span", { class: "head", text: "daily" }),
      h("span", { class: "head", text: "monthly" })];
    for (const c of CATEGORIES) {
      cells.push(h("label", { for: `cap-${c}-daily`, text: c }));
      for (const period of ["daily", "monthly"]) {
        cells.push(h("input", {
          id: `cap-${c}-${period}`, type: "number", min: "0", step: "any", inputmode: "decimal",
          "data-field": `caps.${c}.${period}_micro`, "aria-label": `${c} ${period} cap (credits)`,
          placeholder: "no cap", "data-cap": `${c}.${period}`,
        }));
      }
      // the cap in the other unit (credits <-> money)
      cells.push(h("span", {}));
      for (const period of ["daily", "monthly"]) {
        cells.push(h("span", { class: "sub", id: `cap-${c}-${period}-other`, "data-testid": `cap-${c}-${period}-other` }));
      }
      // Forecast alert: hours ahead of the projected cap (null: off), per period
      cells.push(h("label", { for: `cap-${c}-daily-lead`, class: "sub", text: "forecast, h ahead" }));
      for (const period of ["daily", "monthly"]) {
        cells.push(h("input", {
          id: `cap-${c}-${period}-lead`, type: "number", min: "0.0167", step: "any", inputmode: "decimal",
          "data-field": `caps.${c}.${period}_forecast_lead_s`,
          "aria-label": `${c} ${period} cap forecast alert (hours ahead)`,
          "data-testid": `cap-${c}-${period}-lead`, placeholder: "off",
          title: "Notify me when the current pace reaches this cap within this many hours (once per period)",
        }));
      }
      cells.push(h("p", { class: "error", "data-error": `caps.${c}` }));
    }
    return cells;
  }

  url() { return `/v1/accounts/${encodeURIComponent(this.app.account)}/settings`; }

  async refresh() {
    const s = await this.app.api.get(this.url());
    this.current = s;
    this.fill(s);
  }

  fill(s) {
    const f = this.f;
    f.language.value = s.language;
    f.timezone.value = s.timezone;
    f.owner.value = s.owner_email || "";
    f.fallback.value = s.fallback_message || "";
    f.downgrade.checked = !!s.auto_downgrade;
    const eligible = DOWNGRADE_PLANS.includes(s.plan);
    f.downgrade.disabled = !eligible && !s.auto_downgrade;
    f.downgradeNote.textContent = eligible
      ? `Premium ${s.premium_model} → ${s.downgrade_model} for the rest of the day.`
      : `Available on Pro and Enterprise; this account is on ${s.plan}.`;
    for (const input of this.form.querySelectorAll('input[name="throttle"]')) input.checked = input.value === s.throttle;
    const inMoney = Object.values(s.caps).some((c) => c.daily_amount_micro != null || c.monthly_amount_micro != null);
    this.f.capUnit.value = inMoney && this.unit ? "money" : "credits";
    this.fillCaps(s);
    for (const c of CATEGORIES) {
      const caps = s.caps[c] || {};
      document.getElementById(`cap-${c}-daily-lead`).value = toHours(caps.daily_forecast_lead_s);
      document.getElementById(`cap-${c}-monthly-lead`).value = toHours(caps.monthly_forecast_lead_s);
    }
    this.schedulePreview(0);
  }

  /** The account's currency and rate changed (the prices card): "money" offered or not. */
  setUnit(unit) {
    this.unit = unit;
    this.f.capUnitMoney.disabled = !unit;
    this.f.capUnitMoney.textContent = unit ? `money (${unit.currency})` : "money (set prices below)";
    if (!unit && this.f.capUnit.value === "money") this.f.capUnit.value = "credits";
  }

  get inMoney() { return this.f.capUnit.value === "money" && !!this.unit; }

  // Each cap input shows the cap in the chosen unit: an amount given in money as it was
  // given, one given in credits converted (what the other unit would make of it).
  fillCaps(s) {
    for (const c of CATEGORIES) {
      const caps = s.caps[c] || {};
      for (const period of ["daily", "monthly"]) {
        const input = document.getElementById(`cap-${c}-${period}`);
        const credits = caps[`${period}_micro`];
        const amount = caps[`${period}_amount_micro`];
        let value;
        if (!this.inMoney) value = toCredits(credits);
        else if (amount != null) value = toCredits(amount);
        else value = credits == null ? "" : String(Math.floor((credits * 1e6) / this.unit.rate) / 1e6);
        input.value = value;
        input.dataset.filled = value;
        input.setAttribute("aria-label", `${c} ${period} cap (${this.inMoney ? this.unit.currency : "credits"})`);
      }
    }
    this.hintCaps();
  }

  hintCaps() {
    for (const c of CATEGORIES) {
      for (const period of ["daily", "monthly"]) {
        const v = document.getElementById(`cap-${c}-${period}`).value.trim();
        const out = document.getElementById(`cap-${c}-${period}-other`);
        const n = Number(v);
        if (!this.unit || v === "" || !Number.isFinite(n)) { out.textContent = ""; continue; }
        const rate = this.unit.rate / 1e6; // credits per unit
        out.textContent = this.inMoney
          ? `= ${(Math.floor(n * 1e6 * rate) / 1e6).toLocaleString("en-US")} credits`
          : `≈ ${(n / rate).toLocaleString("en-US", { maximumFractionDigits: 6 })} ${this.unit.currency}`;
      }
    }
  }

  insertToken() {
    const t = this.f.fallback;
    const at = t.selectionStart ?? t.value.length;
    t.value = `${t.value.slice(0, at)}{{TIMEFRAME}}${t.value.slice(t.selectionEnd ?? at)}`;
    t.focus();
    this.schedulePreview(0);
  }

  schedulePreview(delay = 250) {
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => this.preview(), delay);
  }

  // The words come from the server (capstream.core.messages), never from a copy in JS.
  async preview() {
    const seq = ++this.previewSeq;
    const url = `/v1/accounts/${encodeURIComponent(this.app.account)}/fallback-preview` +
      query({ message: this.f.fallback.value, language: this.f.language.value });
    try {
      const p = await this.app.api.get(url);
      if (seq !== this.previewSeq) return;
      this.f.daily.textContent = p.daily;
      this.f.monthly.textContent = p.monthly;
    } catch (e) {
      if (seq === this.previewSeq) this.f.daily.textContent = this.f.monthly.textContent = "";
    }
  }

  body() {
    const f = this.f;
    const caps = {};
    const current = (this.current && this.current.caps) || {};
    for (const c of CATEGORIES) {
      const was = current[c] || {};
      const cap = {};
      for (const period of ["daily", "monthly"]) {
        const input = document.getElementById(`cap-${c}-${period}`);
        const credits = `${period}_micro`;
        const amount = `${period}_amount_micro`;
        if (input.value === input.dataset.filled) {  // untouched: as it is, in its own unit
          cap[credits] = was[credits] ?? null;
          cap[amount] = was[amount] ?? null;
        } else if (this.inMoney) {  // the API converts the amount to credits
          cap[amount] = toMicro(input.value);
          cap[credits] = null;
        } else {
          cap[credits] = toMicro(input.value);
          cap[amount] = null;
        }
      }
      caps[c] = {  // nulls: no cap, no forecast (PATCH removes it)
        ...cap,
        daily_forecast_lead_s: toSeconds(document.getElementById(`cap-${c}-daily-lead`).value),
        monthly_forecast_lead_s: toSeconds(document.getElementById(`cap-${c}-monthly-lead`).value),
      };
    }
    const throttle = this.form.querySelector('input[name="throttle"]:checked');
    return {
      timezone: f.timezone.value.trim(),
      language: f.language.value,
      owner_email: f.owner.value.trim() || null,
      caps,
      fallback_message: f.fallback.value,
      auto_downgrade: f.downgrade.checked,
      premium_model: this.current.premium_model,
      downgrade_model: this.current.downgrade_model,
      throttle: throttle ? throttle.value : this.current.throttle,
    };
  }

  // Only what the form changed (PATCH keeps the rest, e.g. a change made meanwhile elsewhere).
  changes() {
    const body = this.body();
    const current = this.current || {};
    const out = {};
    for (const [k, v] of Object.entries(body)) {
      if (k === "caps") {
        const caps = {};
        for (const [c, pair] of Object.entries(v)) {
          const was = (current.caps || {})[c] || {};
          if (Object.entries(pair).some(([k, x]) => x !== (was[k] ?? null))) caps[c] = pair;
        }
        if (Object.keys(caps).length) out.caps = caps;
      } else if (v !== null && JSON.stringify(v) !== JSON.stringify(current[k])) {
        out[k] = v;
      }
    }
    return out;
  }

  async save() {
    clearErrors(this.form);
    this.f.saved.textContent = "";
    this.f.save.disabled = true;
    try {
      const s = await this.app.api.patch(this.url(), this.changes());
      this.current = s;
      this.fill(s);
      this.f.saved.textContent = "Saved. The processors apply it from the next usage event.";
      this.app.settingsChanged(s);
    } catch (e) {
      showErrors(this.form, e);
    } finally {
      this.f.save.disabled = false;
    }
  }
}
