// Compare runs: one chart per metric, every run a line, each line at most as many points as the
// chart is wide. Points come from GET quiver/metrics/sampled (the store's bulk-interval
// sampler), for the visible step range: zooming fetches the detail of the new range.
//
// The view lives in the URL: #compare?experiment=ID&filter=..&max=100&metrics=a,b&log=1, or
// #compare?runs=ID,ID,..&metrics=.. for chosen runs.

import { getJson, postJson, sqlRows, literal, timing } from "./api.js";
import { LineChart, colour } from "./chart.js";

const RUNS_PER_REQUEST = 100; // the sampler's limit
const MAX_POINTS = 2500; // ditto, per run
const DEFAULT_METRICS = 12;

const $ = (id) => document.getElementById(id);

let runs = []; // [{id, name, colour}]
let charts = new Map(); // metric key → {chart, seq}
let hidden = new Set();
let generation = 0; // bumps when the view is rebuilt: stale answers are dropped

/** The view's parameters from the location hash. */
export function compareParams() {
  const h = location.hash.replace(/^#compare\??/, "");
  return Object.fromEntries(new URLSearchParams(h));
}

function setParams(p) {
  const q = new URLSearchParams(Object.entries(p).filter(([, v]) => v !== "" && v != null));
  history.replaceState(null, "", `#compare?${q}`);
}

function status(text) { $("cmp-status").textContent = text; }

/** The runs the view shows, with the metric keys they have. */
async function loadRuns(p) {
  if (p.runs) {
    const ids = p.runs.split(",").filter(Boolean).slice(0, 1000);
    const list = ids.map(literal).join(",");
    const [rows, keys] = await Promise.all([
      sqlRows(`SELECT run_id, run_name FROM runs WHERE run_id IN (${list})`),
      sqlRows(`SELECT DISTINCT key FROM latest_metrics WHERE run_id IN (${list}) ORDER BY key`),
    ]);
    const name = new Map(rows.map((r) => [r.run_id, r.run_name]));
    return { runs: ids.filter((id) => name.has(id)).map((id) => ({ id, name: name.get(id) || id })), keys: keys.map((k) => k.key) };
  }
  if (!p.experiment) return { runs: [], keys: [] };
  const max = Math.min(1000, Math.max(1, Number(p.max) || 100));
  const found = [];
  let token;
  do {
    const page = await postJson("api/2.0/mlflow/runs/search", {
      experiment_ids: [p.experiment], filter: p.filter || "", max_results: Math.min(1000, max - found.length),
      order_by: ["attributes.start_time DESC"], page_token: token,
    });
    found.push(...(page.runs || []));
    token = page.next_page_token;
  } while (token && found.length < max);
  const keys = new Set();
  for (const r of found) for (const m of r.data?.metrics || []) keys.add(m.key);
  return {
    runs: found.map((r) => ({ id: r.info.run_id, name: r.info.run_name || r.info.run_id })),
    keys: [...keys].sort(),
  };
}

/** Fetches the sample of `key` for every run in `range` ([start, end] steps, or null). */
async function sampled(key, points, range) {
  const ids = runs.map((r) => r.id);
  const chunks = [];
  for (let i = 0; i < ids.length; i += RUNS_PER_REQUEST) chunks.push(ids.slice(i, i + RUNS_PER_REQUEST));
  const params = { metric_key: key, max_results: Math.min(MAX_POINTS, points) };
  if (range) Object.assign(params, { start_step: Math.floor(range[0]), end_step: Math.ceil(range[1]) });
  const answers = await Promise.all(chunks.map((c) => getJson("api/2.0/quiver/metrics/sampled", { ...params, run_ids: c })));
  const byId = new Map(runs.map((r) => [r.id, r]));
  return answers.flatMap((a) => a.series).map((s) => {
    const r = byId.get(s.run_id);
    return { name: r.id, label: r.name, colour: r.colour, x: s.steps, y: s.values };
  });
}

/** Fetches and draws one chart; resolves when it is drawn. */
async function fill(key, range, t0) {
  const c = charts.get(key);
  const seq = ++c.seq, gen = generation;
  const series = await sampled(key, c.chart.pixels, range);
  if (seq !== c.seq || gen !== generation) return; // a newer zoom or view won
  c.chart.setSeries(series, range === null);
  if (t0 !== undefined) timing("zoom-drawn", performance.now() - t0);
}

function legend() {
  const box = $("cmp-legend");
  box.replaceChildren();
  for (const r of runs) {
    const item = document.createElement("label");
    item.className = "run";
    item.title = `${r.name} (${r.id}): hover to highlight, click to hide`;
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.checked = !hidden.has(r.id);
    cb.addEventListener("change", () => {
      if (cb.checked) hidden.delete(r.id); else hidden.add(r.id);
      for (const { chart } of charts.values()) chart.setHidden(hidden);
    });
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = r.colour;
    const n = document.createElement("span");
    n.textContent = r.name;
    item.append(cb, sw, n);
    item.addEventListener("mouseenter", () => { for (const { chart } of charts.values()) chart.highlight(r.id); });
    item.addEventListener("mouseleave", () => { for (const { chart } of charts.values()) chart.highlight(null); });
    box.append(item);
  }
}

function metricChips(keys, chosen, p) {
  const box = $("cmp-metrics");
  box.replaceChildren();
  for (const k of keys) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = chosen.includes(k) ? "chip on" : "chip";
    b.textContent = k;
    b.addEventListener("click", () => {
      const next = chosen.includes(k) ? chosen.filter((x) => x !== k) : [...chosen, k];
      setParams({ ...p, metrics: next.join(",") });
      showCompare();
    });
    box.append(b);
  }
}

let experimentsLoaded = false;

async function loadExperiments(selected) {
  const sel = $("cmp-exp");
  if (!experimentsLoaded) {
    const r = await postJson("api/2.0/mlflow/experiments/search", { max_results: 1000, order_by: ["name ASC"] });
    sel.replaceChildren(new Option("(choose an experiment)", ""));
    for (const e of r.experiments || []) sel.append(new Option(e.name, e.experiment_id));
    experimentsLoaded = true;
  }
  sel.value = selected || "";
}

/** Builds the view from the URL: runs, legend, metric chips, one chart per chosen metric. */
export async function showCompare() {
  const gen = ++generation;
  const p = compareParams();
  $("cmp-filter").value = p.filter || "";
  $("cmp-max").value = p.max || 100;
  $("cmp-log").checked = p.log === "1";
  const grid = $("cmp-charts");
  try {
    status("loading runs…");
    // Chosen runs and metrics: draw at once, and name the runs when their names arrive.
    const direct = p.runs && p.metrics;
    const found = direct
      ? { runs: p.runs.split(",").filter(Boolean).slice(0, 1000).map((id) => ({ id, name: id })), keys: p.metrics.split(",") }
      : await loadRuns(p);
    if (gen !== generation) return;
    runs = found.runs.map((r, i) => ({ ...r, colour: colour(i) }));
    hidden = new Set();
    const chosen = p.metrics ? p.metrics.split(",").filter((k) => found.keys.includes(k)) : found.keys.slice(0, DEFAULT_METRICS);
    metricChips(found.keys, chosen, p);
    legend();
    grid.replaceChildren();
    charts = new Map();
    if (!runs.length) {
      loadExperiments(p.experiment).catch(fail);
      status(p.runs || p.experiment ? "no runs" : "choose an experiment, or open #compare?runs=ID,ID");
      return;
    }
    for (const key of chosen) {
      const host = document.createElement("div");
      grid.append(host);
      const chart = new LineChart(host, { title: key, onZoom: (range, t0) => fill(key, range, t0).catch(fail) });
      chart.logY = p.log === "1";
      charts.set(key, { chart, seq: 0 });
    }
    status(`${runs.length} run${runs.length === 1 ? "" : "s"} × ${chosen.length} metric${chosen.length === 1 ? "" : "s"}: loading…`);
    const t0 = performance.now();
    await Promise.all(chosen.map((k) => fill(k, null)));
    if (gen !== generation) return;
    timing("compare-drawn", performance.now());
    // After the first draw, so that these do not compete with it for the server.
    loadExperiments(p.experiment).catch(fail);
    if (direct) loadRuns(p).then((named) => gen === generation && rename(named, p)).catch(fail);
    status(`${runs.length} run${runs.length === 1 ? "" : "s"} × ${chosen.length} metric${chosen.length === 1 ? "" : "s"} in ${(performance.now() - t0).toFixed(0)} ms · drag to zoom, double-click to reset`);
  } catch (e) {
    fail(e);
  }
}

function fail(e) { status(`failed: ${e.message}`); }

/** Gives the runs their names (and the metric chips every key) once the lookup answers. */
function rename(named, p) {
  const names = new Map(named.runs.map((r) => [r.id, r.name]));
  for (const r of runs) r.name = names.get(r.id) ?? r.name;
  legend();
  metricChips(named.keys, [...charts.keys()], p);
  for (const { chart } of charts.values()) {
    for (const s of chart.series) s.label = names.get(s.name) ?? s.label;
  }
}

/** Wires the form once. */
export function initCompare() {
  $("cmp-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const p = compareParams();
    const exp = $("cmp-exp").value;
    const next = { experiment: exp, filter: $("cmp-filter").value.trim(), max: $("cmp-max").value, log: $("cmp-log").checked ? "1" : "" };
    if (exp === p.experiment && !p.runs) next.metrics = p.metrics; // keep the chosen metrics
    setParams(next);
    showCompare();
  });
  $("cmp-log").addEventListener("change", () => {
    const on = $("cmp-log").checked;
    setParams({ ...compareParams(), log: on ? "1" : "" });
    for (const { chart } of charts.values()) chart.setLogY(on);
  });
}
