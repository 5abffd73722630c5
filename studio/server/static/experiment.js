/* One experiment: details, live status and output tail, metric charts, artifacts, actions. */
"use strict";

(() => {
  const root = document.getElementById("experiment");
  if (!root) return;
  const { api, el, fmtTime, fmtDuration, fmtValue, fmtBytes, statusBadge, toast, confirmDialog, query } = studio;
  const key = root.dataset.key;
  const base = `/api/experiments/${encodeURIComponent(key)}`;
  const $ = (id) => document.getElementById(id);
  let detail = null;
  let terminal = false;

  function kv(dl, pairs) {
    dl.textContent = "";
    for (const [k, v] of pairs) {
      if (v === null || v === undefined || v === "") continue;
      dl.append(el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : String(v)));
    }
  }

  /* -- name, tags, note: one PATCH each change -------------------------------------- */
  async function annotate(body) {
    try {
      const r = await api(base, { method: "PATCH", json: body });
      Object.assign(detail, { display_name: r.name, name: r.named ? r.name : null, tags: r.tags, note: r.note, note_html: r.note_html });
      renderAnnotations(detail);
      return true;
    } catch (err) { toast(err.message, "error", 8000); return false; }
  }

  function renderAnnotations(d) {
    $("exp-name").textContent = d.display_name;
    $("exp-name").classList.toggle("muted", !d.name);
    const tags = $("tags");
    tags.textContent = "";
    for (const t of d.tags || []) {
      tags.append(el("span", { class: "tag", dataset: { tag: t } }, el("a", { href: `/all?filter=${encodeURIComponent(`tags = ${t}`)}`, text: t }),
        el("button", { type: "button", class: "tag-remove", "aria-label": `Remove tag ${t}`, text: "×", onclick: () => annotate({ remove_tags: [t] }) })));
    }
    const note = $("note");
    if (d.note_html) note.innerHTML = d.note_html;  // rendered by the server with raw HTML escaped
    else note.replaceChildren(el("span", { class: "muted", text: "No note." }));
  }

  function editName(on) {
    $("name-input").hidden = !on;
    $("exp-name").hidden = on;
    $("name-edit").textContent = on ? "cancel" : "rename";
    if (on) { $("name-input").value = detail.name || ""; $("name-input").placeholder = detail.display_name; $("name-input").focus(); }
  }
  $("name-edit").addEventListener("click", () => editName($("name-input").hidden));
  $("exp-name").addEventListener("click", () => editName(true));
  $("name-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await annotate({ name: $("name-input").value })) editName(false);
  });
  $("tag-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const words = $("tag-input").value.split(/[\s,]+/).filter(Boolean);
    if (words.length && (await annotate({ add_tags: words }))) $("tag-input").value = "";
  });
  function editNote(on) {
    for (const id of ["note-text", "note-save", "note-cancel", "note-hint"]) $(id).hidden = !on;
    $("note").hidden = on;
    $("note-edit").hidden = on;
    if (on) { $("note-text").value = detail.note || ""; $("note-text").focus(); }
  }
  $("note-edit").addEventListener("click", () => editNote(true));
  $("note-cancel").addEventListener("click", () => editNote(false));
  $("note-save").addEventListener("click", async () => { if (await annotate({ note: $("note-text").value })) editNote(false); });

  /* What a person wants first: why it failed (exit reason and the last error lines), or
     what a queued run waits for. */
  async function renderStatusBox(d) {
    const box = $("status-box");
    const failed = ["failed", "killed", "lost"].includes(d.status);
    box.hidden = !(failed || d.status === "queued");
    box.className = `status-box ${failed ? "failed" : "waiting"}`;
    if (d.status === "queued") {
      $("status-title").textContent = d.queue ? `Waiting on queue ${d.queue}.` : "Queued.";
      $("status-detail").textContent = "";
      if (d.queue) {
        const q = await api("/api/queues").catch(() => null);
        const n = q ? q.served[d.queue] || 0 : null;
        $("status-detail").textContent = n === null ? "" : n
          ? `${n} worker${n === 1 ? " serves" : "s serve"} it; it starts when one is free and fits its resource needs.`
          : `No worker serves ${d.queue} right now: start one with \`studio worker --queue ${d.queue}\`.`;
        $("status-detail").dataset.served = String(n);
      }
      $("error-tail").hidden = true;
      return;
    }
    if (!failed) return;
    const how = d.returncode !== null && d.returncode !== undefined ? `exit code ${d.returncode}` : "";
    $("status-title").textContent = `${d.status[0].toUpperCase()}${d.status.slice(1)}${how ? ` (${how})` : ""}.`;
    $("status-detail").textContent = d.status_reason && d.status_reason !== how ? d.status_reason : "";
    try {
      const out = await api(`${base}/output?${query({ max_chars: 20000 })}`);
      const lines = out.text.replace(/\s+$/, "").split("\n");
      let start = lines.map((l) => l.startsWith("Traceback (most recent call last)")).lastIndexOf(true);
      if (start < 0 || lines.length - start > 40) start = Math.max(0, lines.length - 15);
      const tail = lines.slice(start).join("\n");
      $("error-tail").hidden = !tail;
      $("error-tail").textContent = tail;
    } catch (err) { $("error-tail").hidden = true; }
  }

  function renderDetail(d) {
    detail = d;
    renderAnnotations(d);
    renderStatusBox(d);
    terminal = !["queued", "running"].includes(d.status);
    $("exp-status").replaceChildren(statusBadge(d.status));
    $("btn-stop").disabled = terminal;
    const project = el("a", { href: `/project/${encodeURIComponent(d.project)}`, text: d.project });
    const owner = el("a", { href: `/user/${encodeURIComponent(d.owner)}`, text: d.owner });
    kv($("overview"), [
      ["project", project], ["owner", owner], ["command", el("code", { text: d.command })],
      ["status", d.status + (d.status_reason ? ` (${d.status_reason})` : "") + (d.returncode !== null ? `, exit code ${d.returncode}` : "")],
      ["added", fmtTime(d.time_added)], ["started", fmtTime(d.time_started)], ["finished", fmtTime(d.time_finished)],
      ["duration", fmtDuration(d.duration)], ["queue", d.queue], ["worker", d.worker], ["attempts", d.attempts || ""],
      ["metric", d.metric ? `${d.metric} = ${fmtValue(d.metric_value)}` : ""],
      ["python", d.python_version],
    ]);
    const params = $("params");
    params.textContent = "";
    const names = Object.keys(d.params || {}).sort();
    if (!names.length) params.append(el("tr", {}, el("td", { class: "muted", text: "none" })));
    for (const n of names) params.append(el("tr", {}, el("th", { text: n }), el("td", { class: "mono", text: fmtValue(d.params[n]) })));
    const history = $("history");
    history.textContent = "";
    for (const h of d.history || []) {
      history.append(el("tr", {}, el("td", {}, statusBadge(h.status)), el("td", { text: fmtTime(h.time) }), el("td", { class: "muted", text: [h.reason, h.worker].filter(Boolean).join(" · ") })));
    }
    renderSource(d.git || {});
    const host = d.host || {};
    kv($("host"), [
      ["host", host.hostname], ["os", [host.distro || host.os, host.os_release].filter(Boolean).join(" ")],
      ["cpu", host.cpu_model ? `${host.cpu_model} (${host.cpu_count_usable || host.cpu_count_logical} usable)` : ""],
      ["memory", host.ram_total ? fmtBytes(host.ram_total) : ""],
      ["gpus", (host.gpus || []).map((g) => g.name).join(", ")],
      ["python", [host.python_implementation, d.python_version].filter(Boolean).join(" ")],
      ["extra packages", (d.python_pkgs || []).join(" ")],
    ]);
    $("packages").textContent = (d.pythonenv || []).join("\n") || "not recorded";
    $("packages-box").querySelector("summary").textContent = `Python packages (${(d.pythonenv || []).length})`;
    $("env").textContent = Object.entries(d.env || {}).map(([k, v]) => `${k}=${v}`).join("\n") || "none";
  }

  function renderSource(git) {
    kv($("git"), [
      ["commit", git.commit ? el("code", { text: git.commit }) : "not a git repository"],
      ["branch", git.branch], ["remote", git.remote_url], ["repository", git.repo_root],
      ["changes", git.dirty ? "uncommitted changes (diff below)" : git.commit ? "clean" : ""],
      ["not in diff", (git.diff_skipped || []).join(", ")],
    ]);
    const diff = git.diff || "";
    $("diff-box").hidden = !diff;
    const pre = $("diff");
    pre.textContent = "";
    const frag = document.createDocumentFragment();
    for (const line of diff.split("\n")) {
      let cls = "";
      if (line.startsWith("diff --git") || line.startsWith("index ") || line.startsWith("--- ") || line.startsWith("+++ ") || line.startsWith("new file") || line.startsWith("deleted file")) cls = "d-meta";
      else if (line.startsWith("@@")) cls = "d-hunk";
      else if (line.startsWith("+")) cls = "d-add";
      else if (line.startsWith("-")) cls = "d-del";
      frag.append(el("span", { class: cls, text: line + "\n" }));
    }
    if (git.diff_truncated) frag.append(el("span", { class: "d-meta", text: "… diff truncated" }));
    pre.append(frag);
  }

  async function loadDetail() {
    renderDetail(await api(base));
  }

  /* -- output tail ------------------------------------------------------------------- */
  let lastSeq = -1;
  let attempt = null;
  async function tail() {
    const log = $("log");
    try {
      const data = await api(`${base}/output?${query({ after_seq: lastSeq, attempt })}`);
      if (data.text) {
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
        if (data.truncated && lastSeq < 0) log.append(el("span", { class: "muted", text: "… earlier output omitted\n" }));
        log.append(document.createTextNode(data.text));
        if (atBottom) log.scrollTop = log.scrollHeight;
      }
      lastSeq = data.last_seq;
      if (data.attempt !== null) attempt = data.attempt;
      $("log-state").textContent = data.terminal ? "" : "live";
      if (!data.terminal) setTimeout(tail, 1000);
      else if (!log.textContent) log.textContent = "(no output)";
    } catch (err) {
      $("log-state").textContent = err.message;
      if (err.status !== 404) setTimeout(tail, 3000);
    }
  }

  /* -- status ------------------------------------------------------------------------ */
  async function pollStatus() {
    try {
      const data = await api(`/api/status?${query({ keys: key })}`);
      const s = data.statuses[key];
      if (!s) { $("exp-status").replaceChildren(statusBadge("deleted")); return; }
      if (s.status !== detail.status) await loadDetail();
      if (!terminal) setTimeout(pollStatus, 2000);
      else { loadMetrics(); loadArtifacts(); }
    } catch (err) { setTimeout(pollStatus, 5000); }
  }

  /* -- metrics: a panel per metric ------------------------------------------------- */
  const url = new URL(location.href);
  const panels = new RunPanels($("panels"), {
    x: url.searchParams.get("x") || "step", smoothing: url.searchParams.get("smooth") || 0,
    logy: (url.searchParams.get("logy") || "").split(",").filter(Boolean),
    onState: (st) => {
      const u = new URL(location.href);
      const set = (k, v) => (v ? u.searchParams.set(k, v) : u.searchParams.delete(k));
      set("x", st.x === "step" ? "" : st.x);
      set("smooth", st.smoothing ? String(st.smoothing) : "");
      set("logy", [...st.logy].join(","));
      history.replaceState(null, "", u);
    },
  });
  window.studioRefresh = () => panels.refresh();  // for bench/bench_ui.py
  let shownNames = "";

  async function loadMetrics() {
    const data = await api(`${base}/metrics`);
    const names = [...data.keys, ...data.system];
    shownNames = names.join(",");
    const primary = detail.metric ? detail.metric.replace(/:(min|max)$/, "") : null;
    await panels.show([{ key, label: detail.display_name || key, color: RunPanels.color(0) }], names, primary);
  }

  function liveCharts() {
    if (terminal) return;
    loadMetricsNames();
    setTimeout(liveCharts, 5000);
  }

  async function loadMetricsNames() {
    const data = await api(`${base}/metrics`);
    if ([...data.keys, ...data.system].join(",") !== shownNames) loadMetrics();
    else panels.refresh();
  }

  /* -- artifacts --------------------------------------------------------------------- */
  async function loadArtifacts() {
    const data = await api(`${base}/artifacts`);
    const table = $("artifacts");
    table.textContent = "";
    table.append(el("thead", {}, el("tr", {}, ...["Tag", "Kind", "Files", "Size", "Updated", ""].map((t) => el("th", { text: t })))));
    const body = el("tbody");
    for (const a of data.artifacts) {
      const actions = el("td");
      if (a.stored) {
        actions.append(
          el("button", { class: "link", onclick: () => browse(a.tag), text: "Browse" }), " ",
          el("a", { href: `${base}/artifacts/${encodeURIComponent(a.tag)}/archive`, download: "", class: "archive", text: "Download .tar.gz" }),
        );
      } else {
        actions.append(el("span", { class: "muted", text: "not stored yet" }));
      }
      const kind = a.source ? `reused from ${a.source}` : a.mutable ? "captured" : "captured once";
      body.append(el("tr", { dataset: { tag: a.tag } }, el("td", { class: "mono", text: a.tag }), el("td", { text: kind }),
        el("td", { class: "num", text: a.stored ? a.files : "" }), el("td", { class: "num", text: a.stored ? fmtBytes(a.size) : "" }),
        el("td", { text: fmtTime(a.updated) }), actions));
    }
    table.append(body);
  }

  async function browse(tag) {
    const box = $("artifact-files");
    box.textContent = "";
    const data = await api(`${base}/artifacts/${encodeURIComponent(tag)}/files`);
    const list = el("ul", { class: "files" });
    const folders = new Map();
    for (const e of data.entries) {
      const parts = e.path.split("/");
      let parent = list, prefix = "";
      for (const dir of parts.slice(0, -1)) {
        prefix += dir + "/";
        if (!folders.has(prefix)) {
          const ul = el("ul");
          parent.append(el("li", { class: "folder" }, el("details", { open: parts.length < 3 }, el("summary", { text: dir + "/" }), ul)));
          folders.set(prefix, ul);
        }
        parent = folders.get(prefix);
      }
      const href = `${base}/artifacts/${encodeURIComponent(tag)}/file?${query({ path: e.path })}`;
      parent.append(el("li", { class: "file" },
        el("a", { href, download: "", text: parts[parts.length - 1] }), " ",
        el("span", { class: "muted", text: fmtBytes(e.size) }), " ",
        el("a", { href: `${href}&inline=true`, target: "_blank", rel: "noopener", class: "muted", text: "view" })));
    }
    box.append(el("h3", { text: `${tag}: ${data.total} file${data.total === 1 ? "" : "s"}, ${fmtBytes(data.size)}${data.truncated ? " (list truncated)" : ""}` }), list);
  }

  /* -- actions ----------------------------------------------------------------------- */
  $("btn-stop").addEventListener("click", async () => {
    try {
      const r = await api(`${base}/stop`, { method: "POST" });
      toast(`Stop: ${r.detail}`);
      pollStatus();
    } catch (err) { toast(err.message, "error"); }
  });
  $("btn-delete").addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete experiment ${key}? ${terminal ? "" : "It will be stopped first. "}This cannot be undone.`))) return;
    try {
      await api(base, { method: "DELETE" });
      toast("Deleted");
      location.href = "/all";
    } catch (err) { toast(err.message, "error"); }
  });
  $("btn-rerun").addEventListener("click", async () => {
    try {
      const r = await api(`${base}/rerun`, { method: "POST", json: {} });
      toast(el("span", {}, "Started ", el("a", { href: `/experiment/${encodeURIComponent(r.new_key)}`, text: r.new_key })), "info", 10000);
    } catch (err) { toast(err.message, "error"); }
  });
  $("btn-tensorboard").addEventListener("click", async () => {
    const msg = $("tb-message");
    msg.textContent = "Starting TensorBoard…";
    try {
      const r = await api(`${base}/tensorboard`, { method: "POST" });
      msg.textContent = "";
      if (!r.available) { msg.textContent = r.message; return; }
      msg.append(`${r.message}: `, el("a", { href: r.url, target: "_blank", rel: "noopener", id: "tb-link", text: r.url }));
    } catch (err) { msg.textContent = err.message; }
  });

  loadDetail().then(() => {
    tail();
    loadMetrics().then(liveCharts).catch((err) => toast(err.message, "error"));
    loadArtifacts();
    if (!terminal) setTimeout(pollStatus, 2000);
  }).catch((err) => toast(err.message, "error"));
})();
