/* A project's hyperparameters against its metric: parallel coordinates and one scatter per param. */
"use strict";

(() => {
  const root = document.getElementById("project-plots");
  if (!root || typeof Plotly === "undefined") return;
  const { api, el, toast } = studio;
  const name = root.dataset.project;
  const select = document.getElementById("plot-metric");
  let data = null;

  function metricOf(row, choice) {
    const v = choice === "metric_value" ? row.metric_value : row.metrics[choice];
    return typeof v === "number" && Number.isFinite(v) ? v : null;
  }

  function dimension(label, values) {
    if (values.every((v) => v === null || typeof v === "number")) {
      return { label, values: values.map((v) => (v === null ? NaN : v)) };
    }
    const cats = [...new Set(values.map((v) => String(v)))].sort();
    return { label, values: values.map((v) => cats.indexOf(String(v))), tickvals: cats.map((_, i) => i), ticktext: cats };
  }

  function draw() {
    const choice = select.value;
    const rows = data.rows.filter((r) => metricOf(r, choice) !== null);
    const label = choice === "metric_value" ? (data.metric || "metric") : choice;
    document.getElementById("plot-info").textContent = `${rows.length} of ${data.total} experiments have ${label}`;
    const params = data.params.map((p) => p.name).filter((p) => rows.some((r) => r.params[p] !== undefined)).slice(0, 12);
    const metric = rows.map((r) => metricOf(r, choice));
    const dims = params.map((p) => dimension(p, rows.map((r) => (r.params[p] === undefined ? null : r.params[p]))));
    dims.push({ label, values: metric });
    Plotly.react("parcoords", [{
      type: "parcoords", dimensions: dims,
      line: { color: metric, colorscale: "Viridis", reversescale: !data.maximize, showscale: true },
    }], { margin: { l: 60, r: 60, t: 40, b: 20 }, height: 360 }, { displaylogo: false, responsive: true });
    const box = document.getElementById("scatters");
    box.textContent = "";
    for (const p of params) {
      const div = el("div", { class: "scatter" });
      box.append(div);
      const xs = rows.map((r) => r.params[p]);
      const numeric = xs.every((v) => typeof v === "number");
      const positive = numeric && xs.every((v) => v > 0);
      const spread = positive ? Math.max(...xs) / Math.min(...xs) : 0;
      Plotly.newPlot(div, [{
        type: "scatter", mode: "markers", x: xs.map((v) => (typeof v === "object" ? JSON.stringify(v) : v)), y: metric,
        text: rows.map((r) => r.key), hovertemplate: "%{text}<br>%{x}: %{y}<extra></extra>",
      }], {
        title: { text: `${label} vs ${p}`, font: { size: 12 } }, height: 260, margin: { l: 50, r: 10, t: 30, b: 40 },
        xaxis: { type: spread > 100 ? "log" : numeric ? "linear" : "category", title: { text: p } },
      }, { displaylogo: false, responsive: true });
      div.on("plotly_click", (ev) => { location.href = `/experiment/${encodeURIComponent(ev.points[0].text)}`; });
    }
  }

  /* Optimisation history (every run's value, and the best so far) and parameter importance. */
  api(`/api/projects/${encodeURIComponent(name)}/sweep`).then((s) => {
    if (s.history.length < 2) return;
    document.getElementById("sweep-plots").hidden = false;
    const h = s.history;
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    const base = { margin: { l: 55, r: 10, t: 10, b: 40 }, height: 300, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: dark ? "#d7dbe3" : "#1d2330", size: 11 } };
    Plotly.newPlot("opt-history", [
      { x: h.map((r) => r.number), y: h.map((r) => r.value), text: h.map((r) => r.name), customdata: h.map((r) => r.key),
        mode: "markers", type: "scatter", name: "run", hovertemplate: "%{text}<br>%{y}<extra></extra>" },
      { x: h.map((r) => r.number), y: h.map((r) => r.best), mode: "lines", type: "scatter", name: `best (${s.maximize ? "max" : "min"})`, line: { shape: "hv" } },
    ], { ...base, xaxis: { title: { text: "run (in order added)" } }, yaxis: { title: { text: s.metric || "value" } }, legend: { orientation: "h", y: -0.25 } },
    { displaylogo: false, responsive: true }).then((div) => {
      div.dataset.rendered = "1";
      div.on("plotly_click", (ev) => { location.href = `/experiment/${encodeURIComponent(ev.points[0].customdata)}`; });
    });
    const note = document.getElementById("importance-note");
    if (!s.importance) { note.textContent = s.importance_note; return; }
    document.getElementById("importance-evaluator").textContent = `(${s.evaluator})`;
    const names = Object.keys(s.importance).reverse();
    Plotly.newPlot("importance", [{ type: "bar", orientation: "h", y: names, x: names.map((n) => s.importance[n]) }],
      { ...base, xaxis: { title: { text: "importance" } }, margin: { l: 110, r: 10, t: 10, b: 40 } },
      { displaylogo: false, responsive: true }).then((div) => { div.dataset.rendered = "1"; });
  }).catch((err) => toast(err.message, "error"));

  api(`/api/projects/${encodeURIComponent(name)}/points`).then((d) => {
    data = d;
    select.textContent = "";
    select.append(el("option", { value: "metric_value", text: d.metric ? `${d.metric} (--metric)` : "metric value" }));
    for (const m of d.metrics) select.append(el("option", { value: m, text: m }));
    if (!d.rows.some((r) => r.metric_value !== null) && d.metrics.length) select.value = d.metrics[0];
    select.addEventListener("change", draw);
    draw();
  }).catch((err) => toast(err.message, "error"));
})();
