// Prices (budgets in money): the account's currency, what one unit is worth in credits, and
// its price per model (per 1M input / output tokens); the platform's prices shown beside.
// Saved whole with PUT …/prices; the SDK derives an event's credits from its tokens with them.
import { clearErrors, h, replace, showErrors } from "./dom.js";

function money(micro) {
  return micro === null || micro === undefined ? "" : String(micro / 1e6);
}

function micro(text) {
  const t = String(text).trim();
  if (t === "") return t; // the server names the missing price
  const v = Number(t);
  return Number.isFinite(v) ? Math.round(v * 1e6) : t;
}

export class Prices {
  constructor(app) {
    this.app = app;
    this.form = document.getElementById("prices-form");
    const $ = (id) => document.getElementById(id);
    this.f = {
      currency: $("pr-currency"), rate: $("pr-rate"), rows: $("pr-models"), platform: $("pr-platform"),
      add: $("pr-add"), save: $("prices-save"), saved: $("prices-saved"),
    };
    this.current = null;
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
    this.f.add.addEventListener("click", () => this.f.rows.append(this.row("", null)));
  }

  url() { return `/v1/accounts/${encodeURIComponent(this.app.account)}/prices`; }

  async refresh() {
    this.fill(await this.app.api.get(this.url()));
  }

  /** The account's currency and rate (null: none yet), for the caps in money. */
  get unit() {
    const eff = this.current && this.current.effective;
    return eff ? { currency: eff.currency, rate: eff.credits_per_unit_micro } : null;
  }

  fill(p) {
    this.current = p;
    const own = p.own;
    const eff = p.effective;
    this.f.currency.value = own ? own.currency : eff ? eff.currency : "USD";
    this.f.rate.value = String((own ? own.credits_per_unit_micro : eff ? eff.credits_per_unit_micro : 1e6) / 1e6);
    replace(this.f.rows, Object.entries(own ? own.models : {}).map(([name, m]) => this.row(name, m)));
    const platform = eff ? Object.entries(eff.models).filter(([, m]) => m.source === "platform") : [];
    replace(this.f.platform, platform.length
      ? h("p", { class: "hint", "data-testid": "platform-prices",
        text: "From the platform (add a model of the same name to set your own): " +
          platform.map(([n, m]) => `${n} ${money(m.input_per_mtok_micro)} / ${money(m.output_per_mtok_micro)}`).join(", ") })
      : null);
    this.app.pricesChanged(this.unit);
  }

  row(name, m) {
    const tr = h("tr", { "data-testid": "price-row" },
      h("td", {}, h("input", { class: "p-name", value: name, spellcheck: "false", "aria-label": "model", placeholder: "model name" })),
      h("td", {}, h("input", { class: "p-in", type: "number", min: "0", step: "any", inputmode: "decimal",
        value: m ? money(m.input_per_mtok_micro) : "", "aria-label": "price per 1M input tokens" })),
      h("td", {}, h("input", { class: "p-out", type: "number", min: "0", step: "any", inputmode: "decimal",
        value: m ? money(m.output_per_mtok_micro) : "", "aria-label": "price per 1M output tokens" })),
      h("td", {}, h("button", { type: "button", class: "small", text: "Remove", onclick: () => tr.remove() })));
    tr.categories = m ? m.categories : {}; // per-category prices are kept as they are
    return tr;
  }

  body() {
    const models = {};
    for (const tr of this.f.rows.querySelectorAll("tr")) {
      const name = tr.querySelector(".p-name").value.trim();
      if (!name) continue;
      models[name] = {
        input_per_mtok_micro: micro(tr.querySelector(".p-in").value),
        output_per_mtok_micro: micro(tr.querySelector(".p-out").value),
        categories: tr.categories || {},
      };
    }
    return {
      currency: this.f.currency.value.trim().toUpperCase(),
      credits_per_unit_micro: micro(this.f.rate.value),
      models,
    };
  }

  async save() {
    clearErrors(this.form);
    this.f.saved.textContent = "";
    this.f.save.disabled = true;
    try {
      this.fill(await this.app.api.put(this.url(), this.body()));
      this.f.saved.textContent = "Saved. Caps and thresholds set in money are converted at this rate.";
      await this.app.settings.refresh();
    } catch (e) {
      showErrors(this.form, e);
    } finally {
      this.f.save.disabled = false;
    }
  }
}
