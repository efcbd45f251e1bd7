// Notification channels: add a signed webhook, a Slack incoming webhook or an email list,
// route kinds to it, send a test, and watch its delivery log (every attempt, with the HTTP
// status the endpoint answered). Secrets go to the API once and are shown by their last 4
// characters only; a webhook's signing secret is made here, in the browser.
import { clearErrors, clock, h, replace, showErrors } from "./dom.js";

const KINDS = [
  ["policy_alert", "policy alert"], ["policy_warning", "policy warning"],
  ["cap_reached", "cap reached"], ["cap_warning", "cap warning"], ["cap_forecast", "cap forecast"],
  ["downgrade_started", "downgrade started"], ["downgrade_ended", "downgrade ended"],
  ["throttle_engaged", "throttle engaged"], ["block_lifted", "block lifted"],
  ["topup_request", "top-up request"],
];
const OPTIONAL = ["policy_warning", "cap_warning", "downgrade_started", "downgrade_ended",
  "throttle_engaged", "block_lifted"];
const $ = (id) => document.getElementById(id);

function newSecret() {
  const bytes = new Uint8Array(24);
  crypto.getRandomValues(bytes);
  return "whsec_" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class Channels {
  constructor(app) {
    this.app = app;
    this.form = $("channel-form");
    replace($("c-kinds"), KINDS.map(([k, label]) => h("label", { class: "check" },
      h("input", { type: "checkbox", value: k, "data-kind": k }), label)));
    $("c-type").addEventListener("change", () => this.showFields());
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.add(); });
    $("c-secret").value = newSecret();
    this.showFields();
  }

  // The kinds the tenant receives: a checkbox per kind that can be switched off; each click
  // PATCHes the settings' muted_notifications (the server validates, the box shows its answer).
  async refreshKinds() {
    const url = `/v1/accounts/${encodeURIComponent(this.app.account)}/settings`;
    const s = await this.app.api.get(url);
    const muted = new Set(s.muted_notifications || []);
    const label = Object.fromEntries(KINDS);
    const boxes = OPTIONAL.map((k) => h("input", {
      type: "checkbox", checked: !muted.has(k), "data-kind": k, "data-testid": `receive-${k}`,
    }));
    const save = async () => {
      $("muted-error").textContent = "";
      const off = boxes.filter((b) => !b.checked).map((b) => b.dataset.kind);
      try {
        const saved = await this.app.api.patch(url, { muted_notifications: off });
        const now = new Set(saved.muted_notifications);
        for (const b of boxes) b.checked = !now.has(b.dataset.kind);
      } catch (e) {
        $("muted-error").textContent = e.message;
      }
    };
    for (const b of boxes) b.addEventListener("change", save);
    replace($("muted-kinds"), boxes.map((b) => h("label", { class: "check" }, b, label[b.dataset.kind])));
  }

  base() {
    return `/v1/accounts/${encodeURIComponent(this.app.account)}/channels`;
  }

  showFields() {
    const type = $("c-type").value;
    for (const f of this.form.querySelectorAll("[data-for]")) f.hidden = f.dataset.for !== type;
  }

  async add() {
    clearErrors(this.form);
    const type = $("c-type").value;
    const body = {
      type,
      name: $("c-name").value.trim(),
      kinds: [...$("c-kinds").querySelectorAll("input:checked")].map((i) => i.value),
    };
    if (type === "webhook") Object.assign(body, { url: $("c-url").value.trim(), secret: $("c-secret").value });
    if (type === "slack") body.slack_url = $("c-slack").value.trim();
    if (type === "email") body.emails = $("c-emails").value.split(",").map((s) => s.trim()).filter(Boolean);
    $("channel-add").disabled = true;
    try {
      const ch = await this.app.api.post(this.base(), body);
      this.app.toast(`Channel ${ch.name || ch.channel_id} added.`);
      $("c-secret-used").textContent = type === "webhook"
        ? `Signing secret of ${ch.name || ch.channel_id}: ${body.secret} (copy it now)` : "";
      $("c-secret").value = newSecret();  // the next webhook gets its own
      for (const id of ["c-name", "c-url", "c-slack", "c-emails"]) $(id).value = "";
      await this.refresh();
    } catch (err) {
      showErrors(this.form, err);
    } finally {
      $("channel-add").disabled = false;
    }
  }

  async refresh() {
    const list = await this.app.api.get(this.base());
    const logs = await Promise.all(list.map((c) =>
      this.app.api.get(`${this.base()}/${encodeURIComponent(c.channel_id)}/deliveries`)));
    if (!list.length) {
      replace($("channels"), h("p", { class: "empty", text: "No channel yet: notifications go by email to the account owner." }));
      return;
    }
    replace($("channels"), list.map((c, i) => this.row(c, logs[i])));
  }

  row(c, log) {
    const where = c.type === "email" ? c.emails.join(", ") : c.url;
    const secret = c.secret_hint ? ` · secret ${c.secret_hint}` : "";
    const kinds = c.kinds.length ? c.kinds.join(", ") : "every kind";
    const id = encodeURIComponent(c.channel_id);
    const test = async () => {
      try {
        await this.app.api.post(`${this.base()}/${id}/test`);
        this.app.toast("Test sent: watch the delivery log.");
        setTimeout(() => this.refresh().catch(() => {}), 1000);
      } catch (e) {
        this.app.toast(e.message);
      }
    };
    const remove = async () => {
      try {
        await this.app.api.del(`${this.base()}/${id}`);
        await this.refresh();
      } catch (e) {
        this.app.toast(e.message);
      }
    };
    const rows = log.map((a) => h("tr", {
      "data-testid": "delivery-row", "data-outcome": a.outcome,
      "data-status": a.status_code === null ? "" : String(a.status_code), "data-kind": a.kind,
    },
      h("td", { text: clock(a.at_ms, this.app.tz, true) }),
      h("td", { text: a.kind }),
      h("td", { text: `#${a.attempt}` }),
      h("td", {}, h("span", { class: `badge ${a.outcome === "delivered" ? "ok" : a.outcome === "retry" ? "warn" : "bad"}`, text: a.outcome })),
      h("td", { text: a.status_code === null ? "—" : String(a.status_code) }),
      h("td", { text: a.error || (a.next_attempt_ms ? `next ${clock(a.next_attempt_ms, this.app.tz)}` : "") })));
    return h("div", { class: "card channel", "data-testid": "channel-row", "data-channel": c.channel_id },
      h("div", { class: "card-head" },
        h("h3", { text: `${c.name || c.channel_id} (${c.type})` }),
        h("span", { class: `badge ${c.enabled ? "ok" : "grey"}`, text: c.enabled ? "on" : "off" })),
      h("p", { class: "muted", text: `${where}${secret} · ${kinds}` }),
      h("div", { class: "buttons" },
        h("button", { type: "button", "data-testid": "channel-test", onclick: test, text: "Send test" }),
        h("button", { type: "button", class: "link", onclick: remove, text: "Delete" })),
      h("h4", { text: "Delivery log" }),
      rows.length
        ? h("table", { "data-testid": "delivery-log" },
          h("thead", {}, h("tr", {}, ...["when", "kind", "attempt", "outcome", "HTTP", "detail"].map((t) => h("th", { text: t })))),
          h("tbody", {}, rows))
        : h("p", { class: "empty", text: "No attempt yet." }));
  }
}
