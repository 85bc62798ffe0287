"use strict";
// Every value goes in as text, never as markup: names, SNI and identities come from clients.
function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function age(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function listenerRows(listeners) {
  const rows = [];
  for (const l of listeners) {
    const routes = l.routes.length ? l.routes : [null];
    routes.forEach((r, i) => {
      const tr = document.createElement("tr");
      for (const v of i === 0 ? [l.name, l.address, l.protocol] : ["", "", ""]) cell(tr, v);
      cell(tr, i === 0 ? l.active_connections : "", "num");
      cell(tr, i === 0 ? l.accepted : "", "num");
      cell(tr, r && r.name);
      cell(tr, r && r.cluster);
      cell(tr, r && r.connections, "num");
      rows.push(tr);
    });
  }
  return rows;
}

function clusterRows(clusters) {
  const rows = [];
  for (const c of clusters) {
    c.endpoints.forEach((e, i) => {
      const tr = document.createElement("tr");
      cell(tr, i === 0 ? c.name : "");
      if (i === 0) cell(tr, c.failover_active ? "FAILED OVER" : "normal", c.failover_active ? "failover" : "up");
      else cell(tr, "");
      cell(tr, e.address);
      cell(tr, e.priority, "num");
      const health = e.ejected ? "ejected" : e.healthy ? "up" : "down";
      cell(tr, health, health === "up" ? "up" : health === "ejected" ? "ejected" : "down");
      cell(tr, e.active_connections, "num");
      cell(tr, e.connections, "num");
      cell(tr, e.connect_failures, "num");
      rows.push(tr);
    });
  }
  return rows;
}

function connectionRows(connections) {
  return connections.map((c) => {
    const tr = document.createElement("tr");
    cell(tr, c.id, "num");
    cell(tr, c.listener);
    cell(tr, c.source);
    cell(tr, c.route);
    cell(tr, c.endpoint);
    cell(tr, c.identity);
    cell(tr, age(c.age_ms), "num");
    cell(tr, c.bytes_upstream, "num");
    cell(tr, c.bytes_downstream, "num");
    return tr;
  });
}

function render(s) {
  document.getElementById("summary").textContent =
    "version " + s.version + " · up " + age(s.uptime_s * 1000) + " · " +
    s.active_connections + " live connections · " + (s.draining ? "DRAINING" : "serving") +
    " · reloads " + s.reloads_ok + " ok, " + s.reloads_failed + " failed";
  fill("listeners", listenerRows(s.listeners));
  fill("clusters", clusterRows(s.clusters));
  fill("connections", connectionRows(s.longest_lived));
  const reload = document.getElementById("reload");
  if (s.last_reload) {
    const when = new Date(s.last_reload.at * 1000).toISOString();
    reload.textContent = when + " · " + (s.last_reload.ok ? "applied: " : "refused: ") + s.last_reload.detail;
    reload.className = s.last_reload.ok ? "ok" : "bad";
  }
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    if (!response.ok) throw new Error("status.json answered " + response.status);
    render(await response.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = "not refreshed: " + e.message;
    error.hidden = false;
  }
}

refresh();
setInterval(refresh, 2000);
