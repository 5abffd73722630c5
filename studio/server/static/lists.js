/* The projects and users pages. */
"use strict";

(() => {
  const { api, el, fmtTime, fmtValue, toast } = studio;
  const link = (href, text) => el("a", { href, text });

  async function projects(table) {
    const data = await api("/api/projects");
    const body = table.querySelector("tbody");
    body.textContent = "";
    if (!data.projects.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "muted", text: "No projects yet: run `studio run --project NAME script.py`." })));
    for (const p of data.projects) {
      const best = p.best;
      body.append(el("tr", { dataset: { project: p.name } },
        el("td", {}, link(`/project/${encodeURIComponent(p.name)}`, p.name)),
        el("td", { class: "num", text: p.count }), el("td", { class: "num", text: p.running }),
        el("td", { class: "num", text: p.finished }), el("td", { text: fmtTime(p.last_added) }),
        el("td", { text: best ? best.metric || "" : "" }),
        el("td", { class: "num", text: best ? fmtValue(best.value) : "" }),
        el("td", { class: "mono" }, best ? link(`/experiment/${encodeURIComponent(best.key)}`, best.key) : "")));
    }
  }

  async function users(table) {
    const data = await api("/api/users");
    const body = table.querySelector("tbody");
    body.textContent = "";
    for (const u of data.users) {
      body.append(el("tr", { dataset: { user: u.name } },
        el("td", {}, link(`/user/${encodeURIComponent(u.name)}`, u.name), u.name === data.me ? el("span", { class: "muted", text: " (you)" }) : ""),
        el("td", { class: "num", text: u.count }), el("td", { text: fmtTime(u.last_added) })));
    }
  }

  const p = document.getElementById("projects");
  if (p) projects(p).catch((err) => toast(err.message, "error"));
  const u = document.getElementById("users");
  if (u) users(u).catch((err) => toast(err.message, "error"));
})();
