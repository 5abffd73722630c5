/* Metric panels: one chart per metric (own y axis, log-y toggle), grouped in sections by prefix
   (train/, eval/, ...; system metrics last, with units), the runs' own metric first. Every run
   shown is one colour in every panel; runs can be grouped (mean line, min/max band).
   Points come from /api/charts/series in one request per 100 runs: min/max buckets, so spikes survive;
   zooming a panel asks for that range again, finer, on any x axis (a range of wall or relative
   time is sent as such: the server picks each run's steps logged within it). */
"use strict";

class RunPanels {
  static COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22", "#393b79", "#ad494a", "#637939", "#e6550d", "#7b4173", "#3182bd"];

  static color(i) {
    if (i < RunPanels.COLORS.length) return RunPanels.COLORS[i];
    return `hsl(${Math.round((i * 137.508) % 360)}, 62%, 45%)`;  // golden-angle hues: distinct enough
  }

  static isSystem(name) { return name.startsWith("sys/") || name.startsWith("system/"); }

  /* A system metric's unit, from its name as the supervisor records it. */
  static unit(name) {
    const n = name.toLowerCase();
    if (/percent|_util$|cpu$/.test(n)) return "%";
    if (/memory_rss|memory_used|_bytes$|mem_used/.test(n)) return "bytes";
    if (/num_processes/.test(n)) return "processes";
    return "";
  }

  constructor(root, options = {}) {
    this.root = root;
    this.onInfo = options.onInfo || (() => {});
    this.state = { x: options.x || "step", smoothing: Number(options.smoothing || 0), logy: new Set(options.logy || []) };
    this.onState = options.onState || (() => {});
    this.ready = options.ready || (() => Promise.resolve());  // plotly.js loaded
    this.runs = [];
    this.metrics = [];
    this.primary = null;
    this.groups = null;
    this.hidden = new Set();
    this.data = {};  // run key -> metric -> {x, y, t}
    this.zoom = {};  // metric -> [x0, x1] on the current x axis (seconds for time axes)
    this.starts = {};  // run key -> its first wall-clock time (the server's; zero of relative time)
    this.token = 0;
    this.times = {};  // performance.now() of the last refresh's steps (bench/bench_charts.py reads them)
    this.build();
  }

  build() {
    const { el } = studio;
    this.xSelect = el("select", { id: "x-axis", "aria-label": "x axis" },
      el("option", { value: "step", text: "step" }), el("option", { value: "relative", text: "relative time" }),
      el("option", { value: "time", text: "wall time" }));
    this.xSelect.value = this.state.x;
    this.xSelect.addEventListener("change", () => {
      this.state.x = this.xSelect.value;
      this.zoom = {};
      this.onState(this.state);
      this.refresh();
    });
    this.smooth = el("input", { id: "smoothing", type: "range", min: "0", max: "0.99", step: "0.01", value: String(this.state.smoothing) });
    this.smooth.addEventListener("input", () => { this.state.smoothing = Number(this.smooth.value); this.onState(this.state); this.drawAll(); });
    this.info = el("span", { class: "muted", id: "chart-info" });
    this.toolbar = el("div", { class: "toolbar panels-toolbar" },
      el("label", {}, "x ", this.xSelect), el("label", {}, "Smoothing ", this.smooth), this.info);
    this.sections = el("div", { class: "panel-sections" });
    this.root.replaceChildren(this.toolbar, this.sections);
  }

  /* runs: [{key, label, color?}]; metrics: names; primary: the metric to show first. */
  async show(runs, metrics, primary) {
    this.runs = runs.map((r, i) => ({ ...r, color: r.color || RunPanels.color(i) }));
    this.metrics = metrics;
    this.primary = primary && metrics.includes(primary) ? primary : null;
    this.layout();
    await this.refresh();
  }

  setGroups(groups) { this.groups = groups; this.drawAll(); }
  setHidden(keys) { this.hidden = new Set(keys); this.drawAll(); }

  ordered() {
    const sections = new Map();
    const sectionOf = (m) => (RunPanels.isSystem(m) ? "system" : m.includes("/") ? m.split("/")[0] : "");
    const names = [...this.metrics].sort((a, b) => (a === this.primary ? -1 : b === this.primary ? 1 : a.localeCompare(b)));
    for (const m of names) {
      const s = sectionOf(m);
      if (!sections.has(s)) sections.set(s, []);
      sections.get(s).push(m);
    }
    const primarySection = this.primary ? sectionOf(this.primary) : null;
    return [...sections.entries()].sort(([a], [b]) => {
      const rank = (s) => (s === primarySection ? 0 : s === "system" ? 3 : s === "" ? 1 : 2);
      return rank(a) - rank(b) || a.localeCompare(b);
    });
  }

  layout() {
    const { el } = studio;
    this.sections.textContent = "";
    this.divs = {};
    if (!this.metrics.length) {
      this.sections.append(el("p", { class: "muted", text: "no metrics logged" }));
      return;
    }
    for (const [section, names] of this.ordered()) {
      const title = section === "system" ? "System" : section === "" ? "Metrics" : `${section}/`;
      const grid = el("div", { class: "panels" });
      this.sections.append(el("section", { class: "panel-section", dataset: { section: section || "metrics" } },
        el("h3", { text: title }), grid));
      for (const name of names) {
        const logy = el("input", { type: "checkbox", class: "logy", "aria-label": `log y for ${name}` });
        logy.checked = this.state.logy.has(name);
        logy.addEventListener("change", () => {
          logy.checked ? this.state.logy.add(name) : this.state.logy.delete(name);
          this.onState(this.state);
          this.draw(name);
        });
        const plot = el("div", { class: "plot panel-plot", dataset: { metric: name } });
        const unit = RunPanels.isSystem(name) ? RunPanels.unit(name) : "";
        grid.append(el("div", { class: "panel", dataset: { metric: name } },
          el("div", { class: "panel-head" }, el("span", { class: "panel-title", text: name + (unit ? ` (${unit})` : "") }),
            name === this.primary ? el("span", { class: "tag", text: "--metric" }) : null,
            el("label", { class: "muted" }, logy, " log y")), plot));
        this.divs[name] = plot;
      }
    }
  }

  buckets() {
    const width = Object.values(this.divs || {})[0]?.clientWidth || 600;
    const perRun = this.runs.length > 20 ? 0.5 : 1;
    return Math.max(50, Math.min(1000, Math.round(width * perRun)));
  }

  async fetchSeries(metrics, range) {
    const keys = this.runs.map((r) => r.key);
    const out = {};
    const chunks = [];
    for (let i = 0; i < keys.length; i += 100) chunks.push(keys.slice(i, i + 100));
    const mchunks = [];
    for (let i = 0; i < metrics.length; i += 50) mchunks.push(metrics.slice(i, i + 50));
    await Promise.all(chunks.flatMap((ks) => mchunks.map(async (ms) => {
      const q = { keys: ks.join(","), metrics: ms.join(","), buckets: this.buckets(), time: this.state.x !== "step" ? "true" : "" };
      if (range && this.state.x === "step") { q.x_min = Math.floor(range[0]); q.x_max = Math.ceil(range[1]); }
      else if (range) { q.x_axis = this.state.x; q.x_min = range[0]; q.x_max = range[1]; }
      const data = await studio.api(`/api/charts/series?${studio.query(q)}`);
      for (const [k, series] of Object.entries(data.runs)) Object.assign(out[k] || (out[k] = {}), series);
      Object.assign(this.starts, data.starts || {});
    })));
    return out;
  }

  async refresh() {
    const token = ++this.token;
    if (!this.runs.length || !this.metrics.length) { this.data = {}; this.drawAll(); return; }
    const started = performance.now();
    let data;
    try {
      [data] = await Promise.all([
        this.fetchSeries(this.metrics, null).then((d) => { this.times.fetched = performance.now(); return d; }),
        this.ready(),
      ]);
    } catch (err) { this.info.textContent = err.message; return; }
    if (token !== this.token) return;
    this.times.started = started;
    this.data = data;
    let points = 0, sampled = false;
    for (const series of Object.values(data)) for (const s of Object.values(series)) { points += s.count; sampled = sampled || s.sampled; }
    this.info.textContent = `${this.runs.length} run${this.runs.length === 1 ? "" : "s"}, ${points.toLocaleString()} points` +
      (sampled ? ", drawn as min/max buckets (zoom for detail)" : "");
    this.times.drawStart = performance.now();
    this.drawAll();
    this.root.dataset.fetchMs = String(Math.round(performance.now() - started));
  }

  async zoomTo(metric, range) {
    this.zoom[metric] = range;
    const data = await this.fetchSeries([metric], range);
    for (const [k, series] of Object.entries(data)) if (this.data[k]) this.data[k][metric] = series[metric];
    this.draw(metric);
  }

  smoothY(y) {
    return studio.smooth(y, this.state.smoothing);
  }

  /* x values of a series on the chosen axis: steps, seconds since the run's first point, or dates. */
  xs(runKey, s) {
    if (this.state.x === "step") return s.x;
    const t = s.t || [];
    if (this.state.x === "time") return t.map((v) => (v === null ? null : v * 1000));
    let t0 = this.starts[runKey];
    if (t0 === undefined || t0 === null) {
      t0 = Infinity;
      for (const series of Object.values(this.data[runKey] || {})) for (const v of series.t || []) if (v !== null && v < t0) t0 = v;
    }
    return t.map((v) => (v === null ? null : v - t0));
  }

  /* A plotly x range in seconds on a time axis (plotly gives dates as "2026-12-04 13:45:12.3",
     in the UTC the axis was drawn in from epoch milliseconds), or in steps. */
  rangeOf(range) {
    if (this.state.x !== "time") return range.map(Number);
    return range.map((v) => (typeof v === "number" ? v : Date.parse(String(v).replace(" ", "T") + "Z")) / 1000);
  }

  drawAll() {
    if (!this.divs) return;
    this.drawn = 0;
    for (const name of Object.keys(this.divs)) this.draw(name);
  }

  traces(metric) {
    const runs = this.runs.filter((r) => !this.hidden.has(r.key));
    const gl = runs.length > 8;
    const type = gl ? "scattergl" : "scatter";
    const traces = [];
    if (this.groups) {
      for (const g of this.groups) {
        const members = g.keys.map((k) => this.data[k]?.[metric]).filter(Boolean);
        if (!members.length) continue;
        const band = RunPanels.band(g.keys.filter((k) => this.data[k]?.[metric]).map((k) => ({ x: this.xs(k, this.data[k][metric]), y: this.smoothY(this.data[k][metric].y) })));
        const fill = RunPanels.fade(g.color);
        traces.push({ x: band.x, y: band.min, type: "scatter", mode: "lines", line: { width: 0, color: g.color }, showlegend: false, hoverinfo: "skip", legendgroup: g.label });
        traces.push({ x: band.x, y: band.max, type: "scatter", mode: "lines", line: { width: 0, color: g.color }, fill: "tonexty", fillcolor: fill, showlegend: false, hoverinfo: "skip", legendgroup: g.label });
        traces.push({ x: band.x, y: band.mean, type: "scatter", mode: "lines", name: `${g.label} (${members.length})`, line: { color: g.color, width: 2 }, legendgroup: g.label });
      }
      return traces;
    }
    for (const r of runs) {
      const s = this.data[r.key]?.[metric];
      if (!s) continue;
      const x = this.xs(r.key, s);
      const line = { color: r.color, width: 1.5 };
      if (this.state.smoothing && runs.length <= 10) {
        traces.push({ x, y: s.y, type, mode: "lines", line, opacity: 0.25, showlegend: false, hoverinfo: "skip", name: `${r.label} (raw)` });
      }
      traces.push({ x, y: this.smoothY(s.y), type, mode: "lines", line, name: r.label, legendgroup: r.key, meta: r.key });
    }
    return traces;
  }

  static fade(color) {
    if (color.startsWith("#") && color.length === 7) {
      const n = parseInt(color.slice(1), 16);
      return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, 0.18)`;
    }
    return color.replace("hsl(", "hsla(").replace(")", ", 0.18)");
  }

  /* Mean, min and max of several runs' curves on a common grid (linear interpolation, each
     run counted only within its own x range). */
  static band(curves, points = 200) {
    let lo = Infinity, hi = -Infinity;
    for (const c of curves) for (const v of c.x) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!Number.isFinite(lo)) return { x: [], mean: [], min: [], max: [] };
    const n = hi > lo ? points : 1;
    const grid = Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / Math.max(1, n - 1));
    const sums = new Array(n).fill(0), counts = new Array(n).fill(0);
    const mins = new Array(n).fill(Infinity), maxs = new Array(n).fill(-Infinity);
    for (const c of curves) {
      let j = 0;
      for (let i = 0; i < n; i++) {
        const g = grid[i];
        while (j < c.x.length - 1 && c.x[j + 1] < g) j++;
        const x0 = c.x[j], x1 = c.x[j + 1];
        if (x0 === undefined || x0 === null || g < x0 || (x1 === undefined && g > x0)) continue;
        const y0 = c.y[j], y1 = x1 === undefined ? y0 : c.y[j + 1];
        if (y0 === null || y1 === null || !Number.isFinite(y0) || !Number.isFinite(y1)) continue;
        const v = x1 === undefined || x1 === x0 ? y0 : y0 + ((y1 - y0) * (g - x0)) / (x1 - x0);
        sums[i] += v; counts[i] += 1;
        if (v < mins[i]) mins[i] = v;
        if (v > maxs[i]) maxs[i] = v;
      }
    }
    const keep = grid.map((_, i) => counts[i] > 0);
    const pick = (a) => a.filter((_, i) => keep[i]);
    return { x: pick(grid), mean: pick(sums.map((s, i) => s / (counts[i] || 1))), min: pick(mins), max: pick(maxs) };
  }

  draw(metric) {
    const div = this.divs?.[metric];
    if (!div || typeof Plotly === "undefined") return;
    const traces = this.traces(metric);
    const unit = RunPanels.isSystem(metric) ? RunPanels.unit(metric) : "";
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    const fg = dark ? "#d7dbe3" : "#1d2330";
    const grid = dark ? "#303644" : "#e6e8ec";
    const layout = {
      margin: { l: 55, r: 10, t: 8, b: 36 }, height: 250, uirevision: `${metric}:${this.state.x}`,
      showlegend: traces.filter((t) => t.showlegend !== false).length > 1 && traces.length <= 24,
      legend: { orientation: "h", y: -0.25, font: { size: 10 } },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg, size: 11 },
      xaxis: { title: { text: { step: "step", relative: "seconds since start", time: "" }[this.state.x] }, type: this.state.x === "time" ? "date" : "linear", gridcolor: grid, zeroline: false },
      yaxis: { type: this.state.logy.has(metric) ? "log" : "linear", gridcolor: grid, zeroline: false,
        ...(unit === "bytes" ? { tickformat: ".3s", ticksuffix: "B" } : unit === "%" ? { ticksuffix: "%" } : {}) },
      hovermode: "closest",
    };
    if (!traces.length) layout.annotations = [{ text: "no points", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];
    Plotly.react(div, traces, layout, { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] }).then(() => {
      div.dataset.rendered = String(traces.length);
      this.drawn = (this.drawn || 0) + 1;
      if (this.drawn >= Object.keys(this.divs).length) {
        this.root.dataset.drawn = String(this.drawn);
        window.studioPanelsDrawn = this.times.drawn = performance.now();
      }
    });
    if (!div.dataset.bound) {
      div.dataset.bound = "1";
      let timer = null;
      div.on("plotly_relayout", (ev) => {
        let next;
        if (ev["xaxis.autorange"]) next = null;
        else if (ev["xaxis.range[0]"] !== undefined) next = this.rangeOf([ev["xaxis.range[0]"], ev["xaxis.range[1]"]]);
        else if (ev["xaxis.range"]) next = this.rangeOf(ev["xaxis.range"]);
        else return;
        if (next && next.some((v) => !Number.isFinite(v))) return;
        clearTimeout(timer);
        timer = setTimeout(() => this.zoomTo(metric, next), 150);
      });
    }
  }
}
