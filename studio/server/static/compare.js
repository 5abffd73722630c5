/* Compare 2-20 experiments: fields, params and metrics side by side (differences marked),
   and one metric's curves overlaid. */
"use strict";

(() => {
  const root = document.getElementById("compare");
  if (!root) return;
  const { api, el, fmtValue, fmtDuration, statusBadge } = studio;
  const keys = root.dataset.keys;
  const chart = new MetricChart(document.getElementById("compare-chart"));
  const select = document.getElementById("compare-metric");

  function section(table, title, rows, cols, fmt) {
    if (!rows.length) return;
    table.append(el("tr", { class: "section" }, el("th", { colspan: cols + 1, text: title })));
    for (const r of rows) {
      const tr = el("tr", { class: r.differs ? "differs" : "", dataset: { name: r.name } }, el("th", { text: r.name }));
      r.values.forEach((v, i) => {
        const differs = i > 0 && JSON.stringify(v) !== JSON.stringify(r.values[0]);
        tr.append(el("td", { class: differs ? "diff-cell mono" : "mono" }, fmt(r.name, v)));
      });
      table.append(tr);
    }
  }

  api(`/api/compare?${studio.query({ keys })}`).then((d) => {
    const table = document.getElementById("compare-table");
    const head = el("tr", {}, el("th", { text: "" }));
    for (const e of d.experiments) head.append(el("th", { class: "mono" }, el("a", { href: `/experiment/${encodeURIComponent(e.key)}`, text: e.key }), el("div", { class: "muted name-cell", text: e.name })));
    table.append(el("thead", {}, head));
    const fieldFmt = (name, v) => (name === "status" ? statusBadge(v) : name === "duration" ? fmtDuration(v) : fmtValue(v));
    section(table, "Run", d.fields, d.experiments.length, fieldFmt);
    section(table, "Parameters", d.params, d.experiments.length, (_, v) => (v === undefined || v === null ? "—" : fmtValue(v)));
    section(table, "Metrics (last value)", d.metrics, d.experiments.length, (_, v) => fmtValue(v));
    for (const m of d.metrics) select.append(el("option", { value: m.name, text: m.name }));
    const spec = d.experiments.map((e) => e.metric).find(Boolean);
    const preferred = spec ? spec.split(":")[0] : null;
    if (preferred && d.metrics.some((m) => m.name === preferred)) select.value = preferred;
    const counts = {};
    for (const e of d.experiments) counts[e.name] = (counts[e.name] || 0) + 1;
    const label = (e) => (counts[e.name] > 1 ? `${e.name} (${e.key})` : e.name);
    const show = () => chart.setSources(d.experiments.map((e) => ({ key: e.key, names: [select.value], label: label(e) })));
    select.addEventListener("change", show);
    document.getElementById("compare-smooth").addEventListener("input", (ev) => chart.setSmoothing(ev.target.value));
    if (d.metrics.length) show();
  }).catch((err) => { document.getElementById("compare-error").textContent = err.message; });
})();
