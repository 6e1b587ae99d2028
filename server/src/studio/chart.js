// A canvas line chart for many series: axes, hover read-out, drag to zoom on x, double-click
// to reset. Lines are drawn once on a base canvas; hover, highlight and the zoom selection go on
// an overlay canvas above it, so moving the mouse never redraws a hundred series.

/** A distinct colour for series `i` (golden-angle hues). */
export const colour = (i) => `hsl(${Math.round((i * 137.508) % 360)} 62% 44%)`;

const PAD = { left: 58, right: 12, top: 8, bottom: 26 };
const fmt = new Intl.NumberFormat("en", { maximumSignificantDigits: 4 });
const fmtCompact = new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: 3 });

/** About `n` round tick values covering [lo, hi]. */
export function ticks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

/** First index of sorted `xs` whose value is ≥ `x`. */
function lowerBound(xs, x) {
  let a = 0, b = xs.length;
  while (a < b) { const m = (a + b) >> 1; if (xs[m] < x) a = m + 1; else b = m; }
  return a;
}

/**
 * A line chart in `host`. Series are `{name, label, colour, x, y}` with `x` ascending and `y`
 * numbers or null (a gap). `onZoom(range, t0)` is called after the user picks an x range
 * (`[x0, x1]`, or null on reset; `t0` is the time of the gesture) so the caller can fetch detail.
 */
export class LineChart {
  constructor(host, { title = "", onZoom = null, xName = "step" } = {}) {
    this.host = host;
    this.onZoom = onZoom;
    this.xName = xName;
    this.series = [];
    this.range = null; // visible x range, or null for all
    this.logY = false;
    this.hidden = new Set();
    this.highlighted = null;
    host.classList.add("chart");
    host.replaceChildren();
    if (title) {
      const h = document.createElement("h3");
      h.textContent = title;
      host.append(h);
    }
    const box = document.createElement("div");
    box.className = "plot";
    this.base = document.createElement("canvas");
    this.over = document.createElement("canvas");
    this.tip = document.createElement("div");
    this.tip.className = "tip";
    this.tip.hidden = true;
    box.append(this.base, this.over, this.tip);
    host.append(box);
    this.box = box;
    this.listen();
    new ResizeObserver(() => this.resize()).observe(box);
    this.resize();
  }

  /** Width of the plotting area in CSS pixels: the most points worth fetching per series. */
  get pixels() { return Math.max(50, Math.round(this.w - PAD.left - PAD.right)); }

  /** Replaces the data; keeps the zoom unless `reset`. Draws at once. */
  setSeries(series, reset = false) {
    this.series = series;
    if (reset) this.range = null;
    this.draw();
  }

  setLogY(on) { this.logY = on; this.draw(); }
  setHidden(names) { this.hidden = names; this.draw(); }
  highlight(name) { this.highlighted = name; this.drawOverlay(); }

  resize() {
    const r = this.box.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.w = Math.max(100, r.width);
    this.h = Math.max(80, r.height);
    for (const c of [this.base, this.over]) {
      c.width = Math.round(this.w * dpr);
      c.height = Math.round(this.h * dpr);
      c.style.width = `${this.w}px`;
      c.style.height = `${this.h}px`;
      c.getContext("2d").setTransform(dpr, 0, 0, dpr, 0, 0);
    }
    this.draw();
  }

  visible() { return this.series.filter((s) => !this.hidden.has(s.name) && s.x.length); }

  /** The x and y domains of what is visible. */
  domains() {
    const vis = this.visible();
    let x0 = Infinity, x1 = -Infinity;
    if (this.range) [x0, x1] = this.range;
    else for (const s of vis) { x0 = Math.min(x0, s.x[0]); x1 = Math.max(x1, s.x[s.x.length - 1]); }
    if (!(x1 >= x0)) { x0 = 0; x1 = 1; }
    if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
    let y0 = Infinity, y1 = -Infinity;
    for (const s of vis) {
      const a = Math.max(0, lowerBound(s.x, x0) - 1), b = Math.min(s.x.length, lowerBound(s.x, x1) + 1);
      for (let i = a; i < b; i++) {
        const v = this.ty(s.y[i]);
        if (v === null) continue;
        if (v < y0) y0 = v;
        if (v > y1) y1 = v;
      }
    }
    if (!(y1 >= y0)) { y0 = 0; y1 = 1; }
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 0.5; y1 += Math.abs(y1) * 0.1 || 0.5; }
    const m = (y1 - y0) * 0.04;
    return { x0, x1, y0: y0 - m, y1: y1 + m };
  }

  /** y as plotted (log10 on a log axis; null when it cannot be drawn). */
  ty(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return null;
    if (!this.logY) return v;
    return v > 0 ? Math.log10(v) : null;
  }

  draw() {
    if (!this.w) return;
    const ctx = this.base.getContext("2d");
    ctx.clearRect(0, 0, this.w, this.h);
    const d = (this.d = this.domains());
    const pw = this.w - PAD.left - PAD.right, ph = this.h - PAD.top - PAD.bottom;
    this.sx = (x) => PAD.left + ((x - d.x0) / (d.x1 - d.x0)) * pw;
    this.sy = (y) => PAD.top + (1 - (y - d.y0) / (d.y1 - d.y0)) * ph;
    this.invx = (px) => d.x0 + ((px - PAD.left) / pw) * (d.x1 - d.x0);
    // grid and labels
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#667";
    ctx.strokeStyle = "#eceef2";
    ctx.lineWidth = 1;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of ticks(d.x0, d.x1, Math.max(2, Math.floor(pw / 90)))) {
      const x = Math.round(this.sx(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, PAD.top); ctx.lineTo(x, PAD.top + ph); ctx.stroke();
      ctx.fillText(fmtCompact.format(t), x, PAD.top + ph + 6);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of ticks(d.y0, d.y1, Math.max(2, Math.floor(ph / 40)))) {
      const y = Math.round(this.sy(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(PAD.left, y); ctx.lineTo(PAD.left + pw, y); ctx.stroke();
      ctx.fillText(this.logY ? fmtCompact.format(10 ** t) : fmtCompact.format(t), PAD.left - 6, y);
    }
    ctx.strokeStyle = "#c9ced8";
    ctx.strokeRect(PAD.left + 0.5, PAD.top + 0.5, pw, ph);
    // lines, clipped to the plot
    ctx.save();
    ctx.beginPath(); ctx.rect(PAD.left, PAD.top, pw, ph); ctx.clip();
    ctx.lineWidth = this.visible().length > 20 ? 1 : 1.5;
    ctx.lineJoin = "round";
    for (const s of this.visible()) this.trace(ctx, s);
    ctx.restore();
    this.drawOverlay();
  }

  /** Strokes series `s` (its visible part, one point either side) on `ctx`. */
  trace(ctx, s) {
    const { x0, x1 } = this.d;
    const a = Math.max(0, lowerBound(s.x, x0) - 1), b = Math.min(s.x.length, lowerBound(s.x, x1) + 1);
    ctx.strokeStyle = s.colour;
    ctx.beginPath();
    let pen = false, single = null;
    for (let i = a; i < b; i++) {
      const v = this.ty(s.y[i]);
      if (v === null) { pen = false; continue; }
      const px = this.sx(s.x[i]), py = this.sy(v);
      if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); single = [px, py]; }
      pen = true;
    }
    ctx.stroke();
    if (b - a === 1 && single) { // a lone point has no line: mark it
      ctx.fillStyle = s.colour;
      ctx.fillRect(single[0] - 2, single[1] - 2, 4, 4);
    }
  }

  /** The point of a visible series nearest to (px, py), in pixels: {s, i, dist}. */
  nearest(px, py) {
    const x = this.invx(px);
    let best = null;
    for (const s of this.visible()) {
      const j = lowerBound(s.x, x);
      for (const i of [j - 1, j]) {
        if (i < 0 || i >= s.x.length) continue;
        const v = this.ty(s.y[i]);
        if (v === null) continue;
        const dist = Math.hypot(this.sx(s.x[i]) - px, this.sy(v) - py);
        if (!best || dist < best.dist) best = { s, i, dist };
      }
    }
    return best;
  }

  drawOverlay() {
    if (!this.d) return;
    const ctx = this.over.getContext("2d");
    ctx.clearRect(0, 0, this.w, this.h);
    const ph = this.h - PAD.top - PAD.bottom;
    if (this.drag) {
      const [a, b] = [this.drag.from, this.drag.to].sort((p, q) => p - q);
      ctx.fillStyle = "rgba(47, 95, 184, 0.15)";
      ctx.fillRect(a, PAD.top, b - a, ph);
    }
    const lit = this.hover ? this.hover.s.name : this.highlighted;
    const s = lit !== null && this.visible().find((t) => t.name === lit);
    if (s) {
      ctx.save();
      ctx.beginPath(); ctx.rect(PAD.left, PAD.top, this.w - PAD.left - PAD.right, ph); ctx.clip();
      ctx.lineWidth = 3;
      this.trace(ctx, s);
      ctx.restore();
    }
    if (this.hover) {
      const { s: hs, i } = this.hover;
      const px = this.sx(hs.x[i]), py = this.sy(this.ty(hs.y[i]));
      ctx.fillStyle = hs.colour;
      ctx.beginPath(); ctx.arc(px, py, 4, 0, 2 * Math.PI); ctx.fill();
    }
  }

  listen() {
    const at = (e) => { const r = this.over.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    this.over.addEventListener("mousedown", (e) => {
      if (e.button !== 0) return;
      const [px] = at(e);
      this.drag = { from: px, to: px };
    });
    this.over.addEventListener("mousemove", (e) => {
      const [px, py] = at(e);
      if (this.drag) { this.drag.to = px; this.hover = null; this.tip.hidden = true; }
      else this.showTip(px, py);
      this.drawOverlay();
    });
    this.over.addEventListener("mouseleave", () => { this.hover = null; this.tip.hidden = true; this.drawOverlay(); });
    window.addEventListener("mouseup", () => {
      if (!this.drag) return;
      const t0 = performance.now();
      const [a, b] = [this.drag.from, this.drag.to].sort((p, q) => p - q);
      this.drag = null;
      if (b - a < 4) { this.drawOverlay(); return; }
      this.range = [this.invx(a), this.invx(b)];
      this.draw(); // the coarse data at once; the caller fetches detail
      if (this.onZoom) this.onZoom(this.range, t0);
    });
    this.over.addEventListener("dblclick", () => {
      this.range = null;
      this.draw();
      if (this.onZoom) this.onZoom(null, performance.now());
    });
  }

  showTip(px, py) {
    const n = this.d && this.nearest(px, py);
    if (!n || n.dist > 40) { this.hover = null; this.tip.hidden = true; return; }
    this.hover = n;
    const { s, i } = n;
    this.tip.textContent = `${s.label ?? s.name}\n${this.xName} ${fmt.format(s.x[i])}: ${s.y[i]}`;
    this.tip.hidden = false;
    const left = px + 12 + 220 > this.w ? px - 232 : px + 12;
    this.tip.style.left = `${Math.max(0, left)}px`;
    this.tip.style.top = `${Math.max(0, py - 30)}px`;
  }
}
