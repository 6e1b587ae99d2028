// Quiver Studio: a SQL console over POST /api/2.0/quiver/sql whose results show as a table or a
// chart, and the compare view (compare.js). No dependencies, no build step.

import { postSql as post, timing } from "./api.js";
import { QueryChart } from "./sqlchart.js";
import { initCompare, showCompare } from "./compare.js";

const ROW_CAP = 10000; // rows fetched for the grid; downloads are not capped
const CHART_CAP = 200000; // rows fetched for a chart
const PAGE = 100;

const $ = (id) => document.getElementById(id);
const editor = $("editor");

let rows = [];
let columns = [];
let truncated = false;
let page = 0;
let lastQuery = "";
let asChart = false;
const chart = new QueryChart();

/** Wrap a SELECT/WITH in a LIMIT so the grid never loads an unbounded result. */
function capped(query, cap = ROW_CAP) {
  const q = query.trim().replace(/;\s*$/, "");
  if (/^(select|with)\b/i.test(q) && !q.includes(";")) {
    return { sql: `SELECT * FROM (\n${q}\n) AS studio_q LIMIT ${cap + 1}`, shift: 1 };
  }
  return { sql: q, shift: 0 };
}

function setStatus(text) { $("status").textContent = text; }

function showError(message, shift) {
  const box = $("error");
  box.replaceChildren();
  box.hidden = false;
  // "line L, column C" (the server's, followed by its own caret lines, which are redrawn
  // here against the editor's text) or DataFusion's "Line: L, Column: C".
  const pos = /line:?\s*(\d+),\s*column:?\s*(\d+)/i.exec(message);
  if (!pos) { box.textContent = message; return; }
  const line = Math.max(1, Number(pos[1]) - shift);
  const col = Math.max(1, Number(pos[2]));
  const text = message.split("\n")[0].replace(pos[0], `Line: ${line}, Column: ${col}`);
  const src = editor.value.split("\n")[line - 1] ?? "";
  const caret = document.createElement("span");
  caret.className = "caret";
  caret.textContent = " ".repeat(col - 1) + "^";
  box.append(text, `\n\nline ${line}: `, src, "\n" + " ".repeat(`line ${line}: `.length), caret);
  // select the position in the editor
  const lines = editor.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += col - 1;
  editor.focus();
  editor.setSelectionRange(offset, Math.min(offset + 1, editor.value.length));
}

function render() {
  const grid = $("grid");
  grid.replaceChildren();
  const head = grid.createTHead().insertRow();
  for (const c of columns) {
    const th = document.createElement("th");
    const small = document.createElement("small");
    small.textContent = c.type;
    th.append(c.name, small);
    head.append(th);
  }
  const body = grid.createTBody();
  for (const r of rows.slice(page * PAGE, (page + 1) * PAGE)) {
    const tr = body.insertRow();
    for (const c of columns) {
      const td = tr.insertCell();
      const v = r[c.name];
      if (v === undefined || v === null) { td.textContent = "NULL"; td.className = "null"; }
      else if (typeof v === "number") { td.textContent = String(v); td.className = "num"; }
      else if (typeof v === "object") td.textContent = JSON.stringify(v);
      else td.textContent = String(v);
      td.title = td.textContent;
    }
  }
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  $("pager").hidden = asChart || rows.length <= PAGE;
  $("page").textContent = `page ${page + 1} of ${pages}`;
  $("prev").disabled = page === 0;
  $("next").disabled = page >= pages - 1;
}

async function run() {
  const query = editor.value.trim();
  if (!query) return;
  saveUrl(query);
  $("error").hidden = true;
  $("run").disabled = true;
  setStatus("running…");
  const { sql, shift } = capped(query);
  const t0 = performance.now();
  try {
    const res = await post(sql, "application/json");
    const body = await res.json();
    const ms = performance.now() - t0;
    columns = body.columns;
    rows = body.rows;
    let note = "";
    truncated = rows.length > ROW_CAP;
    if (truncated) {
      rows = rows.slice(0, ROW_CAP);
      note = ` (showing the first ${ROW_CAP}; download for all)`;
    }
    page = 0;
    lastQuery = query;
    render();
    if (asChart) await drawChart(urlAxes());
    setStatus(`${rows.length} row${rows.length === 1 ? "" : "s"}${note} in ${ms.toFixed(0)} ms`);
    for (const b of document.querySelectorAll(".dl")) b.disabled = false;
  } catch (e) {
    setStatus(`failed after ${(performance.now() - t0).toFixed(0)} ms`);
    let message = e.message;
    let at = shift;
    if (shift) {
      // The LIMIT wrapper can change a syntax error: plan the query as written (EXPLAIN runs nothing).
      try { await post(`EXPLAIN\n${query}`, "application/json"); }
      catch (plain) { message = plain.message; at = 1; }
    }
    showError(message, at);
  } finally {
    $("run").disabled = false;
  }
}

/** The chart's columns from the URL (`&chart=x,y,series`): undefined without `chart=`, null
 * when it names none. */
function urlAxes() {
  const m = /(?:^|&)chart=([^&]*)/.exec(location.hash.slice(1));
  if (!m) return undefined;
  if (!m[1]) return null; // a chart of the default columns
  const [x, y, series = ""] = decodeURIComponent(m[1]).split(",");
  return { x, y, series };
}

/** Puts the query, and the chart's columns when the result is a chart, in the URL. */
function saveUrl(query = editor.value.trim()) {
  let h = "#q=" + encodeURIComponent(query);
  if (asChart && chart.rows.length) {
    const a = chart.axes();
    h += "&chart=" + encodeURIComponent([a.x, a.y, a.series].join(","));
  } else if (asChart) h += "&chart=";
  history.replaceState(null, "", h);
}

/** Draws the last result as a chart, fetching up to CHART_CAP rows when the grid has fewer. */
async function drawChart(axes) {
  const t0 = performance.now();
  let data = rows, note = "";
  if (truncated) {
    setStatus("fetching rows for the chart…");
    const { sql } = capped(lastQuery, CHART_CAP);
    data = (await (await post(sql, "application/json")).json()).rows;
    if (data.length > CHART_CAP) {
      data = data.slice(0, CHART_CAP);
      note = `the first ${CHART_CAP.toLocaleString("en")} rows: aggregate or sample in SQL for more`;
    }
    setStatus(`${data.length} rows for the chart`);
  }
  chart.show(columns, data, axes, note);
  saveUrl(lastQuery);
  timing("sql-chart-drawn", performance.now() - t0);
}

async function showAs(chartMode) {
  asChart = chartMode;
  $("as-table").classList.toggle("on", !chartMode);
  $("as-chart").classList.toggle("on", chartMode);
  $("grid").hidden = chartMode;
  $("sql-chart").hidden = !chartMode;
  $("chart-controls").hidden = !chartMode;
  $("pager").hidden = chartMode || rows.length <= PAGE;
  if (chartMode && columns.length) {
    try { await drawChart(urlAxes()); } catch (e) { showError(e.message, 0); }
  } else saveUrl(lastQuery || editor.value.trim());
}

const FORMATS = {
  csv: { accept: "text/csv", ext: "csv" },
  parquet: { accept: "application/vnd.apache.parquet", ext: "parquet" },
  arrow: { accept: "application/vnd.apache.arrow.stream", ext: "arrows" },
};

async function download(format) {
  const f = FORMATS[format];
  setStatus(`downloading ${format}…`);
  try {
    const res = await post(lastQuery, f.accept);
    const blob = await res.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `quiver-result.${f.ext}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    setStatus(`downloaded ${blob.size} bytes as ${format}`);
  } catch (e) {
    showError(e.message, 0);
  }
}

async function loadTables() {
  const list = $("table-list");
  try {
    const res = await post(
      "SELECT table_name, column_name, data_type FROM information_schema.columns " +
      "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position", "application/json");
    const { rows: cols } = await res.json();
    const tables = new Map();
    for (const c of cols) {
      if (!tables.has(c.table_name)) tables.set(c.table_name, []);
      tables.get(c.table_name).push(c);
    }
    list.replaceChildren();
    for (const [name, cs] of tables) {
      const li = document.createElement("li");
      const d = document.createElement("details");
      const s = document.createElement("summary");
      s.textContent = name;
      s.title = `Double-click: SELECT * FROM ${name}`;
      s.addEventListener("dblclick", () => { editor.value = `SELECT * FROM ${name} LIMIT 100`; run(); });
      d.append(s);
      for (const c of cs) {
        const div = document.createElement("div");
        div.className = "col";
        div.title = "Click to insert";
        const n = document.createElement("span");
        n.textContent = c.column_name;
        const t = document.createElement("span");
        t.className = "type";
        t.textContent = c.data_type;
        div.append(n, t);
        div.addEventListener("click", () => insert(c.column_name));
        d.append(div);
      }
      li.append(d);
      list.append(li);
    }
    if (!tables.size) list.innerHTML = '<li class="muted">no tables</li>';
  } catch (e) {
    list.replaceChildren();
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = `cannot list tables: ${e.message}`;
    list.append(li);
  }
}

function insert(text) {
  const { selectionStart: a, selectionEnd: b, value } = editor;
  editor.value = value.slice(0, a) + text + value.slice(b);
  editor.focus();
  editor.setSelectionRange(a + text.length, a + text.length);
}

function queryFromUrl() {
  const m = /(?:^|&)q=([^&]*)/.exec(location.hash.slice(1));
  return m ? decodeURIComponent(m[1]) : new URLSearchParams(location.search).get("q");
}

editor.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
});
$("run").addEventListener("click", run);
$("prev").addEventListener("click", () => { page--; render(); });
$("next").addEventListener("click", () => { page++; render(); });
for (const b of document.querySelectorAll(".dl")) b.addEventListener("click", () => download(b.dataset.format));
$("as-table").addEventListener("click", () => showAs(false));
$("as-chart").addEventListener("click", () => showAs(true));
chart.onChange = () => saveUrl(lastQuery);
initCompare();

/** Shows the view the URL names: #compare… or the SQL console (#q=…). */
function route() {
  const compare = location.hash.startsWith("#compare");
  $("sql-view").hidden = compare;
  $("compare-view").hidden = !compare;
  $("to-sql").classList.toggle("on", !compare);
  $("to-compare").classList.toggle("on", compare);
  document.title = compare ? "Quiver Studio · Compare runs" : "Quiver Studio · SQL";
  if (compare) { showCompare(); return; }
  if (!tablesLoaded) { tablesLoaded = true; loadTables(); }
  const q = queryFromUrl();
  const wantChart = urlAxes() !== undefined;
  if (wantChart !== asChart) showAs(wantChart);
  if (q && (q.trim() !== editor.value.trim() || !lastQuery)) { editor.value = q; run(); }
  else if (!editor.value) editor.value = "SELECT * FROM runs LIMIT 100";
}

let tablesLoaded = false;
window.addEventListener("hashchange", route);
$("to-sql").addEventListener("click", (e) => {
  e.preventDefault();
  history.pushState(null, "", lastQuery ? "#q=" + encodeURIComponent(lastQuery) : "#sql");
  route();
});
route();
