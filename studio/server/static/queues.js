/* Queues and the workers serving them (workers report every 10 s while idle). */
"use strict";

(() => {
  const { api, el, fmtTime, toast } = studio;
  const link = (href, text) => el("a", { href, text });

  async function load() {
    const data = await api("/api/queues");
    const names = Object.keys(data.served).sort();
    const qbody = document.querySelector("#queues tbody");
    qbody.textContent = "";
    if (!names.length) qbody.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No queues: submit with `studio run --queue Q script.py`." })));
    for (const q of names) {
      const c = data.queues[q] || {};
      const total = Object.values(c).reduce((a, b) => a + b, 0);
      const n = data.served[q];
      const workers = n ? `${n} worker${n === 1 ? "" : "s"}` : (c.queued ? `none: start \`studio worker --queue ${q}\`` : "none");
      qbody.append(el("tr", { dataset: { queue: q } },
        el("td", { class: "mono" }, link(`/all?filter=${encodeURIComponent(`queue = "${q}"`)}`, q)),
        ...["queued", "running", "finished", "failed"].map((s) => el("td", { class: "num", text: String(c[s] || 0) })),
        el("td", { class: "num", text: String(total) }),
        el("td", { class: n ? "served" : "unserved", text: workers })));
    }
    const wbody = document.querySelector("#workers tbody");
    wbody.textContent = "";
    if (!data.workers.length) wbody.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No worker is running." })));
    for (const w of data.workers) {
      wbody.append(el("tr", { dataset: { worker: w.id } },
        el("td", { class: "mono", text: w.id }), el("td", { class: "mono", text: w.queue }), el("td", { text: w.host }),
        el("td", {}, studio.statusBadge(w.state === "busy" ? "running" : "queued"), ` ${w.state}`),
        el("td", { class: "mono" }, w.experiment ? link(`/experiment/${encodeURIComponent(w.experiment)}`, w.experiment) : ""),
        el("td", { text: fmtTime(w.started) }), el("td", { text: fmtTime(w.last_seen) })));
    }
  }

  load().catch((err) => toast(err.message, "error"));
  setInterval(() => { if (!document.hidden) load().catch(() => {}); }, 5000);
})();
