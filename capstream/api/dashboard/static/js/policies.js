// Policies: list, create, edit, enable/disable, delete; presets; errors next to the fields.
import { query } from "./api.js";
import { amount, clearErrors, duration, h, replace, showErrors } from "./dom.js";
import { attachTryOnPast } from "./simulate.js";

const PERIODS = { day: "this day", week: "this week", month: "this month" };
const PER = { end_user: "end user", api_key: "API key", team: "team", model: "model" };
const SCOPES = { bot: "one bot", account_each_bot: "every bot, each on its own", account_total: "all bots together" };

function bestUnit(seconds, units) {
  for (const u of units) if (seconds % u === 0 && seconds / u >= 1) return u;
  return units[units.length - 1];
}

export class Policies {
  constructor(app) {
    this.app = app;
    this.list = document.getElementById("policy-list");
    this.editor = document.getElementById("policy-editor");
    this.form = document.getElementById("policy-form");
    this.title = document.getElementById("policy-editor-title");
    this.presets = document.getElementById("presets");
    this.editing = null;
    const $ = (id) => document.getElementById(id);
    this.f = {
      name: $("p-name"), metric: $("p-metric"), category: $("p-category"),
      threshold: $("p-threshold"), window: $("p-window"), windowUnit: $("p-window-unit"),
      period: $("p-period"), windowField: $("p-window-field"),
      scope: $("p-scope"), bot: $("p-bot"), alert: $("p-alert"), recipients: $("p-recipients"),
      block: $("p-block"), blockDuration: $("p-block-duration"), blockUnit: $("p-block-unit"),
      enabled: $("p-enabled"), save: $("policy-save"), warn: $("p-warn"),
      money: $("p-threshold-money"), moneyField: $("p-money-field"), moneyUnit: $("p-money-unit"),
      moneyCredits: $("p-money-credits"),
      per: $("p-per"), perValue: $("p-per-value"), blockLabel: $("p-block-label"),
    };
    this.f.money.addEventListener("input", () => this.hintMoney());
    this.filterBot = $("policy-filter-bot");
    this.filterBot.addEventListener("change", () => this.refresh());
    $("policy-new").addEventListener("click", () => this.open(null));
    $("policy-cancel").addEventListener("click", () => this.close());
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
    attachTryOnPast(app, {
      form: this.form, anchor: this.f.save, kind: "policy",
      draft: () => ({ policy: this.body(), replaces: this.editing ? this.editing.policy_id : null }),
    });
    for (const el of [this.f.metric, this.f.scope, this.f.alert, this.f.block, this.f.period, this.f.per]) {
      el.addEventListener("change", () => this.sync());
    }
  }

  base() { return `/v1/accounts/${encodeURIComponent(this.app.account)}/policies`; }

  async refresh() {
    // the server filters: a bot's own policies and the account-wide ones that cover it
    const chosen = this.filterBot.value;
    replace(this.filterBot, h("option", { value: "", text: "every bot" }),
      ...this.app.bots.map((b) => h("option", { value: b.bot_id, text: b.name ? `${b.name} (${b.bot_id})` : b.bot_id })));
    this.filterBot.value = this.app.bots.some((b) => b.bot_id === chosen) ? chosen : "";
    if (!this.app.prices.current) await this.app.prices.refresh().catch(() => undefined);
    const policies = await this.app.api.get(`${this.base()}${query({ bot_id: this.filterBot.value })}`);
    this.render(policies);
  }

  summary(p) {
    const scope = p.scope === "bot" ? `bot ${p.bot_id}` : SCOPES[p.scope];
    const what = `${p.metric}${p.category ? ` (${p.category})` : ""} ≥ ${amount(p.metric, p.threshold).replace(` ${p.metric}`, "")} ${p.period ? PERIODS[p.period] : `in ${duration(p.window_seconds)}`}`;
    const acts = [];
    if (p.alert) acts.push(p.alert.recipients.length ? `email ${p.alert.recipients.join(", ")}` : "email the owner");
    if (p.block) acts.push(p.per ? `block that ${PER[p.per]} ${duration(p.block.duration_seconds)}` : `pause ${duration(p.block.duration_seconds)}`);
    const unit = this.app.prices.unit;
    const money = p.threshold_amount_micro != null && unit ? ` (${p.threshold_amount_micro / 1e6} ${unit.currency})` : "";
    const per = p.per ? (p.per_value ? ` · ${PER[p.per]} ${p.per_value} only` : ` · each ${PER[p.per]} on its own`) : "";
    return `${what}${money} · ${scope}${per} · ${acts.join(" + ")}`;
  }

  render(policies) {
    if (!policies.length) {
      const text = this.filterBot.value ? `No policy watches ${this.filterBot.value}.`
        : "No policies yet. Start from a preset with “New policy”.";
      replace(this.list, h("p", { class: "empty", text }));
      return;
    }
    replace(this.list, policies.map((p) => h("div", {
      class: `policy${p.enabled ? "" : " off"}`, "data-testid": "policy-row", "data-policy": p.policy_id,
    },
    h("div", { class: "what" },
      h("div", { class: "name", text: p.name || p.policy_id }),
      h("div", { class: "summary", text: this.summary(p) })),
    h("div", { class: "acts" },
      h("label", { class: "switch" },
        h("input", { type: "checkbox", checked: p.enabled, "data-testid": "policy-enabled",
          onchange: (e) => this.toggle(p, e.target) }),
        p.enabled ? "enabled" : "disabled"),
      h("button", { type: "button", class: "small", onclick: () => this.open(p), text: "Edit" }),
      h("button", { type: "button", class: "small", onclick: () => this.remove(p), text: "Delete" })))));
  }

  async toggle(p, box) {
    box.disabled = true;
    try {
      await this.app.api.post(`${this.base()}/${encodeURIComponent(p.policy_id)}/${box.checked ? "enable" : "disable"}`);
    } catch (e) {
      this.app.toast(e.message);
    }
    await this.refresh();
  }

  async remove(p) {
    if (!window.confirm(`Delete the policy “${p.name || p.policy_id}”?`)) return;
    try {
      await this.app.api.del(`${this.base()}/${encodeURIComponent(p.policy_id)}`);
      if (this.editing && this.editing.policy_id === p.policy_id) this.close();
    } catch (e) {
      this.app.toast(e.message);
    }
    await this.refresh();
  }

  async loadPresets() {
    const bot = this.f.scope.value === "bot" ? this.f.bot.value : "";
    try {
      const presets = await this.app.api.get(`/v1/presets${query({ bot_id: bot })}`);
      replace(this.presets, presets.map((p) => h("button", {
        type: "button", "data-preset": p.preset, onclick: () => this.fill(p.policy),
      }, h("b", { text: p.policy.name }), h("small", { text: p.description }))));
    } catch (e) {
      replace(this.presets);
    }
  }

  open(policy) {
    this.editing = policy;
    clearErrors(this.form);
    this.title.textContent = policy ? `Edit “${policy.name || policy.policy_id}”` : "New policy";
    this.f.save.textContent = policy ? "Save changes" : "Create policy";
    replace(this.f.bot, this.app.bots.map((b) => h("option", { value: b.bot_id, text: b.name ? `${b.name} (${b.bot_id})` : b.bot_id })));
    this.fill(policy || {
      name: "", metric: "tokens", threshold: "", window_seconds: 3600, scope: "account_each_bot",
      bot_id: null, category: null, alert: { recipients: [] }, block: null, enabled: true,
      warn_percents: null, per: null, per_value: null,
    });
    this.presets.hidden = !!policy;
    if (!policy) this.loadPresets();
    this.editor.hidden = false;
    this.editor.scrollIntoView({ behavior: "smooth", block: "start" });
    this.f.name.focus({ preventScroll: true });
  }

  close() {
    this.editor.hidden = true;
    this.editing = null;
  }

  fill(p) {
    const f = this.f;
    f.name.value = p.name || "";
    f.metric.value = p.metric;
    f.category.value = p.category || "";
    f.threshold.value = p.threshold;
    f.money.value = p.threshold_amount_micro != null ? String(p.threshold_amount_micro / 1e6) : "";
    f.period.value = p.period || "";
    const seconds = p.window_seconds || 3600; // a calendar policy's is 0: offer an hour
    const wu = bestUnit(seconds, [86400, 3600, 60]);
    f.windowUnit.value = String(wu);
    f.window.value = seconds / wu;
    f.scope.value = p.scope;
    if (p.bot_id) f.bot.value = p.bot_id;
    f.alert.checked = !!p.alert;
    f.recipients.value = p.alert ? p.alert.recipients.join(", ") : "";
    f.block.checked = !!p.block;
    if (p.block) {
      const bu = bestUnit(p.block.duration_seconds, [86400, 3600, 60]);
      f.blockUnit.value = String(bu);
      f.blockDuration.value = p.block.duration_seconds / bu;
    } else {
      f.blockDuration.value = 60;
      f.blockUnit.value = "60";
    }
    f.enabled.checked = p.enabled !== false;
    f.per.value = p.per || "";
    f.perValue.value = p.per_value || "";
    // null: the default levels (shown as they are); []: none (blank)
    f.warn.value = (p.warn_percents === null || p.warn_percents === undefined ? [50, 80, 90] : p.warn_percents).join(", ");
    this.sync();
  }

  sync() {
    const f = this.f;
    f.category.disabled = f.metric.value !== "credits";
    if (f.category.disabled) f.category.value = "";
    f.bot.disabled = f.scope.value !== "bot";
    f.recipients.disabled = !f.alert.checked;
    f.blockDuration.disabled = f.blockUnit.disabled = !f.block.checked;
    f.window.disabled = f.windowUnit.disabled = f.period.value !== "";
    f.windowField.hidden = f.period.value !== "";
    // a credits threshold may be given in the account's currency (the API converts it)
    const unit = this.app.prices.unit;
    f.moneyField.hidden = f.metric.value !== "credits" || !unit;
    f.moneyUnit.textContent = unit ? `(${unit.currency}; blank = the threshold in credits)` : "";
    this.hintMoney();
    f.perValue.disabled = f.per.value === "";
    if (f.perValue.disabled) f.perValue.value = "";
    f.blockLabel.textContent = f.per.value ? `Block that ${PER[f.per.value]} for` : "Pause the bot for";
  }

  hintMoney() {
    const unit = this.app.prices.unit;
    const v = Number(this.f.money.value.trim());
    this.f.moneyCredits.textContent = unit && this.f.money.value.trim() !== "" && Number.isFinite(v)
      ? `= ${(Math.floor(v * unit.rate) / 1e6).toLocaleString("en-US")} credits` : "";
  }

  get inMoney() {
    return this.f.metric.value === "credits" && !!this.app.prices.unit && this.f.money.value.trim() !== "";
  }

  fields() {
    const f = this.f;
    const int = (el) => (el.value.trim() === "" ? null : Number(el.value));
    const windowValue = int(f.window);
    const blockValue = int(f.blockDuration);
    return {
      name: f.name.value.trim(),
      metric: f.metric.value,
      threshold: int(f.threshold),
      // a calendar policy has no rolling window: exactly one of the two goes to the API
      window_seconds: f.period.value || windowValue === null ? null : windowValue * Number(f.windowUnit.value),
      period: f.period.value || null,
      scope: f.scope.value,
      bot_id: f.scope.value === "bot" ? f.bot.value || null : null,
      category: f.metric.value === "credits" && f.category.value ? f.category.value : null,
      alert: f.alert.checked
        ? { recipients: f.recipients.value.split(",").map((s) => s.trim()).filter(Boolean) } : null,
      block: f.block.checked
        ? { duration_seconds: blockValue === null ? null : blockValue * Number(f.blockUnit.value) } : null,
      enabled: f.enabled.checked,
      // the server validates (whole percentages 1-99): a typo comes back as a field error
      warn_percents: f.warn.value.split(",").map((s) => s.trim()).filter(Boolean)
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s)),
      per: f.per.value || null,
      per_value: f.per.value && f.perValue.value.trim() ? f.perValue.value.trim() : null,
    };
  }

  /** The form as the API takes it (a threshold in money replaces the one in credits). */
  body() {
    const body = this.fields();
    if (this.inMoney) {  // naming threshold alone puts it back in credits
      delete body.threshold;
      const v = Number(this.f.money.value.trim());
      body.threshold_amount_micro = Number.isFinite(v) ? Math.round(v * 1e6) : this.f.money.value.trim();
    }
    return body;
  }

  async save() {
    clearErrors(this.form);
    const body = this.body();
    const editing = this.editing;
    this.f.save.disabled = true;
    try {
      if (editing) {
        await this.app.api.patch(`${this.base()}/${encodeURIComponent(editing.policy_id)}`, body);
      } else {
        await this.app.api.post(this.base(), body);
      }
      this.close();
      await this.refresh();
      this.app.toast(editing ? "Policy saved." : "Policy created: it applies from the next usage event.");
    } catch (e) {
      showErrors(this.form, e);
    } finally {
      this.f.save.disabled = false;
    }
  }
}
