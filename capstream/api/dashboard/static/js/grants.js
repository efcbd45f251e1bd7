// Credit grants: approve a top-up or add credit to a cap for the current period; the list.
import { clearErrors, clock, credits, h, replace, showErrors } from "./dom.js";

export class Grants {
  constructor(app) {
    this.app = app;
    this.form = document.getElementById("grant-form");
    this.list = document.getElementById("grant-list");
    const $ = (id) => document.getElementById(id);
    this.f = {
      category: $("g-category"), period: $("g-period"), amount: $("g-amount"),
      expires: $("g-expires"), request: $("g-request"), note: $("g-note"), save: $("grant-save"),
    };
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
  }

  base() { return `/v1/accounts/${encodeURIComponent(this.app.account)}/grants`; }

  async refresh() {
    this.render(await this.app.api.get(this.base()));
  }

  body() {
    const f = this.f;
    const text = f.amount.value.trim();
    const hours = f.expires.value.trim();
    // the server checks the numbers: a blank or bad amount comes back as a field error
    const micro = text === "" ? null : Math.round(Number(text) * 1e6);
    const body = {
      category: f.category.value, period: f.period.value,
      amount_micro: Number.isFinite(micro) ? micro : text, note: f.note.value.trim(),
    };
    if (hours !== "") body.expires_at_ms = Date.now() + Math.round(Number(hours) * 3600000);
    if (f.request.value.trim()) body.request_id = f.request.value.trim();
    return body;
  }

  async save() {
    clearErrors(this.form);
    this.f.save.disabled = true;
    try {
      const g = await this.app.api.post(this.base(), this.body());
      this.f.amount.value = this.f.expires.value = this.f.request.value = this.f.note.value = "";
      this.app.toast(g.message);
      await this.refresh();
    } catch (e) {
      showErrors(this.form, e);
    } finally {
      this.f.save.disabled = false;
    }
  }

  render(grants) {
    if (!grants.length) {
      replace(this.list, h("p", { class: "empty", text: "No grants yet." }));
      return;
    }
    const tz = this.app.tz;
    replace(this.list, h("table", { class: "grants", "data-testid": "grants" },
      h("thead", {}, h("tr", {}, ...["When", "Cap", "Added", "Cap now", "By", "Status"].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...grants.map((g) => h("tr", { "data-testid": "grant-row", "data-grant": g.grant_id },
        h("td", { text: clock(g.granted_at_ms, tz, true) }),
        h("td", { text: `${g.category} ${g.period} (${g.period_key})` }),
        h("td", { text: `+${credits(g.amount_micro)}` }),
        h("td", { text: g.cap_micro === null ? "" : credits(g.cap_micro) }),
        h("td", { text: g.granted_by + (g.note ? ` — ${g.note}` : "") }),
        h("td", { "data-testid": "grant-status", class: g.applies_now ? "ok" : "muted",
          text: g.applies_now ? `in force until ${clock(g.ends_at_ms, tz, true)}` : "ended" }))))));
  }
}
