// The live panel: bots with their enforcement state, policies and caps now, and the feed.
import { amount, clock, credits, duration, h, num, replace, sameDay } from "./dom.js";

const CATEGORY_WORDS = { text: "Text AI", vision: "Vision", audio: "Audio", documents: "Documents" };
const SCOPES = { bot: "one bot", account_each_bot: "every bot", account_total: "all bots together" };

function until(ms, now, tz) {
  if (!ms) return "";
  return sameDay(ms, now, tz) ? clock(ms, tz) : clock(ms, tz, true);
}

function botStates(bot, now, tz, policyNames, onResume) {
  const s = bot.state;
  if (!s) return { badge: ["no decisions yet", "grey"], lines: [] };
  const lines = [];
  let badge = ["active", "ok"];
  const blocked = s.blocked_until_ms && s.blocked_until_ms > now;
  const capped = s.caps.filter((c) => c.resumes_at_ms > now);
  const downgraded = s.downgraded_until_ms && s.downgraded_until_ms > now;
  const throttled = s.batching_interval_s >= 60;
  if (blocked) {
    const name = policyNames[s.block_policy_id] || s.block_policy_id || "a policy";
    lines.push(h("div", { class: "state bad", "data-testid": "bot-blocked" },
      `Paused by policy “${name}” until ${until(s.blocked_until_ms, now, tz)}`,
      onResume ? h("button", { type: "button", class: "cta", "data-testid": "bot-resume",
        title: "Lift the block now (recorded with your key in the decisions)",
        onclick: () => onResume(bot.bot_id), text: "Resume now" }) : null));
    badge = ["blocked", "bad"];
  }
  for (const c of capped) {
    lines.push(h("div", { class: "state warn", "data-testid": "bot-capped" },
      `${CATEGORY_WORDS[c.category] || c.category} capped (${c.period}) — resumes ` +
      `${until(c.resumes_at_ms, now, tz)}`));
    if (!blocked) badge = ["capped", "warn"];
  }
  lines.push(h("div", { class: downgraded ? "state warn" : "state", "data-testid": "bot-model" },
    `Model: ${s.model}` + (downgraded ? ` (downgraded until ${until(s.downgraded_until_ms, now, tz)})` : "")));
  let batching = `Batching: ${s.batching_interval_s} s`;
  if (throttled) {
    const why = s.throttle_reason ? ` (${s.throttle_reason.replaceAll("_", " ")})` : "";
    const end = s.throttled_until_ms ? ` until ${until(s.throttled_until_ms, now, tz)}` : "";
    batching += ` — throttled${why}${end}`;
    if (badge[0] === "active") badge = ["throttled", "warn"];
  }
  if (downgraded && badge[0] === "active") badge = ["downgraded", "warn"];
  lines.push(h("div", { class: throttled ? "state warn" : "state", "data-testid": "bot-batching" }, batching));
  return { badge, lines };
}

function botCard(bot, now, tz, policyNames, onResume) {
  const { badge, lines } = botStates(bot, now, tz, policyNames, onResume);
  const cats = Object.entries(bot.usage);
  const table = cats.length
    ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "today" }), h("th", { class: "num", text: "credits" }),
        h("th", { class: "num", text: "tokens" }), h("th", { class: "num", text: "msgs" }),
        h("th", { class: "num", text: "month" }))),
      h("tbody", {}, cats.map(([cat, u]) => h("tr", { "data-category": cat },
        h("td", { text: cat }), h("td", { class: "num", text: credits(u.day_credits_micro) }),
        h("td", { class: "num", text: num(u.day_tokens) }), h("td", { class: "num", text: num(u.day_messages) }),
        h("td", { class: "num", text: credits(u.month_credits_micro) })))))
    : h("p", { class: "empty", text: "No usage yet this month." });
  return h("div", { class: "card bot", "data-testid": `bot-${bot.bot_id}`, "data-bot": bot.bot_id },
    h("h3", {}, h("span", { text: bot.name ? `${bot.name} (${bot.bot_id})` : bot.bot_id }),
      h("span", { class: `badge ${badge[1]}`, "data-testid": "bot-status", text: badge[0] })),
    h("div", { class: "states" }, lines),
    table);
}

function meter(labelLeft, labelRight, ratio, marker, cls, sub, extra) {
  const pct = Math.max(0, Math.min(100, ratio * 100));
  const bar = h("div", { class: `bar ${cls || ""}` }, h("span", { style: `width: ${pct}%` }));
  if (marker !== null && marker !== undefined) {
    bar.append(h("i", { style: `left: calc(${Math.max(0, Math.min(100, marker * 100))}% - 1px)`,
      title: "projected" }));
  }
  return h("div", { class: "meter", ...(extra || {}) },
    h("div", { class: "label" }, h("span", {}, labelLeft), h("span", {}, labelRight)),
    bar, sub ? h("div", { class: "sub" }, sub) : null);
}

function policyMeters(policies) {
  if (!policies.length) return [h("p", { class: "empty", text: "No policies yet — add one under Policies." })];
  const note = h("p", { class: "hint", text: "Usage in each policy's rolling window (or calendar period) as stored in " +
    "ClickHouse. A new or re-enabled policy counts from that moment, so at first it can show " +
    "more than it enforces." });
  return [...policies.map((p) => {
    const ratio = p.used / p.threshold;
    const cls = !p.enabled ? "" : p.breached ? "over" : ratio >= 0.8 ? "hot" : "";
    const status = !p.enabled ? h("span", { class: "badge grey", text: "disabled" })
      : p.breached ? h("span", { class: "badge bad", text: "over the threshold" }) : null;
    const scope = p.scope === "bot" ? `bot ${p.bot_id}` : SCOPES[p.scope];
    const left = h("span", {}, h("b", { text: p.name || p.policy_id }), ` · ${p.metric} ${p.period ? `this ${p.period}` : `in ${duration(p.window_seconds)}`} · ${scope} `, status);
    const right = `${amount(p.metric, p.used)} of ${amount(p.metric, p.threshold)}`;
    const bots = Object.entries(p.per_bot);
    const sub = p.per ? `per ${p.per.replace("_", " ")}: ${p.busiest_value ? `busiest ${p.busiest_value}` : "no value yet"}`
      : bots.length > 1 || (bots.length && p.scope === "account_total")
      ? bots.map(([b, v]) => `${b} ${p.metric === "credits" ? credits(v) : num(v)}`).join(" · ") : null;
    return meter(left, right, ratio, null, cls, sub, { "data-testid": `policy-meter-${p.policy_id}` });
  }), note];
}

function capMeters(caps, projections, now, tz, onCta) {
  const out = [];
  for (const c of caps) {
    const p = c.projection;
    const ratio = p.cap_micro ? p.used_micro / p.cap_micro : 1;
    const marker = p.cap_micro ? p.projected_micro / p.cap_micro : null;
    const cls = p.cap_reached ? "over" : p.projected_over_cap ? "hot" : "";
    const end = p.period === "daily" ? "midnight" : "month end";
    let sub;
    const pausedToday = p.period === "monthly" && caps.some((d) => d.projection.category === p.category
      && d.projection.period === "daily" && d.projection.cap_reached);
    if (p.cap_reached) {
      sub = [`Cap reached — AI paused until ${until(p.period_end_ms, now, tz)}. `];
    } else if (pausedToday) {
      sub = ["Paused until midnight by the daily cap; the month resumes then. "];
    } else if (p.reaches_cap_at_ms) {
      sub = [`At this pace (${credits(p.rate_micro_per_hour)}/h) the cap is reached at ${until(p.reaches_cap_at_ms, now, tz)}. `];
    } else {
      sub = [`Projected by ${end}: ${credits(p.projected_micro)} credits (${credits(p.rate_micro_per_hour)}/h). `];
    }
    if (c.cta) sub.push(h("button", { type: "button", class: "cta small", "data-testid": "cap-cta",
      onclick: () => onCta(c.cta, p.category, p.period), text: c.cta }));
    out.push(meter(`${CATEGORY_WORDS[p.category] || p.category} · ${p.period}`,
      `${credits(p.used_micro)} of ${credits(p.cap_micro)} credits`, ratio, marker, cls, h("span", {}, sub),
      { "data-testid": `cap-${p.category}-${p.period}` }));
  }
  if (!caps.length) out.push(h("p", { class: "empty", text: "No caps set — add them under Cap behaviour." }));
  const rows = projections.filter((p) => p.used_micro > 0 || p.cap_micro !== null);
  if (rows.length) {
    out.push(h("h3", { text: "Burn rate" }), h("table", { "data-testid": "burn" },
      h("thead", {}, h("tr", {}, ["", "used", "pace/h", "projected", "cap"].map((t, i) =>
        h("th", { class: i ? "num" : "", text: t })))),
      h("tbody", {}, rows.map((p) => h("tr", {},
        h("td", { text: `${p.category} · ${p.period === "daily" ? "today" : "this month"}` }),
        h("td", { class: "num", text: credits(p.used_micro) }),
        h("td", { class: "num", text: credits(p.rate_micro_per_hour) }),
        h("td", { class: p.projected_over_cap ? "num bad" : "num", text: credits(p.projected_micro) }),
        h("td", { class: "num", text: p.cap_micro === null ? "—" : credits(p.cap_micro) }))))));
  }
  return out;
}

export function renderLive(els, live, onCta, onResume) {
  const now = live.as_of_ms;
  const tz = live.timezone;
  const names = Object.fromEntries(live.policies.map((p) => [p.policy_id, p.name || p.policy_id]));
  const bots = live.bots.filter((b) => b.bot_id !== "*");
  replace(els.bots, bots.length ? bots.map((b) => botCard(b, now, tz, names, onResume))
    : h("div", { class: "card" }, h("p", { class: "empty", text: "No bots yet." })));
  replace(els.policies, policyMeters(live.policies));
  replace(els.caps, capMeters(live.caps, live.projections, now, tz, onCta));
}

export function renderFeed(el, rows, onCta) {
  if (!rows.length) {
    replace(el, h("p", { class: "empty", text: "No paused AI replies on this day." }));
    return;
  }
  replace(el, rows.map((r) => h("div", {
    class: "feed-row", "data-testid": "feed-row", "data-bot": r.bot_id,
    "data-conversation": r.conversation_id, "data-attempts": r.attempts,
  },
  h("div", {},
    h("div", { class: "msg" }, `⚠ ${r.message}`),
    h("div", { class: "meta" }, `${r.bot_id} · ${r.conversation_id} · ${r.category}`)),
  r.cta ? h("button", { type: "button", class: "cta", "data-testid": "feed-cta",
    onclick: () => onCta(r.cta, r.category, r.period), text: r.cta }) : null)));
}
