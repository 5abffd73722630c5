/* studio dashboard: helpers shared by every page (no framework, no network but our API). */
"use strict";

const studio = (() => {
  async function api(url, opts = {}) {
    const init = { method: opts.method || "GET", headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (opts.json !== undefined) {
      init.method = opts.method || "POST";
      init.body = JSON.stringify(opts.json);
      init.headers["Content-Type"] = "application/json";
    }
    if (init.method !== "GET" && init.method !== "HEAD") {
      /* Writes carry the session's CSRF token, which only a page of this server can read. */
      const meta = document.querySelector('meta[name="csrf-token"]');
      if (meta && meta.content) init.headers["X-CSRF-Token"] = meta.content;
    }
    const res = await fetch(url, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = new Error((data && data.detail) || `${res.status} ${res.statusText}`);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  /* el("a", {href: "/x", class: "y"}, "text", child) -- text is always set as text, never HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(t) {
    if (t === null || t === undefined) return "";
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return `${s.toFixed(1)}s`;
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
    return h ? `${h}h${pad(m)}m` : `${m}m${pad(sec)}s`;
  }
  function fmtValue(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      return Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-4 && v !== 0) ? v.toExponential(3) : String(+v.toPrecision(6));
    }
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }
  function statusBadge(status) {
    return el("span", { class: `status status-${status}`, text: status });
  }

  let toastTimer = null;
  function toast(message, kind = "info", ms = 4000) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = "";
    box.append(message instanceof Node ? message : document.createTextNode(message));
    box.className = `show ${kind}`;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.className = ""; }, ms);
  }

  /* A modal confirmation; resolves true when the user presses the OK button. */
  function confirmDialog(text, okLabel = "Delete") {
    const dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && v !== undefined && v !== "") q.set(k, v);
    }
    return q.toString();
  }

  /* Exponential moving average with weight w in [0, 1), debiased (as TensorBoard's); gaps stay gaps. */
  function smooth(y, w) {
    if (!w) return y;
    const out = new Array(y.length);
    let last = 0, n = 0;
    for (let i = 0; i < y.length; i++) {
      const v = y[i];
      if (v === null || !Number.isFinite(v)) { out[i] = null; continue; }
      last = last * w + (1 - w) * v;
      n += 1;
      out[i] = last / (1 - Math.pow(w, n));
    }
    return out;
  }

  return { api, el, fmtTime, fmtDuration, fmtValue, fmtBytes, statusBadge, toast, confirmDialog, query, smooth };
})();
