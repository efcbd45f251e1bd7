// The usage chart: one line per bot, hand-drawn SVG (no chart library).
import { amount, clock, clockSeconds, credits, h, num, replace, svg } from "./dom.js";

const RANGES = { "15m": "last 15 minutes", hour: "last hour", day: "last 24 hours", month: "last 30 days" };

const COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#c92a2a", "#5c940d", "#862e9c"];

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function label(metric, v) {
  return metric === "credits" ? credits(v) : num(v);
}

export function drawChart(container, data, tz) {
  const width = Math.max(300, container.clientWidth || 600);
  const narrow = width < 520;
  const height = narrow ? 200 : 240;
  const pad = { l: 56, r: 10, t: 10, b: 26 };
  const n = data.buckets;
  const series = data.series;
  if (!series.length) {
    replace(container, h("p", { class: "empty", text: "No usage in this range yet." }));
    return;
  }
  const peak = Math.max(0, ...series.flatMap((s) => s.values));
  const top = niceMax(peak);
  const x = (i) => pad.l + (i * (width - pad.l - pad.r)) / Math.max(1, n - 1);
  const y = (v) => pad.t + (1 - v / top) * (height - pad.t - pad.b);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${data.metric} per bot, ${RANGES[data.range] || data.range}`,
  });
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    root.append(
      svg("line", { class: "grid-line", x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v) }),
      svg("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, label(data.metric, v)),
    );
  }
  root.append(svg("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: y(0), y2: y(0) }));
  const ticks = narrow ? 4 : 6;
  for (let k = 0; k <= ticks; k++) {
    const i = Math.round((k * (n - 1)) / ticks);
    const t = data.start_ms + i * data.step_ms;
    const text = data.range === "month" ? clock(t, "UTC", true).split(",")[0] : clock(t, tz);
    root.append(svg("text", { x: x(i), y: height - 8, "text-anchor": "middle" }, text));
  }
  series.forEach((s, idx) => {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", {
      points, fill: "none", stroke: COLORS[idx % COLORS.length], "stroke-width": 2,
      "stroke-linejoin": "round", "data-bot": s.bot_id,
    }));
  });
  const slot = (width - pad.l - pad.r) / Math.max(1, n - 1);
  for (let i = 0; i < n; i++) {
    const t = data.start_ms + i * data.step_ms;
    const when = data.range === "month" ? clock(t, "UTC", true)
      : data.range === "15m" ? clockSeconds(t, tz) : clock(t, tz, data.range === "day");
    const lines = series.map((s) => `${s.bot_id}: ${label(data.metric, s.values[i])}`);
    root.append(svg("rect", {
      class: "hit", x: x(i) - slot / 2, y: pad.t, width: slot, height: height - pad.t - pad.b,
    }, svg("title", {}, [when, ...lines].join("\n"))));
  }
  const legend = h("div", { class: "legend" }, series.map((s, idx) =>
    h("span", { style: `--c: ${COLORS[idx % COLORS.length]}` },
      `${s.bot_id} · ${amount(data.metric, s.total)}`)));
  replace(container, root, legend);
}
