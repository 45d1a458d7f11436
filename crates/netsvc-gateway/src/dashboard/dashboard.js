// The netsvc dashboard: the registry live from /api/events, the process's stats polled
// from /api/stats. Everything is written with textContent: names and reasons come from
// the network and are never parsed as HTML.
"use strict";

const state = {
  services: new Map(), // address -> { binding, state, reason, since, methods }
  previous: null, // the last stats snapshot and when it was taken, for rates
  source: null,
  events: 0,
  loggedOut: undefined, // undefined: no login asked for yet (a hub without users, so far)
  polling: false,
};
// For people and tests: when the page loaded, and how many events it has applied since.
window.netsvcDashboard = { loadedAt: Date.now(), get events() { return state.events; } };

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function setConnection(text) {
  document.getElementById("connection").textContent = text;
}

function renderServices() {
  const body = document.querySelector("#services tbody");
  const entries = [...state.services.values()].sort((a, b) =>
    a.binding.name.localeCompare(b.binding.name) || a.binding.address.localeCompare(b.binding.address));
  body.replaceChildren();
  for (const s of entries) {
    const row = body.insertRow();
    row.className = "service " + s.state;
    row.dataset.name = s.binding.name;
    row.dataset.address = s.binding.address;
    cell(row, s.binding.name || "(anonymous)");
    cell(row, (s.binding.groups || []).join(", "));
    cell(row, s.binding.location);
    cell(row, s.binding.process);
    cell(row, s.binding.audience);
    const label = s.state === "withdrawn"
      ? `withdrawn ${new Date(s.since).toLocaleTimeString()}: ${s.reason}`
      : "available";
    cell(row, label, "service-state");
    cell(row, s.methods === undefined ? "…" : s.methods, "methods");
    row.addEventListener("click", () => loadMethods(s));
  }
  const up = entries.filter((s) => s.state === "available").length;
  document.getElementById("service-count").textContent = `${up} available`;
}

async function loadMethods(s) {
  if (s.state !== "available") return;
  try {
    const reply = await fetch(`/api/services/${encodeURIComponent(s.binding.name)}/methods`);
    s.methods = reply.ok ? (await reply.json()).join(", ") : "—";
  } catch (_) {
    s.methods = "—";
  }
  renderServices();
}

function applyEvent(kind, data) {
  state.events += 1;
  const known = state.services.get(data.address);
  switch (kind) {
    case "available":
      state.services.set(data.address, { binding: data, state: "available", since: Date.now() });
      break;
    case "joined":
    case "left":
      // The event names the group; the list it carries is read when it is sent, so it
      // may already be ahead of (or behind) this change.
      if (known) {
        const groups = new Set(known.binding.groups || []);
        if (kind === "joined") groups.add(data.group); else groups.delete(data.group);
        known.binding.groups = [...groups].sort();
      }
      break;
    case "withdrawn":
      state.services.set(data.address, {
        binding: known ? known.binding : data,
        state: "withdrawn",
        reason: data.reason_text || data.reason,
        since: Date.now(),
      });
      break;
  }
  renderServices();
}

function connectEvents() {
  if (state.source) state.source.close();
  setConnection("connecting…");
  const source = new EventSource("/api/events");
  state.source = source;
  let snapshot = new Set();
  const onService = (kind) => (e) => {
    const data = JSON.parse(e.data);
    if (kind === "available" && snapshot) snapshot.add(data.address);
    applyEvent(kind, data);
  };
  for (const kind of ["available", "joined", "left", "withdrawn"]) {
    source.addEventListener(kind, onService(kind));
  }
  source.addEventListener("synced", () => {
    // A fresh stream starts with the whole registry: what it did not name is gone.
    for (const [address, s] of state.services) {
      if (s.state === "available" && !snapshot.has(address)) state.services.delete(address);
    }
    snapshot = null;
    setConnection("live");
    renderServices();
  });
  const restart = () => {
    source.close();
    setConnection("reconnecting…");
    setTimeout(connectEvents, 1000);
  };
  source.addEventListener("lagged", restart);
  source.addEventListener("closed", restart);
  source.onerror = () => {
    setConnection("reconnecting…");
    // A network error is retried by the EventSource itself; an HTTP error (401 once the
    // session has ended) closes it for good: see whether a login is needed.
    if (source.readyState === EventSource.CLOSED) setTimeout(start, 1000);
  };
}

// On a hub with users every request but the page's files logs in. The page's requests say
// X-Netsvc-Dashboard, so that a 401 carries no Basic challenge (the browser would put up
// its own password dialog): the form below logs in instead, and the session cookie it
// gets (HttpOnly, never seen by this script) goes with every later request, the event
// stream's included, which cannot carry an Authorization header.
const DASHBOARD = { "X-Netsvc-Dashboard": "1" };

function showLogin(why) {
  if (state.source) state.source.close();
  state.source = null;
  state.loggedOut = true;
  setConnection("log in");
  document.getElementById("login").classList.remove("hidden");
  document.getElementById("logout").classList.add("hidden");
  document.getElementById("login-error").textContent = why || "";
}

function base64(text) {
  let binary = "";
  for (const b of new TextEncoder().encode(text)) binary += String.fromCharCode(b);
  return btoa(binary);
}

async function logIn(event) {
  event.preventDefault();
  const value = (id) => document.getElementById(id).value;
  const token = value("login-token");
  const authorization = token
    ? `Bearer ${token}`
    : `Basic ${base64(`${value("login-user")}:${value("login-password")}`)}`;
  let reply;
  try {
    reply = await fetch("/api/login", {
      method: "POST",
      headers: { ...DASHBOARD, Authorization: authorization },
    });
  } catch (_) {
    document.getElementById("login-error").textContent = "the server is away";
    return;
  }
  if (!reply.ok) {
    let why = `refused (${reply.status})`;
    try { why = (await reply.json()).error; } catch (_) { /* not JSON */ }
    document.getElementById("login-error").textContent = why;
    return;
  }
  for (const id of ["login-password", "login-token"]) document.getElementById(id).value = "";
  start();
}

async function logOut() {
  try { await fetch("/api/logout", { method: "POST", headers: DASHBOARD }); } catch (_) { /* away */ }
  showLogin("");
}

// Starts (or restarts) the live page, unless a login is needed first.
async function start() {
  let reply;
  try {
    reply = await fetch("/api/services", { headers: DASHBOARD });
  } catch (_) {
    setConnection("reconnecting…");
    setTimeout(start, 1000);
    return;
  }
  if (reply.status === 401) {
    showLogin(state.loggedOut === false ? "the session has ended; log in again" : "");
    return;
  }
  const withLogins = state.loggedOut !== undefined;
  state.loggedOut = false;
  document.getElementById("login").classList.add("hidden");
  document.getElementById("logout").classList.toggle("hidden", !withLogins);
  connectEvents();
  if (!state.polling) {
    state.polling = true;
    pollStats();
  }
}

function quantile(latency, bounds, q) {
  const total = latency.buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  const rank = Math.max(q * total, 1);
  let seen = 0;
  for (let i = 0; i < latency.buckets.length; i++) {
    const n = latency.buckets[i];
    if (n === 0) continue;
    if (seen + n >= rank) {
      const low = i === 0 ? 0 : bounds[i - 1];
      if (i >= bounds.length) return low;
      return low + ((rank - seen) / n) * (bounds[i] - low);
    }
    seen += n;
  }
  return bounds[bounds.length - 1];
}

function micros(us) {
  return us < 1000 ? `${us.toFixed(0)} µs` : `${(us / 1000).toFixed(1)} ms`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function rate(now, before, dt) {
  return before === undefined || dt <= 0 ? "" : ((now - before) / dt).toFixed(1);
}

function renderStats(stats, taken) {
  document.getElementById("process").textContent = `${stats.identity} · netsvc ${stats.version}`;
  const before = state.previous;
  const dt = before ? (taken - before.taken) / 1000 : 0;
  const links = document.querySelector("#links tbody");
  links.replaceChildren();
  for (const l of stats.links) {
    const row = links.insertRow();
    cell(row, l.peer);
    cell(row, l.remote);
    cell(row, l.user || "—");
    cell(row, l.tls ? "yes" : "no");
    cell(row, `${(l.age_ms / 1000).toFixed(0)} s`, "num");
    cell(row, bytes(l.bytes_in), "num");
    cell(row, bytes(l.bytes_out), "num");
    cell(row, bytes(l.queued_bytes), "num");
    cell(row, String(l.coalesced), "num");
    cell(row, String(l.dropped), "num");
  }
  const requests = document.querySelector("#requests tbody");
  requests.replaceChildren();
  const key = (r) => `${r.service}\u0000${r.role}`;
  const old = new Map((before ? before.stats.requests : []).map((r) => [key(r), r]));
  for (const r of stats.requests) {
    const failed = Object.values(r.failures).reduce((a, b) => a + b, 0);
    const was = old.get(key(r));
    const row = requests.insertRow();
    row.dataset.service = r.service;
    row.dataset.role = r.role;
    cell(row, r.service);
    cell(row, r.role);
    cell(row, String(r.ok), "num ok");
    cell(row, String(failed), "num");
    const wasTotal = was ? was.ok + Object.values(was.failures).reduce((a, b) => a + b, 0) : undefined;
    cell(row, rate(r.ok + failed, wasTotal, dt), "num");
    cell(row, micros(quantile(r.latency, stats.latency_bounds_us, 0.5)), "num");
    cell(row, micros(quantile(r.latency, stats.latency_bounds_us, 0.99)), "num");
  }
  const rep = stats.reports;
  document.getElementById("report-counters").textContent =
    `published ${rep.published} · received ${rep.received} · delivered ${rep.delivered} · ` +
    `sent ${rep.sent} · coalesced ${rep.coalesced} · missed ${rep.missed} · ` +
    `slow-consumer closes ${stats.slow_consumer_closes}`;
  const subjects = document.querySelector("#subjects tbody");
  subjects.replaceChildren();
  const skey = (s) => `${s.address}\u0000${s.subject}`;
  const oldSubjects = new Map((before ? before.stats.subjects : []).map((s) => [skey(s), s]));
  for (const s of stats.subjects) {
    const row = subjects.insertRow();
    cell(row, s.publisher);
    cell(row, s.subject);
    cell(row, String(s.reports), "num");
    const was = oldSubjects.get(skey(s));
    cell(row, rate(s.reports, was ? was.reports : undefined, dt), "num");
  }
  state.previous = { stats, taken };
}

async function pollStats() {
  try {
    const reply = await fetch("/api/stats", { headers: DASHBOARD });
    if (reply.status === 401) {
      state.polling = false;
      showLogin("the session has ended; log in again");
      return;
    }
    if (reply.status === 404) {
      // A gateway without stats: show the registry only, and stop asking.
      for (const s of document.querySelectorAll("section.stats")) s.classList.add("hidden");
      return;
    }
    if (reply.ok) renderStats(await reply.json(), Date.now());
  } catch (_) {
    // The server is away: the event stream says so; try again on the next tick.
  }
  setTimeout(pollStats, 1000);
}

document.getElementById("login").addEventListener("submit", logIn);
document.getElementById("logout").addEventListener("click", logOut);
start();
