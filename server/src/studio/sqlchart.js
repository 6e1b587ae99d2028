// Any query result as a chart: an x column, a y column and an optional series column draw as
// one line per series. Columns named x, y and series (or step, value and run_id/key) are picked
// by default.

import { LineChart, colour } from "./chart.js";

const $ = (id) => document.getElementById(id);
const NUMERIC = /^(U?Int|Float|Decimal|Timestamp|Date)/;
const LEGEND_MAX = 40; // series named in the legend; the read-out names any

/** The default (x, y, series) columns of a result. */
export function defaultAxes(columns) {
  const names = columns.map((c) => c.name);
  const has = (...ns) => ns.find((n) => names.includes(n));
  const numeric = columns.filter((c) => NUMERIC.test(c.type)).map((c) => c.name);
  const x = has("x", "step", "timestamp") ?? numeric[0] ?? names[0];
  const y = has("y", "value") ?? numeric.find((n) => n !== x) ?? names.find((n) => n !== x);
  const text = columns.filter((c) => !NUMERIC.test(c.type) && c.name !== x && c.name !== y).map((c) => c.name);
  const series = has("series", "run_id", "key") ?? text[0] ?? "";
  return { x, y, series };
}

/** A cell as a number for an axis: numbers as they are, times as epoch ms, else NaN. */
function num(v) {
  if (typeof v === "number") return v;
  if (v === null || v === undefined) return NaN;
  const n = Number(v);
  if (!Number.isNaN(n)) return n;
  const t = Date.parse(v);
  return Number.isNaN(t) ? NaN : t;
}

/** Groups rows into series sorted by x; y values that are not numbers become gaps. */
export function toSeries(rows, { x, y, series }) {
  const groups = new Map();
  for (const r of rows) {
    const xv = num(r[x]);
    if (Number.isNaN(xv)) continue;
    const key = series ? String(r[series] ?? "NULL") : y;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    const yv = num(r[y]);
    g.push([xv, Number.isFinite(yv) ? yv : null]);
  }
  return [...groups].map(([name, pts], i) => {
    pts.sort((a, b) => a[0] - b[0]);
    return { name, label: name, colour: colour(i), x: pts.map((p) => p[0]), y: pts.map((p) => p[1]) };
  });
}

/** The chart under the SQL console, with its column pickers. */
export class QueryChart {
  constructor() {
    this.chart = null;
    this.rows = [];
    for (const id of ["cx", "cy", "cs"]) $(id).addEventListener("change", () => { this.draw(); this.onChange?.(); });
    $("clog").addEventListener("change", () => this.chart?.setLogY($("clog").checked));
  }

  /** Shows `rows` of `columns`, with `axes` if given (else the defaults). */
  show(columns, rows, axes, note) {
    this.rows = rows;
    const pick = axes ?? defaultAxes(columns);
    for (const [id, v, optional] of [["cx", pick.x, false], ["cy", pick.y, false], ["cs", pick.series, true]]) {
      const sel = $(id);
      sel.replaceChildren();
      if (optional) sel.append(new Option("(none)", ""));
      for (const c of columns) sel.append(new Option(c.name, c.name));
      sel.value = columns.some((c) => c.name === v) ? v : optional ? "" : columns[0]?.name ?? "";
    }
    $("chart-note").textContent = note;
    this.draw();
  }

  /** The chosen columns. */
  axes() { return { x: $("cx").value, y: $("cy").value, series: $("cs").value }; }

  draw() {
    const host = $("sql-chart");
    if (!this.chart) this.chart = new LineChart(host, { xName: "x" });
    this.chart.xName = this.axes().x;
    this.chart.logY = $("clog").checked;
    const series = toSeries(this.rows, this.axes());
    this.chart.setSeries(series, true);
    this.legend(series);
  }

  /** Swatches of the first series; hovering one highlights its line. */
  legend(series) {
    const box = $("chart-legend");
    box.replaceChildren();
    if (series.length < 2) return;
    for (const s of series.slice(0, LEGEND_MAX)) {
      const item = document.createElement("span");
      item.className = "run";
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = s.colour;
      item.append(sw, s.label);
      item.addEventListener("mouseenter", () => this.chart.highlight(s.name));
      item.addEventListener("mouseleave", () => this.chart.highlight(null));
      box.append(item);
    }
    if (series.length > LEGEND_MAX) box.append(`+${series.length - LEGEND_MAX} more`);
  }
}
