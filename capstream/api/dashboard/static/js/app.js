// The dashboard: log in with an account key, tabs, and polling that keeps the live view current.
import { Api, ApiError, query } from "./api.js";
import { Channels } from "./channels.js";
import { drawChart } from "./chart.js";
import { Grants } from "./grants.js";
import { HistoryView } from "./history.js";
import { clock, h, today } from "./dom.js";
import { refreshInbox } from "./inbox.js";
import { renderFeed, renderLive } from "./live.js";
import { Policies } from "./policies.js";
import { Prices } from "./prices.js";
import { CapSettings } from "./settings.js";

const KEY = "capstream.apiKey";
const LIVE_EVERY_MS = 2000;
const CHART_EVERY_MS = 10000;
const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.api = null;
    this.account = null;
    this.plan = null;
    this.tz = "UTC";
    this.bots = [];
    this.tab = null;
    this.timer = null;
    this.lastChart = 0;
    this.policies = new Policies(this);
    this.settings = new CapSettings(this);
    this.channels = new Channels(this);
    this.grants = new Grants(this);
    this.prices = new Prices(this);
    this.history = new HistoryView(this);
    $("login-form").addEventListener("submit", (e) => { e.preventDefault(); this.login($("api-key").value.trim()); });
    $("logout").addEventListener("click", () => this.logout());
    window.addEventListener("hashchange", () => this.show(this.route()));
    $("chart-metric").addEventListener("change", () => this.refreshChart());
    $("chart-range").addEventListener("change", () => this.refreshChart());
    $("feed-day").addEventListener("change", () => this.refreshLive());
    document.addEventListener("visibilitychange", () => { if (!document.hidden) this.tick(); });
    let resize = null;
    window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(() => this.drawLastChart(), 150); });
    this.setupTopup();
  }

  async start() {
    const key = sessionStorage.getItem(KEY);
    if (key) await this.login(key, true);
    else this.showLogin();
  }

  showLogin(message) {
    $("app").hidden = true;
    $("who").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("api-key").focus();
  }

  async login(key, silent) {
    $("login-error").textContent = "";
    if (!key) return this.showLogin("Paste your API key.");
    const api = new Api(key);
    let me;
    try {
      me = await api.get("/v1/me");
    } catch (e) {
      sessionStorage.removeItem(KEY);
      return this.showLogin(e.status === 401 ? "That key is unknown or revoked." : e.message);
    }
    if (me.admin) {
      return this.showLogin("That is the admin key; the dashboard is for one account — use its csk_ key.");
    }
    sessionStorage.setItem(KEY, key);
    this.api = api;
    this.account = me.account_id;
    this.plan = me.plan;
    this.tz = me.timezone || "UTC";
    this.bots = me.bots;
    $("who-account").textContent = me.account_id;
    $("who-plan").textContent = me.plan;
    $("who").hidden = false;
    $("login").hidden = true;
    $("app").hidden = false;
    $("api-key").value = "";
    $("feed-day").value = today(this.tz);
    this.show(this.route());
    if (!silent) window.scrollTo(0, 0);
  }

  logout() {
    sessionStorage.removeItem(KEY);
    clearTimeout(this.timer);
    this.api = null;
    this.account = null;
    this.showLogin();
  }

  route() {
    const tab = (location.hash || "#live").slice(1);
    return ["live", "policies", "settings", "channels", "history", "inbox"].includes(tab) ? tab : "live";
  }

  show(tab) {
    if (!this.api) return;
    this.tab = tab;
    for (const a of document.querySelectorAll(".tabs a")) a.setAttribute("aria-selected", String(a.dataset.tab === tab));
    for (const s of document.querySelectorAll(".tab")) s.hidden = s.dataset.tab !== tab;
    if (tab === "policies") this.guard(this.policies.refresh());
    if (tab === "settings") {
      this.guard(this.prices.refresh().then(() => this.settings.refresh()).then(() => this.grants.refresh()));
    }
    if (tab === "channels") this.guard(this.channels.refreshKinds());
    if (tab === "history") this.guard(this.history.refresh());
    this.lastChart = 0;
    this.tick();
  }

  /** The account's currency and rate (or null), from the prices card. */
  pricesChanged(unit) {
    this.settings.setUnit(unit);
  }

  async guard(promise) {
    try {
      await promise;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) this.logout();
      else this.toast(e.message);
    }
  }

  // One loop: refresh what the visible tab shows, then sleep.
  async tick() {
    clearTimeout(this.timer);
    if (!this.api || document.hidden) return;
    const status = $("live-status");
    try {
      if (this.tab === "live") {
        await this.refreshLive();
        if (Date.now() - this.lastChart > CHART_EVERY_MS) await this.refreshChart();
      } else if (this.tab === "history") {
        await this.history.refresh();  // new alerts, blocks and caps land while the tab is open
      } else if (this.tab === "inbox") {
        await refreshInbox(this, $("inbox"), $("inbox-note"));
      } else if (this.tab === "channels") {
        await this.channels.refresh();  // the delivery logs move while the notifier works
      }
      status.textContent = `live · ${clock(Date.now(), this.tz)}`;
      status.classList.remove("stale");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return this.logout();
      status.textContent = e.status === 503 ? "waiting for ClickHouse…" : e.message;
      status.classList.add("stale");
    }
    this.timer = setTimeout(() => this.tick(), LIVE_EVERY_MS);
  }

  async refreshLive() {
    const a = encodeURIComponent(this.account);
    const day = $("feed-day").value;
    const [live, feed] = await Promise.all([
      this.api.get(`/v1/accounts/${a}/live`),
      this.api.get(`/v1/accounts/${a}/feed${query({ day })}`),
    ]);
    this.tz = live.timezone;
    this.plan = live.plan;
    $("who-plan").textContent = live.plan;
    const cta = (text, category, period) => this.cta(text, category, period);
    const resume = (bot) => this.resume(bot);
    renderLive({ bots: $("bots"), policies: $("policy-usage"), caps: $("caps") }, live, cta, resume);
    renderFeed($("feed"), feed, cta);
  }

  async refreshChart() {
    const a = encodeURIComponent(this.account);
    const params = query({ metric: $("chart-metric").value, range: $("chart-range").value });
    this.chartData = await this.api.get(`/v1/accounts/${a}/usage/series${params}`);
    this.lastChart = Date.now();
    this.drawLastChart();
  }

  drawLastChart() {
    if (this.chartData && this.tab === "live") drawChart($("chart"), this.chartData, this.tz);
  }

  settingsChanged(s) {
    this.tz = s.timezone;
  }

  // A paused bot's "Resume now": the processors lift its block within moments.
  async resume(bot) {
    const a = encodeURIComponent(this.account);
    try {
      await this.api.post(`/v1/accounts/${a}/bots/${encodeURIComponent(bot)}/resume`,
        { requested_by: "dashboard" });
      this.toast(`Resuming ${bot}: the block lifts within moments.`);
      setTimeout(() => this.refreshLive().catch(() => {}), 1500);
    } catch (e) {
      this.toast(e.message);
    }
  }

  cta(text, category, period) {
    if (text.startsWith("Upgrade")) {
      $("upgrade-dialog").showModal();
      return;
    }
    $("t-category").value = category || "text";
    $("t-period").value = period || "monthly";
    $("t-note").value = "";
    $("topup-error").textContent = "";
    $("topup-ok").textContent = "";
    $("topup-send").disabled = false;
    $("topup-dialog").showModal();
  }

  setupTopup() {
    $("topup-close").addEventListener("click", () => $("topup-dialog").close());
    $("upgrade-close").addEventListener("click", () => $("upgrade-dialog").close());
    $("topup-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      $("topup-error").textContent = "";
      $("topup-send").disabled = true;
      try {
        const r = await this.api.post(`/v1/accounts/${encodeURIComponent(this.account)}/topup-requests`, {
          category: $("t-category").value,
          period: $("t-period").value,
          note: $("t-note").value,
          requested_by: "dashboard",
        });
        $("topup-ok").textContent = `Requested: ${r.message}.`;
      } catch (err) {
        $("topup-error").textContent = err.message;
        $("topup-send").disabled = false;
      }
    });
  }

  toast(message) {
    for (const old of document.querySelectorAll(".toast")) old.remove();  // one at a time
    const t = h("div", { class: "toast", role: "status", text: message });
    document.body.append(t);
    setTimeout(() => t.remove(), 4000);
  }
}

new App().start();
