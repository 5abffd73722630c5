/* One experiment's rich results: images with a step slider, plotly/matplotlib figures, sortable tables. */
"use strict";

(() => {
  const root = document.getElementById("media");
  if (!root) return;
  const { api, el, fmtValue, query } = studio;
  const key = root.dataset.key;
  const base = `/api/experiments/${encodeURIComponent(key)}/media`;
  const fileUrl = (path) => `${base}/file?${query({ path })}`;

  function stepper(name, items, show) {
    /* A slider over the logged steps of one name; `show(item)` renders the chosen one. */
    const label = el("span", { class: "muted" });
    const slider = el("input", { type: "range", min: 0, max: items.length - 1, step: 1, value: items.length - 1, "aria-label": `${name} step` });
    const pick = () => {
      const item = items[Number(slider.value)];
      label.textContent = `step ${item.step} (${Number(slider.value) + 1} of ${items.length})`;
      show(item);
    };
    slider.addEventListener("input", pick);
    return { controls: el("div", { class: "toolbar" }, items.length > 1 ? slider : null, label), pick };
  }

  function imageBlock(name, items) {
    const img = el("img", { class: "media-image", alt: name });
    const { controls, pick } = stepper(name, items, (item) => { img.src = fileUrl(item.path); });
    const box = el("div", { class: "media-item", dataset: { name } }, el("h3", { text: name }), controls, img);
    pick();
    return box;
  }

  function figureBlock(name, items) {
    const holder = el("div", { class: "plot media-figure" });
    const show = async (item) => {
      if (item.format === "plotly") {
        const fig = await api(fileUrl(item.path));
        holder.textContent = "";
        const layout = Object.assign({ height: 320, margin: { l: 40, r: 10, t: 10, b: 40 } }, fig.layout || {}, { autosize: true });
        Plotly.react(holder, fig.data || [], layout, { responsive: true, displaylogo: false });
      } else {
        holder.textContent = "";
        holder.append(el("img", { class: "media-image", alt: name, src: fileUrl(item.path) }));
      }
    };
    const { controls, pick } = stepper(name, items, show);
    const box = el("div", { class: "media-item", dataset: { name } }, el("h3", { text: name }), controls, holder);
    requestAnimationFrame(pick);  // once the box is on the page, so plotly can measure it
    return box;
  }

  function tableBlock(name) {
    const table = el("table", { class: "runs media-table" });
    const info = el("p", { class: "muted" });
    const box = el("div", { class: "media-item", dataset: { name } }, el("h3", { text: name }), el("div", { class: "table-wrap" }, table), info);
    let rows = [], columns = [], sortCol = null, desc = false;
    const render = () => {
      table.textContent = "";
      const head = el("tr");
      columns.forEach((c, i) => {
        const th = el("th", { class: `sortable${sortCol === i ? (desc ? " sorted-desc" : " sorted-asc") : ""}`, text: c });
        th.addEventListener("click", () => { desc = sortCol === i ? !desc : false; sortCol = i; sortRows(); render(); });
        head.append(th);
      });
      table.append(el("thead", {}, head));
      const body = el("tbody");
      for (const r of rows) body.append(el("tr", {}, ...r.map((v) => el("td", { text: fmtValue(v) }))));
      table.append(body);
    };
    const sortRows = () => {
      const i = sortCol;
      rows.sort((a, b) => {
        const x = a[i], y = b[i];
        const c = x === y ? 0 : x === null ? 1 : y === null ? -1 : (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y)));
        return desc ? -c : c;
      });
    };
    api(`${base}/table?${query({ name, limit: 2000 })}`).then((data) => {
      rows = data.rows; columns = data.columns;
      info.textContent = data.total > rows.length ? `first ${rows.length} of ${data.total} rows (all of it in a notebook: wb[key].table(${JSON.stringify(name)}))` : `${data.total} rows`;
      render();
    }).catch((e) => { info.textContent = e.message; });
    return box;
  }

  async function load() {
    let data;
    try { data = await api(base); } catch (e) { root.hidden = true; return; }
    const images = Object.entries(data.images), figures = Object.entries(data.figures);
    if (!images.length && !figures.length && !data.tables.length) { root.hidden = true; return; }
    root.hidden = false;
    const body = document.getElementById("media-body");
    body.textContent = "";
    for (const [name, items] of images) body.append(imageBlock(name, items));
    for (const [name, items] of figures) body.append(figureBlock(name, items));
    for (const t of data.tables) body.append(tableBlock(t.name));
  }
  load();
})();
