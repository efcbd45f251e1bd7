// "Try on past traffic": run the draft in a form (a policy, or cap behaviour) on the account's
// past events through POST /v1/accounts/{a}/simulations, before saving; draw a timeline of
// usage against the threshold with markers where the draft would have fired.
import { clearErrors, credits, h, num, replace, showErrors, svg } from "./dom.js";

const RANGES = [["7", "last 7 days"], ["30", "last 30 days"], ["93", "last 93 days"]];
const DAY_MS = 86_400_000;

// Errors name body fields ("policy.threshold"); the forms' slots are named without the prefix.
function formError(e) {
  const fields = (e.fields || []).map((f) => ({ ...f, field: String(f.field).replace(/^(policy|settings)\./, "") }));
  return { message: e.message, fields };
}

export function attachTryOnPast(app, { form, anchor, kind, draft }) {
  const range = h("select", { "aria-label": "Past range", "data-testid": "simulate-range" },
    RANGES.map(([v, t]) => h("option", { value: v, text: t, selected: v === "30" })));
  const button = h("button", { type: "button", "data-testid": "simulate", text: "Try on past traffic" });
  const panel = h("div", { class: "simulation", "data-testid": "simulation", hidden: true });
  anchor.after(button, range);
  form.append(panel);
  let seq = 0;

  async function run() {
    clearErrors(form);
    const mine = ++seq;
    const to = Date.now();
    const body = { ...draft(), from: to - Number(range.value) * DAY_MS, to };
    button.disabled = true;
    panel.hidden = false;
    replace(panel, h("p", { class: "muted", text: "Replaying past traffic…" }));
    try {
      const url = `/v1/accounts/${encodeURIComponent(app.account)}/simulations`;
      let job = await app.api.post(url, body);
      while (job.status === "running") {
        if (mine !== seq) return;
        const p = job.progress;
        replace(panel, h("p", { class: "muted", text: `Replaying past traffic… ${num(p.events_done)} of ${num(p.events_total)} events` }));
        await new Promise((r) => setTimeout(r, 1000));
        job = await app.api.get(job.poll);
      }
      if (mine !== seq) return;
      if (job.status === "failed") throw new Error(job.error ? job.error.message : "the simulation failed");
      render(panel, job.result, kind);
    } catch (e) {
      panel.hidden = true;
      showErrors(form, formError(e));
    } finally {
      button.disabled = false;
    }
  }
  button.addEventListener("click", run);
}

function local(ms, tz) {
  return new Date(ms).toLocaleString(undefined, { timeZone: tz, dateStyle: "medium", timeStyle: "short" });
}

function render(panel, r, kind) {
  const cur = r.current;
  const sim = r.simulated;
  const rows = [
    ["alerts", cur.alerts.length, sim.alerts.length],
    ["blocks", cur.blocks.length, sim.blocks.length],
    ["caps reached", cur.caps.length, sim.caps.length],
    ["cap forecasts", cur.forecasts.length, sim.forecasts.length],
    ["downgrade periods", cur.downgrades.length, sim.downgrades.length],
    ["throttle periods", cur.throttles.length, sim.throttles.length],
    ["fallback texts", cur.gated.fallback, sim.gated.fallback],
    ["silent skips", cur.gated.skip, sim.gated.skip],
    ["paused calls", cur.gated.paused, sim.gated.paused],
    ["events counted", cur.usage.events, sim.usage.events],
  ];
  const table = h("table", { class: "sim-table", "data-testid": "simulation-table" },
    h("thead", {}, h("tr", {}, h("th", { text: "" }), h("th", { text: "now" }), h("th", { text: "with this draft" }))),
    h("tbody", {}, rows.map(([name, a, b]) => h("tr", { class: a !== b ? "changed" : null },
      h("th", { text: name }), h("td", { text: num(a) }), h("td", { text: num(b) })))));
  const events = [
    ...sim.alerts.map((a) => ({ t: a.at_ms, text: `alert ${a.policy_id} (${a.bot_id}) → ${a.recipients.join(", ") || "owner"}` })),
    ...sim.blocks.map((b) => ({ t: b.from_ms, text: `pause ${b.bots.join(", ")} until ${local(b.until_ms, r.timezone)} (${b.policy_id})` })),
    ...sim.caps.map((c) => ({ t: c.from_ms, text: `${c.period} ${c.category} cap reached, resumes ${local(c.until_ms, r.timezone)}` })),
    ...sim.forecasts.map((f) => ({ t: f.at_ms, text: `forecast: ${f.period} ${f.category} cap in reach → ${f.recipients.join(", ") || "owner"}` })),
  ].sort((x, y) => x.t - y.t);
  const list = h("ul", { class: "sim-events", "data-testid": "simulation-events" },
    events.slice(0, 50).map((e) => h("li", {}, h("time", { text: local(e.t, r.timezone) }), " ", e.text)));
  replace(panel,
    h("h3", { text: `On ${num(r.events)} past events (${kind === "policy" ? "this policy" : "this cap behaviour"})` }),
    timeline(sim, r),
    table,
    events.length ? list : h("p", { class: "muted", text: "The draft would not have fired in this range." }));
}

function timeline(side, r) {
  const chart = side.charts.find((c) => c.points.length) || null;
  const width = 640;
  const height = 180;
  const pad = { l: 56, r: 10, t: 10, b: 22 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "sim-timeline",
    "data-testid": "simulation-timeline", "aria-label": chart ? `${chart.label} against its threshold` : "timeline" });
  const x = (t) => pad.l + ((t - r.from_ms) * (width - pad.l - pad.r)) / Math.max(1, r.to_ms - r.from_ms);
  const points = chart ? chart.points : [];
  const peak = Math.max(1, chart && chart.threshold ? chart.threshold * 1.2 : 0, ...points.map((p) => p[1]));
  const y = (v) => pad.t + (1 - v / peak) * (height - pad.t - pad.b);
  // caps and credits policies count micro-credits: show credits
  const fmt = chart && (chart.kind !== "policy" || chart.label.startsWith("credits")) ? credits : num;
  root.append(svg("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: y(0), y2: y(0) }),
    svg("text", { x: pad.l - 6, y: y(peak) + 8, "text-anchor": "end" }, fmt(peak)));
  for (const b of side.blocks) {
    root.append(svg("rect", { class: "sim-block", x: x(b.from_ms), y: pad.t, height: height - pad.t - pad.b,
      width: Math.max(1.5, x(Math.min(b.until_ms, r.to_ms)) - x(b.from_ms)) }));
  }
  for (const c of side.caps) {
    root.append(svg("rect", { class: "sim-cap", x: x(c.from_ms), y: pad.t, height: height - pad.t - pad.b,
      width: Math.max(1.5, x(Math.min(c.until_ms, r.to_ms)) - x(c.from_ms)) }));
  }
  if (points.length) {
    root.append(svg("polyline", { class: "sim-usage", fill: "none",
      points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }));
  }
  if (chart && chart.threshold) {
    root.append(svg("line", { class: "sim-threshold", x1: pad.l, x2: width - pad.r, y1: y(chart.threshold), y2: y(chart.threshold) }),
      svg("text", { x: pad.l - 6, y: y(chart.threshold) + 4, "text-anchor": "end" }, fmt(chart.threshold)));
  }
  for (const a of side.alerts) {
    root.append(svg("circle", { class: "sim-alert", cx: x(a.at_ms), cy: pad.t + 6, r: 4 }));
  }
  for (const f of side.forecasts) {
    const cx = x(f.at_ms);
    root.append(svg("path", { class: "sim-forecast", "data-testid": "simulation-forecast",
      d: `M${(cx - 4).toFixed(1)},${pad.t + 18} L${(cx + 4).toFixed(1)},${pad.t + 18} L${cx.toFixed(1)},${pad.t + 10} Z` }));
  }
  root.append(svg("text", { x: pad.l, y: height - 6 }, local(r.from_ms, r.timezone)),
    svg("text", { x: width - pad.r, y: height - 6, "text-anchor": "end" }, local(r.to_ms, r.timezone)));
  const legend = h("p", { class: "legend muted" },
    chart ? `${chart.label}` : "no usage series", " · ", h("span", { class: "key-alert", text: "● alert" }),
    " · ", h("span", { class: "key-block", text: "▮ pause" }), " · ", h("span", { class: "key-cap", text: "▮ cap" }),
    " · ", h("span", { class: "key-forecast", text: "▲ forecast" }));
  return h("div", { class: "sim-chart" }, root, legend);
}
