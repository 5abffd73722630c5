/* Metric charts over /api/experiments/{key}/series: the server buckets long series into
   min/max pairs (spikes survive); zooming asks for the visible step range again, so detail
   gets finer down to single points. Smoothing is an exponential moving average, debiased. */
"use strict";

class MetricChart {
  static COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

  /* sources: [{key: experiment key, names: [metric names], label: optional prefix}] */
  constructor(div, options = {}) {
    this.div = div;
    this.sources = [];
    this.smoothing = 0;
    this.range = null;
    this.raw = [];
    this.title = options.title || "";
    this.onInfo = options.onInfo || (() => {});
    this.token = 0;
    this.bound = false;
  }

  setSources(sources) {
    this.sources = sources.filter((s) => s.names.length);
    this.range = null;
    return this.refresh();
  }

  setSmoothing(w) {
    this.smoothing = Math.min(0.999, Math.max(0, Number(w) || 0));
    this.draw();
  }

  buckets() {
    return Math.max(200, Math.min(2000, Math.round(this.div.clientWidth || 800)));
  }

  async refresh() {
    const token = ++this.token;
    if (!this.sources.length) {
      this.raw = [];
      this.draw();
      return;
    }
    const range = this.range;
    const results = await Promise.all(this.sources.map(async (src) => {
      const q = { keys: src.names.join(","), buckets: this.buckets() };
      if (range) { q.x_min = Math.floor(range[0]); q.x_max = Math.ceil(range[1]); }
      try {
        const data = await studio.api(`/api/experiments/${encodeURIComponent(src.key)}/series?${studio.query(q)}`);
        return { src, data };
      } catch (err) {
        return { src, data: { series: {} }, error: err.message };
      }
    }));
    if (token !== this.token) return;
    this.raw = [];
    let points = 0, total = 0, sampled = false;
    for (const { src, data } of results) {
      for (const name of src.names) {
        const s = data.series[name];
        if (!s) continue;
        points += s.count; total += s.total; sampled = sampled || s.sampled;
        const label = src.label ? (src.names.length > 1 ? `${src.label} · ${name}` : src.label) : name;
        this.raw.push({ label, x: s.x, y: s.y });
      }
    }
    this.onInfo(sampled ? `${points.toLocaleString()} points in view, drawn as min/max buckets (zoom for detail)` : `${points.toLocaleString()} points`);
    this.draw();
  }

  smooth(y) {
    return studio.smooth(y, this.smoothing);
  }

  draw() {
    if (typeof Plotly === "undefined" || this.div.hidden) return;
    const traces = [];
    this.raw.forEach((r, i) => {
      const line = { color: MetricChart.COLORS[i % MetricChart.COLORS.length], width: 1.5 };
      if (this.smoothing) {
        traces.push({ x: r.x, y: r.y, name: `${r.label} (raw)`, type: "scatter", mode: "lines", line, opacity: 0.25, showlegend: false, hoverinfo: "skip" });
      }
      traces.push({ x: r.x, y: this.smooth(r.y), name: r.label, type: "scatter", mode: "lines", line });
    });
    const layout = {
      margin: { l: 60, r: 20, t: this.title ? 30 : 10, b: 40 },
      title: this.title ? { text: this.title, font: { size: 13 } } : undefined,
      xaxis: { title: { text: "step" } },
      uirevision: "keep",
      legend: { orientation: "h", y: -0.2 },
      height: this.div.classList.contains("small") ? 260 : 380,
    };
    if (!traces.length) {
      layout.annotations = [{ text: "no points yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];
    }
    Plotly.react(this.div, traces, layout, { responsive: true, displaylogo: false }).then(() => {
      this.div.dataset.rendered = String(traces.length);
      window.studioChartDrawn = performance.now();
    });
    if (!this.bound) {
      this.bound = true;
      let timer = null;
      this.div.on("plotly_relayout", (ev) => {
        let next;
        if (ev["xaxis.autorange"]) next = null;
        else if (ev["xaxis.range[0]"] !== undefined) next = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
        else if (ev["xaxis.range"]) next = ev["xaxis.range"];
        else return;
        clearTimeout(timer);
        timer = setTimeout(() => { this.range = next; this.refresh(); }, 150);
      });
    }
  }
}
