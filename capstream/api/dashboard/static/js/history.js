// History: alerts, blocks (who lifted them), cap periods and grants, filtered by bot, kind, time.
import { query } from "./api.js";
import { clock, credits, h, replace } from "./dom.js";

const DAY_MS = 86400000;
const WORDS = { alert: "Alert", warning: "Warning", block: "Block", cap: "Cap reached", grant: "Grant" };

export class HistoryView {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("history");
    this.bot = document.getElementById("history-bot");
    this.kind = document.getElementById("history-kind");
    this.range = document.getElementById("history-range");
    for (const el of [this.bot, this.kind, this.range]) el.addEventListener("change", () => this.app.guard(this.refresh()));
  }

  async refresh() {
    if (this.bot.options.length !== this.app.bots.length + 1) {  // not on every poll: it is in use
      const chosen = this.bot.value;
      replace(this.bot, h("option", { value: "", text: "every bot" }),
        ...this.app.bots.map((b) => h("option", { value: b.bot_id, text: b.name ? `${b.name} (${b.bot_id})` : b.bot_id })));
      this.bot.value = this.app.bots.some((b) => b.bot_id === chosen) ? chosen : "";
    }
    const to = Date.now();
    const params = { bot_id: this.bot.value, kind: this.kind.value, from_ms: to - Number(this.range.value) * DAY_MS, to_ms: to };
    const a = encodeURIComponent(this.app.account);
    this.render(await this.app.api.get(`/v1/accounts/${a}/history${query(params)}`));
  }

  what(e) {
    const policy = e.policy_name ? `“${e.policy_name}”` : e.policy_id;
    const bot = e.bot_id === "*" ? "every bot" : e.bot_id;
    if (e.kind === "alert" || e.kind === "warning") return `${e.subject || ""}${bot ? ` — ${bot}` : ""}`;
    if (e.kind === "block") return `${bot} paused by policy ${policy}`;
    if (e.kind === "cap") return `${e.category} ${e.period} cap (${e.period_key})`;
    return `+${credits(e.amount_micro)} credits to the ${e.category} ${e.period} cap (${e.period_key}) by ${e.by}${e.subject ? ` — ${e.subject}` : ""}`;
  }

  outcome(e, tz) {
    if (e.kind === "block" || e.kind === "cap") {
      if (e.lifted_by) return `lifted ${clock(e.lifted_at_ms, tz, true)} by ${e.lifted_by}`;
      return e.ongoing ? `until ${clock(e.until_ms, tz, true)}` : `ended ${clock(e.until_ms, tz, true)}`;
    }
    if (e.kind === "grant" && e.until_ms) return `until ${clock(e.until_ms, tz, true)}`;
    return "";
  }

  render(hist) {
    const tz = this.app.tz;
    if (!hist.entries.length) {
      replace(this.root, h("p", { class: "empty", text: "Nothing in this range." }));
      return;
    }
    replace(this.root, h("table", { "data-testid": "history-table" },
      h("thead", {}, h("tr", {}, ...["When", "What", "", "Outcome"].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...hist.entries.map((e) => h("tr", { "data-testid": "history-row", "data-kind": e.kind, "data-bot": e.bot_id || "" },
        h("td", { text: clock(e.at_ms, tz, true) }),
        h("td", { class: e.kind === "block" ? "bad" : "", text: WORDS[e.kind] }),
        h("td", { text: this.what(e) }),
        h("td", { "data-testid": "history-outcome", text: this.outcome(e, tz) }))))),
    hist.truncated ? h("p", { class: "hint", text: "More happened than one page shows: narrow the range or pick a bot." }) : null);
  }
}
