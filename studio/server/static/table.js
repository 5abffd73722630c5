/* The experiments table: server-side paging, sorting and filtering; live status by polling
   /api/status for the visible keys only; multi-select compare / stop / rerun / delete. */
"use strict";

(() => {
  const root = document.getElementById("experiments");
  if (!root) return;
  const { api, el, fmtTime, fmtDuration, fmtValue, statusBadge, toast, confirmDialog, query } = studio;
  const scope = JSON.parse(root.dataset.scope || "{}");
  const url = new URL(location.href);
  const state = {
    sort: url.searchParams.get("sort") || scope.sort || "-time_added",
    offset: Number(url.searchParams.get("offset") || 0),
    limit: Number(url.searchParams.get("limit") || 50),
    text: url.searchParams.get("text") || "",
    status: url.searchParams.get("status") || "",
    project: url.searchParams.get("project") || "",
    filter: url.searchParams.get("filter") || "",
    view: url.searchParams.get("view") || "",
    group: url.searchParams.get("group") || "",
    selected: new Set(),
    hidden: new Set(),
    rows: [],
    total: 0,
    paramCols: [],
    metricCols: [],
  };
  const $ = (id) => document.getElementById(id);
  const inputs = { text: $("f-text"), status: $("f-status"), project: $("f-project"), filter: $("f-filter") };
  for (const [k, input] of Object.entries(inputs)) if (input) input.value = state[k];
  const TERMINAL = new Set(["finished", "failed", "stopped", "killed", "lost", "pruned"]);
  let loading = 0;

  function columns() {
    const cols = [
      { id: "key", label: "Key", sort: "key" },
      { id: "name", label: "Name", sort: "name" },
      { id: "script", label: "Script", sort: "script" },
      { id: "project", label: "Project", sort: "project" },
      { id: "owner", label: "Owner", sort: "owner" },
      { id: "status", label: "Status", sort: "status" },
      { id: "time_added", label: "Added", sort: "time_added" },
      { id: "duration", label: "Duration", sort: "duration", num: true },
      { id: "metric", label: "Metric", sort: "metric" },
      { id: "metric_value", label: "Value", sort: "best", num: true, title: "Sort by value, best first (each run's --metric goal: :min ascending, :max descending)" },
    ];
    for (const p of state.paramCols) cols.push({ id: `params.${p}`, label: p, sort: `params.${p}`, num: true, kind: "param" });
    for (const m of state.metricCols) cols.push({ id: `metrics.${m}`, label: m, sort: `metrics.${m}`, num: true, kind: "metric" });
    return cols;
  }

  /* -- runs + charts ------------------------------------------------------------------ */
  let panels = null;
  let charted = [];  // the runs the charts show, in colour order
  let chartedSig = "";
  const colorOf = new Map();

  let plotlyLoading = null;
  function loadPlotly() {
    if (typeof Plotly !== "undefined") return Promise.resolve();
    plotlyLoading = plotlyLoading || new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/vendor/plotly.min.js";
      s.onload = () => { window.studioPlotlyLoaded = performance.now(); resolve(); };
      s.onerror = () => { plotlyLoading = null; reject(new Error("could not load plotly.js")); };
      document.head.append(s);
    });
    return plotlyLoading;
  }

  function chartRuns() {
    const picked = state.rows.filter((r) => state.selected.has(r.key));
    return picked.length ? picked : state.rows;
  }

  function groups(runs) {
    if (!state.group) return null;
    const by = new Map();
    for (const r of runs) {
      const v = r.params[state.group];
      const label = `${state.group}=${v === undefined ? "(none)" : fmtValue(v)}`;
      if (!by.has(label)) by.set(label, { value: v, keys: [] });
      by.get(label).keys.push(r.key);
    }
    const order = (a, b) => (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b)));
    return [...by.entries()].sort(([, a], [, b]) => order(a.value, b.value))
      .map(([label, g], i) => ({ label, keys: g.keys, color: RunPanels.color(i) }));
  }

  async function updateCharts(force = false) {
    const box = $("runs-charts");
    const on = state.view === "charts";
    box.hidden = !on;
    $("view-charts").setAttribute("aria-pressed", String(on));
    $("view-charts").classList.toggle("active", on);
    if (!on) { paintSwatches(); return; }
    const runs = chartRuns();
    const sig = runs.map((r) => r.key).join(",");
    const select = $("group-by");
    const params = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
    select.replaceChildren(el("option", { value: "", text: "none" }), ...params.map((p) => el("option", { value: p, text: p })));
    select.value = params.includes(state.group) ? state.group : "";
    $("charts-title").textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}${state.selected.size ? " selected" : " on this page"}`;
    const grouped = assignColours(runs);
    paintSwatches();
    if (sig === chartedSig && !force) return;
    chartedSig = sig;
    charted = runs;
    if (!panels) {
      // plotly.js (parsed in ~0.3 s) loads while the series are fetched, after the table is painted
      // (its parsing would hold the table back): the panels draw once both are in.
      panels = new RunPanels($("run-panels"), {
        x: url.searchParams.get("x") || "step", smoothing: url.searchParams.get("smooth") || 0,
        logy: (url.searchParams.get("logy") || "").split(",").filter(Boolean), onState: () => saveUrl(),
        ready: loadPlotly,
      });
      window.studioRunPanels = panels;  // for bench/bench_charts.py
    }
    const specs = {};
    for (const r of runs) if (r.metric) { const m = r.metric.replace(/:(min|max)$/, ""); specs[m] = (specs[m] || 0) + 1; }
    const primary = Object.keys(specs).sort((a, b) => specs[b] - specs[a])[0] || null;
    let metrics = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort();
    if (primary && metrics.includes(primary)) metrics = [primary, ...metrics.filter((m) => m !== primary)];
    panels.hidden = new Set([...state.hidden].filter((k) => colorOf.has(k)));
    panels.groups = grouped;
    await panels.show(runs.map((r, i) => ({ key: r.key, label: r.name, color: RunPanels.color(i) })), metrics.slice(0, 50), primary);
  }

  /* A run's colour: its own, or its group's when the charts are grouped by a param. */
  function assignColours(runs) {
    const grouped = groups(runs);
    colorOf.clear();
    runs.forEach((r, i) => colorOf.set(r.key, RunPanels.color(i)));
    if (grouped) for (const g of grouped) for (const k of g.keys) colorOf.set(k, g.color);
    return grouped;
  }

  function paintSwatches() {
    for (const tr of root.querySelectorAll("tbody tr[data-key]")) {
      const sw = tr.querySelector(".swatch");
      if (!sw) continue;
      const c = state.view === "charts" ? colorOf.get(tr.dataset.key) : null;
      sw.hidden = !c;
      sw.style.background = c && !state.hidden.has(tr.dataset.key) ? c : "transparent";
      sw.style.borderColor = c || "";
      sw.title = c ? (state.hidden.has(tr.dataset.key) ? "Hidden in the charts: click to show" : "Shown in the charts: click to hide") : "";
    }
  }

  function toggleHidden(key) {
    state.hidden.has(key) ? state.hidden.delete(key) : state.hidden.add(key);
    paintSwatches();
    if (panels) panels.setHidden([...state.hidden]);
  }

  function cell(row, col) {
    if (col.id === "key") {
      const sw = el("button", { type: "button", class: "swatch", hidden: true, "aria-label": `Show or hide ${row.key} in the charts`, onclick: () => toggleHidden(row.key) });
      return el("td", { class: "mono" }, sw, el("a", { href: `/experiment/${encodeURIComponent(row.key)}`, text: row.key }));
    }
    if (col.id === "name") {
      const td = el("td", { class: row.named ? "name-cell" : "name-cell muted", title: row.name }, row.name);
      for (const t of row.tags || []) td.append(" ", el("span", { class: "tag", text: t }));
      return td;
    }
    if (col.id === "status") return el("td", { class: "status-cell" }, statusBadge(row.status));
    if (col.id === "time_added") return el("td", { text: fmtTime(row.time_added) });
    if (col.id === "duration") return el("td", { class: "num duration", text: fmtDuration(row.duration) });
    if (col.id === "metric_value") return el("td", { class: "num metric-value", text: fmtValue(row.metric_value) });
    if (col.id === "project") return el("td", {}, el("a", { href: `/project/${encodeURIComponent(row.project)}`, text: row.project }));
    if (col.id === "owner") return el("td", {}, el("a", { href: `/user/${encodeURIComponent(row.owner)}`, text: row.owner }));
    if (col.kind === "param") return el("td", { class: "num", text: fmtValue(row.params[col.id.slice(7)]) });
    if (col.kind === "metric") return el("td", { class: "num", text: fmtValue(row.metrics[col.id.slice(8)]) });
    return el("td", { text: row[col.id] ?? "" });
  }

  function renderHead(cols) {
    const tr = root.querySelector("thead tr");
    tr.textContent = "";
    const all = el("input", { type: "checkbox", "aria-label": "Select all", id: "select-all" });
    all.checked = state.rows.length > 0 && state.rows.every((r) => state.selected.has(r.key));
    all.addEventListener("change", () => {
      for (const r of state.rows) all.checked ? state.selected.add(r.key) : state.selected.delete(r.key);
      renderBody(cols);
      updateActions();
      if (state.view === "charts") updateCharts();
    });
    tr.append(el("th", { class: "sel" }, all));
    const current = state.sort.replace(/^-/, "");
    const desc = state.sort.startsWith("-");
    for (const col of cols) {
      const th = el("th", { class: col.num ? "num sortable" : "sortable", dataset: { sort: col.sort }, title: col.title || `Sort by ${col.label}` }, col.label);
      if (col.sort === current) {
        th.classList.add(desc ? "sorted-desc" : "sorted-asc");
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      }
      th.addEventListener("click", () => {
        state.sort = col.sort === current && !desc ? `-${col.sort}` : col.sort;
        state.offset = 0;
        load();
      });
      tr.append(th);
    }
  }

  function renderBody(cols) {
    const body = root.querySelector("tbody");
    body.textContent = "";
    if (!state.rows.length) {
      body.append(el("tr", {}, el("td", { colspan: cols.length + 1, class: "muted", text: "No experiments match." })));
      return;
    }
    const frag = document.createDocumentFragment();
    for (const row of state.rows) {
      const box = el("input", { type: "checkbox", "aria-label": `Select ${row.key}` });
      box.checked = state.selected.has(row.key);
      box.addEventListener("change", () => {
        box.checked ? state.selected.add(row.key) : state.selected.delete(row.key);
        updateActions();
        if (state.view === "charts") updateCharts();
      });
      const tr = el("tr", { dataset: { key: row.key, status: row.status } }, el("td", { class: "sel" }, box));
      for (const col of cols) tr.append(cell(row, col));
      frag.append(tr);
    }
    body.append(frag);
  }

  function updateActions() {
    const n = state.selected.size;
    $("selection-count").textContent = `${n} selected`;
    $("act-compare").disabled = n < 2 || n > 20;
    $("act-stop").disabled = n === 0;
    $("act-rerun").disabled = n === 0;
    $("act-tensorboard").disabled = n === 0 || n > 50;
    $("act-delete").disabled = n === 0;
  }

  function render() {
    state.painted = true;
    const cols = columns();
    renderHead(cols);
    renderBody(cols);
    const last = Math.min(state.offset + state.rows.length, state.total);
    $("page-info").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "0 of 0";
    $("page-prev").disabled = state.offset === 0;
    $("page-next").disabled = state.offset + state.limit >= state.total;
    updateActions();
    requestAnimationFrame(() => { window.studioTablePainted = performance.now(); });
    updateCharts().catch((err) => toast(err.message, "error"));
  }

  function params() {
    return {
      scope: scope.scope || "all", project: scope.project || state.project, owner: scope.owner,
      // (scope.sort is only the page's default order, not a filter)
      status: state.status, text: state.text, filter: state.filter, sort: state.sort,
      limit: state.limit, offset: state.offset,
    };
  }

  async function load() {
    const token = ++loading;
    root.classList.add("loading");
    try {
      const data = await api(`/api/experiments?${query(params())}`);
      if (token !== loading) return;
      $("filter-error").textContent = "";
      inputs.filter.classList.remove("invalid");
      Object.assign(state, { rows: data.items, total: data.total, paramCols: data.param_columns, metricCols: data.metric_columns, sort: data.sort });
      render();
      saveUrl();
    } catch (err) {
      if (token !== loading) return;
      if (err.status === 400) {
        $("filter-error").textContent = err.message;
        inputs.filter.classList.add("invalid");
      } else {
        toast(err.message, "error");
      }
      if (!state.painted) {
        // Nothing shown yet (a shared link with a bad filter): say so instead of "Loading...".
        const body = root.querySelector("tbody");
        body.replaceChildren(el("tr", {}, el("td", { class: "load-error", colspan: 12, text: `Could not load experiments: ${err.message}` })));
      }
    } finally {
      if (token === loading) root.classList.remove("loading");
    }
  }

  /* Everything a view needs in its address: the table's state and the charts'. */
  function saveUrl() {
    const shown = new URL(location.href);
    const p = {
      sort: state.sort === (scope.sort || "-time_added") ? "" : state.sort, offset: state.offset || "",
      limit: state.limit === 50 ? "" : state.limit, text: state.text, status: state.status, project: state.project,
      filter: state.filter, view: state.view, group: state.view ? state.group : "",
    };
    if (panels && state.view) {
      const st = panels.state;
      Object.assign(p, { x: st.x === "step" ? "" : st.x, smooth: st.smoothing || "", logy: [...st.logy].join(",") });
    }
    shown.search = query(p);
    history.replaceState(null, "", shown);
  }

  async function poll() {
    const live = state.rows.filter((r) => !TERMINAL.has(r.status)).map((r) => r.key);
    if (!live.length || document.hidden) return;
    try {
      const data = await api(`/api/status?${query({ keys: live.join(",") })}`);
      const gone = new Set(data.missing || []);
      // Only the rows this poll asked about: a finished row is not in the answer because it
      // was not in the question, not because it was deleted.
      for (const row of state.rows) {
        if (!live.includes(row.key)) continue;
        const s = data.statuses[row.key];
        const tr = root.querySelector(`tr[data-key="${CSS.escape(row.key)}"]`);
        if (!tr) continue;
        if (!s) { if (gone.has(row.key)) tr.classList.add("gone"); continue; }
        Object.assign(row, { status: s.status, duration: s.duration, metric_value: s.metric_value });
        tr.dataset.status = s.status;
        tr.querySelector(".status-cell").replaceChildren(statusBadge(s.status));
        tr.querySelector(".duration").textContent = fmtDuration(s.duration);
        tr.querySelector(".metric-value").textContent = fmtValue(s.metric_value);
      }
    } catch (err) { /* the next poll tries again */ }
  }

  async function batch(action) {
    const keys = [...state.selected];
    const data = await api("/api/batch", { json: { action, keys } });
    const failed = data.results.filter((r) => !r.ok);
    if (failed.length) toast(failed.map((r) => `${r.key}: ${r.detail}`).join("; "), "error", 8000);
    return data.results;
  }

  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    for (const [k, input] of Object.entries(inputs)) if (input) state[k] = input.value.trim();
    state.offset = 0;
    load();
  });
  inputs.status.addEventListener("change", () => $("filters").requestSubmit());
  $("view-charts").addEventListener("click", () => {
    state.view = state.view === "charts" ? "" : "charts";
    saveUrl();
    updateCharts().catch((err) => toast(err.message, "error"));
  });
  $("group-by").addEventListener("change", () => {
    state.group = $("group-by").value;
    saveUrl();
    const grouped = assignColours(charted);
    paintSwatches();
    if (panels) panels.setGroups(grouped);
  });
  $("show-all-runs").addEventListener("click", () => {
    state.hidden.clear();
    paintSwatches();
    if (panels) panels.setHidden([]);
  });
  $("page-size").value = String(state.limit);
  $("page-size").addEventListener("change", () => { state.limit = Number($("page-size").value); state.offset = 0; load(); });
  $("page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  $("page-next").addEventListener("click", () => { state.offset += state.limit; load(); });
  $("act-compare").addEventListener("click", () => {
    location.href = `/compare?keys=${encodeURIComponent([...state.selected].join(","))}`;
  });
  $("act-stop").addEventListener("click", async () => {
    const results = await batch("stop");
    toast(`Stop requested for ${results.filter((r) => r.ok).length} experiment(s)`);
    poll();
  });
  $("act-rerun").addEventListener("click", async () => {
    const results = await batch("rerun");
    const started = results.filter((r) => r.ok).map((r) => r.new_key);
    if (started.length) toast(`Started ${started.join(", ")}`, "info", 6000);
    state.selected.clear();
    setTimeout(load, 800);
  });
  $("act-tensorboard").addEventListener("click", async () => {
    toast("Starting TensorBoard…");
    try {
      const r = await api("/api/tensorboard", { json: { keys: [...state.selected] } });
      if (!r.available) { toast(r.message, "error", 8000); return; }
      toast(el("span", {}, `${r.message}: `, el("a", { href: r.url, target: "_blank", rel: "noopener", id: "tb-link", text: "open TensorBoard" })), "info", 15000);
    } catch (err) { toast(err.message, "error", 8000); }
  });
  $("act-delete").addEventListener("click", async () => {
    const n = state.selected.size;
    const ok = await confirmDialog(`Delete ${n} experiment${n > 1 ? "s" : ""}? Running ones are stopped first. This cannot be undone.`);
    if (!ok) return;
    const results = await batch("delete");
    for (const r of results) if (r.ok) state.selected.delete(r.key);
    toast(`Deleted ${results.filter((r) => r.ok).length} experiment(s)`);
    load();
  });

  load();
  setInterval(poll, 2000);
  setInterval(() => { if (!document.hidden && !root.classList.contains("loading")) load(); }, 30000);
})();
