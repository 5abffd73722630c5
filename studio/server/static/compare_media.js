/* Compare view: the images and figures the compared runs logged, side by side per name, with
   one step slider per name (a run without that step shows its latest step before it). */
"use strict";

(() => {
  const root = document.getElementById("compare");
  const box = document.getElementById("compare-media");
  if (!root || !box) return;
  const { api, el, query } = studio;
  const keys = root.dataset.keys.split(",").map((k) => k.trim()).filter(Boolean);
  const fileUrl = (key, path) => `/api/experiments/${encodeURIComponent(key)}/media/file?${query({ path })}`;

  function atStep(items, step) {
    let best = null;
    for (const it of items) if (it.step <= step && (!best || it.step > best.step)) best = it;
    return best;
  }

  function row(kind, name, perRun) {
    const steps = [...new Set(perRun.flatMap((r) => (r.items || []).map((i) => i.step)))].sort((a, b) => a - b);
    const label = el("span", { class: "muted" });
    const slider = el("input", { type: "range", min: 0, max: steps.length - 1, step: 1, value: steps.length - 1, "aria-label": `${name} step` });
    const cells = perRun.map((r) => el("div", { class: "media-item", dataset: { key: r.key } }, el("div", { class: "mono muted", text: r.key })));
    const show = () => {
      const step = steps[Number(slider.value)];
      label.textContent = `step ${step}`;
      perRun.forEach((r, i) => {
        const cell = cells[i];
        while (cell.childNodes.length > 1) cell.lastChild.remove();
        const it = r.items ? atStep(r.items, step) : null;
        if (!it) { cell.append(el("p", { class: "muted", text: "—" })); return; }
        if (kind === "figures" && it.format === "plotly") {
          const holder = el("div", { class: "plot small" });
          cell.append(holder);
          api(fileUrl(r.key, it.path)).then((fig) => Plotly.react(holder, fig.data || [], Object.assign({ height: 260, margin: { l: 40, r: 10, t: 10, b: 30 } }, fig.layout || {}), { displaylogo: false }));
        } else {
          cell.append(el("img", { class: "media-image", alt: `${name} of ${r.key}`, src: fileUrl(r.key, it.path) }));
        }
      });
    };
    slider.addEventListener("input", show);
    show();
    return el("div", { class: "compare-media-row", dataset: { name } },
      el("h3", { text: name }), el("div", { class: "toolbar" }, steps.length > 1 ? slider : null, label),
      el("div", { class: "media-grid" }, ...cells));
  }

  Promise.all(keys.map((key) => api(`/api/experiments/${encodeURIComponent(key)}/media`).then((m) => ({ key, m })).catch(() => ({ key, m: null }))))
    .then((runs) => {
      for (const kind of ["images", "figures"]) {
        const names = [...new Set(runs.flatMap((r) => (r.m ? Object.keys(r.m[kind]) : [])))].sort();
        for (const name of names) box.append(row(kind, name, runs.map((r) => ({ key: r.key, items: r.m ? r.m[kind][name] : null }))));
      }
      if (box.childNodes.length) box.prepend(el("h2", { text: "Images and figures" }));
      else box.hidden = true;
    });
})();
