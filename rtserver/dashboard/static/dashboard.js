// rtserver's operator console.  Served by rtserver itself; no library, no CDN.
//
// Live data comes over Socket.IO on the dashboard's admin-only namespace.  The
// page speaks the small part of Engine.IO v4 / Socket.IO v5 it needs itself,
// over a WebSocket: text packets, events with acks, pings answered,
// reconnection with back-off.  The session cookie (HttpOnly, this path only)
// authenticates it.  Everything shown is built with textContent: nothing the
// server sends is parsed as HTML.
"use strict";

const PATH = document.body.dataset.path;
const NAMESPACE = document.body.dataset.namespace;
const REFRESH_MS = 2000;
const TAIL_ROWS = 500;
const CALL_TIMEOUT_MS = 10000;

// ------------------------------------------------------------ Socket.IO
class Live {
  constructor(handlers) {
    this.handlers = handlers;       // {connect, down, refused, ended, event(name, args)}
    this.ws = null;
    this.connected = false;
    this.stopped = false;
    this.acks = new Map();
    this.nextId = 0;
    this.backoff = 500;
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${PATH}socket.io/?EIO=4&transport=websocket`);
    this.ws = ws;
    ws.onmessage = (e) => this.engine(String(e.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.connected = false;
      for (const pending of this.acks.values()) pending.reject(new Error("connection lost"));
      this.acks.clear();
      this.handlers.down(this.stopped ? "disconnected" : "reconnecting");
      if (!this.stopped) {
        setTimeout(() => this.open(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 10000);
      }
    };
  }

  send(text) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  engine(text) {
    const type = text[0];
    if (type === "0") this.send("40" + NAMESPACE + ",");          // open: CONNECT to the namespace
    else if (type === "2") this.send("3");                          // ping: pong
    else if (type === "1") this.ws.close();
    else if (type === "4") this.packet(text.slice(1));
  }

  packet(text) {
    const type = text[0];
    let rest = text.slice(1);
    if (rest.startsWith("/")) {
      const comma = rest.indexOf(",");
      if (rest.slice(0, comma) !== NAMESPACE) return;
      rest = rest.slice(comma + 1);
    } else if (NAMESPACE !== "/") {
      return;
    }
    const id = /^\d+/.exec(rest);
    if (id) rest = rest.slice(id[0].length);
    const data = rest ? JSON.parse(rest) : undefined;
    if (type === "0") {
      this.connected = true;
      this.backoff = 500;
      this.handlers.connect();
    } else if (type === "4") {
      this.stopped = true;
      this.handlers.refused(data || {});
      this.ws.close();
    } else if (type === "1") {
      // Disconnected by the server: a logout, or the session's end.
      this.stopped = true;
      this.ws.close();
      this.handlers.ended();
    } else if (type === "2") {
      const [name, ...args] = data;
      this.handlers.event(name, args);
    } else if (type === "3" && id) {
      const pending = this.acks.get(Number(id[0]));
      if (pending) {
        this.acks.delete(Number(id[0]));
        pending.resolve(data[0]);
      }
    }
  }

  // Emit with an ack: resolves with the answer, rejects on {error} or a timeout.
  call(event, payload) {
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        reject(new Error("not connected"));
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error(`${event}: no answer`));
      }, CALL_TIMEOUT_MS);
      this.acks.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          if (value && typeof value === "object" && value.error) {
            const err = new Error(value.error.message);
            err.code = value.error.code;
            reject(err);
          } else {
            resolve(value);
          }
        },
        reject: (err) => { clearTimeout(timer); reject(err); },
      });
      this.send(`42${NAMESPACE},${id}${JSON.stringify([event, payload === undefined ? {} : payload])}`);
    });
  }
}

// -------------------------------------------------------------- helpers
const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function clock(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "";
}

function ago(seconds) {
  if (!seconds) return "never";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function stamp(seconds) {
  return el("span", { title: seconds ? new Date(seconds * 1000).toISOString() : "" }, ago(seconds));
}

function rate(value) {
  return Number.isInteger(value) || value >= 100 ? Math.round(value).toString() : value.toFixed(1);
}

// The axis top: the next 1, 2 or 5 times a power of ten at or above value.
function ceiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((top) => top >= value);
}

function toast(text, bad) {
  const box = $("toast");
  box.textContent = text;
  box.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ""; }, 5000);
}

function fill(select, values, current, blank) {
  const wanted = JSON.stringify([blank, values]);
  if (select.dataset.options !== wanted) {
    select.replaceChildren(...(blank !== undefined ? [el("option", { value: "" }, blank)] : []),
      ...values.map((v) => el("option", { value: v }, v)));
    select.dataset.options = wanted;
  }
  if (current !== undefined && current !== null) select.value = current;
}

function parseJson(text, what) {
  try {
    return text.trim() ? JSON.parse(text) : null;
  } catch (err) {
    throw new Error(`${what} is not JSON: ${err.message}`);
  }
}

// Ask, then act: every action is confirmed in a dialog first.
function confirmAction(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function act(description, request) {
  if (!(await confirmAction(description))) return;
  try {
    const answer = await live.call("action", request);
    const bodies = answer.results.map((r) => r.body);
    if (answer.ok) {
      toast(`${description}: done ${JSON.stringify(bodies.length === 1 ? bodies[0] : bodies)}`);
    } else {
      const failed = answer.results.find((r) => r.status >= 300);
      const error = failed.body && (failed.body.error || failed.body);
      toast(`${description}: refused (${failed.status}) ${error && error.message ? error.message : ""}`, true);
    }
  } catch (err) {
    toast(`${description}: ${err.message}`, true);
  }
  refresh();
}

// ----------------------------------------------------------------- plots
const PLOT = { width: 640, height: 170, left: 48, right: 10, top: 10, bottom: 22 };

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function plot(target, points, series) {
  const box = $(target);
  box.replaceChildren();
  const { width, height, left, right, top, bottom } = PLOT;
  const w = width - left - right, h = height - top - bottom;
  box.append(svg("rect", { x: left, y: top, width: w, height: h, class: "frame" }));
  if (points.length < 2) {
    box.append(svg("text", { x: left + 8, y: top + 20, class: "label" }, "collecting samples…"));
    return;
  }
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  let max = 0;
  for (const p of points) for (const s of series) max = Math.max(max, p[s]);
  max = ceiling(max);
  const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1e-9)) * w;
  const y = (v) => top + h - (v / max) * h;
  box.append(svg("line", { x1: left, x2: left + w, y1: top + h / 2, y2: top + h / 2, class: "grid" }));
  box.append(svg("text", { x: left - 4, y: top + 10, class: "label end" }, rate(max)));
  box.append(svg("text", { x: left - 4, y: top + h, class: "label end" }, "0"));
  box.append(svg("text", { x: left, y: height - 6, class: "label" }, `${duration(t1 - t0)} ago`));
  box.append(svg("text", { x: left + w, y: height - 6, class: "label end" }, clock(t1)));
  for (const s of series) {
    const line = points.map((p) => `${x(p.t).toFixed(1)},${y(p[s]).toFixed(1)}`).join(" ");
    box.append(svg("polyline", { points: line, class: `line s-${s}` }));
  }
}

// ------------------------------------------------------------------ views
const state = {
  tab: "overview",
  samples: [],
  interval: 5,
  views: {},            // tab -> last answer's JSON text: unchanged answers are not redrawn
  tailRunning: false,
  busy: false,
  leaving: false,       // this page is logging out
};

function card(label, value, detail) {
  return el("div", { class: "card" }, el("div", { class: "value" }, value), el("div", { class: "label" }, label),
    detail ? el("div", { class: "detail" }, detail) : null);
}

function table(id, head, rows) {
  const body = rows.length ? rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))
    : [el("tr", {}, el("td", { colspan: head.length, class: "count" }, "none"))];
  $(id).replaceChildren(el("tr", {}, head.map((h) => el("th", {}, h))), ...body);
}

function showOverview(data) {
  const since = state.samples.length ? state.samples[state.samples.length - 1].t : 0;
  state.samples.push(...data.samples.filter((p) => p.t > since));
  const horizon = Date.now() / 1000 - 3600;
  state.samples = state.samples.filter((p) => p.t >= horizon);
  state.interval = data.interval;
  const node = data.nodes.find((n) => n.self) || data.nodes[0];
  $("node").textContent = `${node.hostname} · pid ${node.pid} · v${data.version}`;
  const c = data.connections;
  const refused = Object.values(data.refusals).reduce((a, b) => a + b, 0);
  $("cards").replaceChildren(
    card("connections", c.total, `${c.polling || 0} polling · ${c.websocket || 0} websocket`),
    card("online users", data.onlineUsers, `${data.tenants} tenants`),
    card("online devices", data.onlineDevices),
    card("messages in /s", rate(data.rates.in), `${data.messages.in} in all`),
    card("messages out /s", rate(data.rates.out), `${data.messages.out} in all`),
    card("refusals", refused, `${rate(data.rates.refusals)} /s now`),
    card("slow consumers", data.slowConsumers, "disconnected"),
    card("faults", Object.values(data.faults).reduce((a, b) => a + b, 0), "contained errors (see the log)"),
    card("uptime", duration(data.uptime), `version ${data.version}`),
  );
  plot("plot-connections", state.samples, ["connections"]);
  plot("plot-messages", state.samples, ["in", "out"]);
  plot("plot-refusals", state.samples, ["refusals", "overflows"]);
  const nodeRows = data.nodes.map((n) => [n.id + (n.self ? " (this)" : ""), n.hostname, n.pid, n.version, duration(n.uptime), n.connections]);
  if (!data.everyNode) nodeRows.push(["(some nodes did not answer)", "", "", "", "", ""]);
  table("nodes", ["node", "host", "pid", "version", "up", "connections"], nodeRows);
  table("namespaces", ["namespace", "sockets"], Object.entries(data.namespaces).map(([k, v]) => [k, v]));
  table("refusals", ["reason", "count"], Object.entries(data.refusals).map(([k, v]) => [k, v]));
}

function layoutCell(layout) {
  if (!layout) return "";
  return el("span", { title: layout.data },
    `${layout.layoutId}${layout.forDevice ? "" : " (tenant)"} · `, stamp(layout.at));
}

function showDevices(data) {
  fill($("device-tenant"), data.tenants, data.tenant);
  $("layout-box").hidden = !state.signage;
  $("device-count").textContent = `${data.devices.length} of ${data.total} shown`;
  const rows = data.devices.map((d) => el("tr", { class: d.online ? "device" : "device offline", data: { device: d.deviceId } },
    el("td", {}, el("span", { class: d.online ? "badge on" : "badge off" }, d.online ? "online" : "offline")),
    el("td", { class: "mono" }, d.deviceId),
    el("td", {}, d.owner || ""),
    el("td", {}, d.online ? el("span", {}, "since ", stamp(d.lastSeen)) : stamp(d.lastSeen)),
    el("td", { class: "mono" }, d.address || ""),
    el("td", { class: "mono small" }, d.channels.join(" ")),
    el("td", {}, layoutCell(d.layout)),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "target", onclick: () => { $("send-device").value = d.deviceId; $("send-panel").open = true; } }, "Send…"),
      d.online ? el("button", { type: "button", class: "disconnect danger", onclick: () => act(`Disconnect device ${d.deviceId}`, { action: "disconnect", device: d.deviceId }) }, "Disconnect") : null),
  ));
  $("device-table").tBodies[0].replaceChildren(...rows);
}

function showUsers(data) {
  fill($("user-tenant"), data.tenants, undefined, "all tenants");
  $("user-count").textContent = `${data.users.length} of ${data.total} shown`;
  const rows = [];
  for (const u of data.users) {
    const sockets = u.sockets.length ? u.sockets : [null];
    sockets.forEach((s, i) => {
      const first = i === 0;
      rows.push(el("tr", { class: first ? "user first" : "user", data: { user: u.user, sid: s ? s.sid : "" } },
        el("td", {}, first ? u.tenant || "—" : ""),
        el("td", {}, first ? u.user : ""),
        el("td", {}, first ? el("span", { class: u.online ? "badge on" : "badge off" }, u.online ? "online" : "offline") : "",
          first && u.statusText ? ` ${u.statusText}` : ""),
        el("td", { class: "mono", title: s ? JSON.stringify({ userAgent: s.userAgent, origin: s.origin, query: s.query, auth: s.auth }) : "" }, s ? s.sid : ""),
        el("td", {}, s ? s.namespace : ""),
        el("td", {}, s ? s.transport : ""),
        el("td", { class: "mono" }, s ? s.address : ""),
        el("td", { class: "mono small" }, s ? s.rooms.join(" ") : ""),
        el("td", {}, s ? stamp(s.since) : ""),
        el("td", { class: "actions" },
          s ? el("button", { type: "button", class: "disconnect danger", onclick: () => act(`Disconnect socket ${s.sid} of ${u.user}`, { action: "disconnect", sid: s.sid, namespace: s.namespace }) }, "Disconnect") : null,
          first && u.sockets.length > 1 ? el("button", { type: "button", class: "disconnect-user danger", onclick: () => act(`Disconnect every socket of ${u.user}`, { action: "disconnect", user: u.user }) }, "Disconnect user") : null,
          first ? el("button", { type: "button", class: "revoke danger", onclick: () => act(`Revoke ${u.user}'s tokens (their sockets end now)`, { action: "revoke", user: u.user }) }, "Revoke") : null),
      ));
    });
  }
  $("user-table").tBodies[0].replaceChildren(...rows);
}

function showRooms(data) {
  fill($("room-namespace"), data.namespaces.length ? data.namespaces : ["/"], data.namespace);
  $("room-count").textContent = `${data.rooms.length} of ${data.total} shown`;
  $("room-table").tBodies[0].replaceChildren(...data.rooms.map((r) => el("tr", { data: { room: r.room } },
    el("td", { class: "mono" }, r.room),
    el("td", {}, r.size),
    el("td", { class: "small" }, r.members.map((m) => m.user || m.sid).join(", ") + (r.size > r.members.length ? " …" : "")),
    el("td", {}, r.lastEvent ? el("span", {}, `${r.lastEvent.event} · `, stamp(r.lastEvent.at)) : ""),
  )));
}

const VIEWS = {
  overview: { event: "overview", query: () => ({ since: state.samples.length ? state.samples[state.samples.length - 1].t : 0 }), show: showOverview, cache: false },
  devices: {
    event: "devices",
    query: () => ({ tenant: $("device-tenant").value || null, text: $("device-filter").value, status: $("device-status").value, sort: $("device-sort").value }),
    show: showDevices,
  },
  users: { event: "users", query: () => ({ tenant: $("user-tenant").value || null, text: $("user-filter").value }), show: showUsers },
  rooms: { event: "rooms", query: () => ({ namespace: $("room-namespace").value || "/", text: $("room-filter").value }), show: showRooms },
};

async function refresh() {
  const view = VIEWS[state.tab];
  if (!view || state.busy || !live.connected) return;
  state.busy = true;
  try {
    const data = await live.call(view.event, view.query());
    if (data.signage !== undefined) state.signage = data.signage;
    const text = JSON.stringify(data);
    // Unchanged data is not redrawn (a button under the pointer stays put); relative times still move.
    if (view.cache === false || state.views[state.tab] !== text || Date.now() - (state.drawn || 0) > 10000) {
      state.views[state.tab] = text;
      state.drawn = Date.now();
      view.show(data);
    }
  } catch (err) {
    if (err.code === "session_expired") location.href = PATH;
    else if (live.connected) toast(`${view.event}: ${err.message}`, true);
  } finally {
    state.busy = false;
  }
}

function showTab(name) {
  state.tab = name;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== `tab-${name}`;
  state.views[name] = null;
  refresh();
}

// ------------------------------------------------------------------- tail
function tailFilters() {
  return { tenant: $("tail-tenant").value.trim(), room: $("tail-room").value.trim(), event: $("tail-event").value.trim() };
}

async function setTail(running) {
  try {
    const answer = await live.call("tail", { running, ...tailFilters() });
    state.tailRunning = answer.running;
  } catch (err) {
    toast(`event tail: ${err.message}`, true);
    state.tailRunning = false;
  }
  $("tail-toggle").textContent = state.tailRunning ? "Pause" : "Run";
  $("tail-state").textContent = state.tailRunning ? "running" : "paused";
}

function showTail(batch) {
  const body = $("tail-table").tBodies[0];
  for (const e of batch.events) {
    const where = e.dir === "in" ? `${e.from.user || ""} ${e.from.sid}` : e.to === null ? "everyone" : e.to.join(" ");
    body.prepend(el("tr", { class: `tail-${e.dir}` },
      el("td", {}, new Date(e.t * 1000).toLocaleTimeString()),
      el("td", {}, e.dir === "in" ? "→ in" : "← out"),
      el("td", {}, e.namespace),
      el("td", { class: "mono" }, e.event),
      el("td", { class: "mono small" }, where),
      el("td", { class: "mono small payload" }, e.payload)));
  }
  while (body.rows.length > TAIL_ROWS) body.deleteRow(body.rows.length - 1);
  if (batch.dropped) $("tail-state").textContent = `running (${batch.dropped} events not shown: too many)`;
}

// ---------------------------------------------------------------- actions
function sendTarget() {
  const device = $("send-device").value.trim();
  const tenant = $("device-tenant").value;
  return device ? { device, tenant, what: `device ${device}` } : { tenant, what: `every socket of tenant ${tenant}` };
}

// A JSON text box's value, or a toast and undefined when it is not JSON.
function jsonBox(id, what) {
  try {
    return { value: parseJson($(id).value, what) };
  } catch (err) {
    toast(err.message, true);
    return undefined;
  }
}

$("push-layout").addEventListener("click", () => {
  const target = sendTarget();
  const data = jsonBox("layout-data", "layout data");
  if (!data) return;
  const request = { action: "layout", tenant: target.tenant, layoutId: $("layout-id").value.trim(), layoutData: data.value };
  if (target.device) request.device = target.device;
  act(`Push layout ${request.layoutId} to ${target.what}`, request);
});

$("send-notify").addEventListener("click", () => {
  const target = sendTarget();
  const data = jsonBox("notify-data", "notification data");
  if (!data) return;
  const request = { action: "notify", event: $("notify-event").value.trim(), data: data.value };
  if (target.device) request.device = target.device;
  else request.tenant = target.tenant;
  act(`Send ${request.event} to ${target.what}`, request);
});

// ------------------------------------------------------------------ wiring
const live = new Live({
  connect: async () => {
    $("link").textContent = "live";
    $("link").className = "state up";
    try {
      const me = await live.call("whoami");
      $("operator").textContent = `signed in as ${me.operator}`;
    } catch (err) {
      toast(`whoami: ${err.message}`, true);
    }
    if (state.tailRunning) setTail(true);
    refresh();
  },
  down: (why) => {
    $("link").textContent = why;
    $("link").className = "state down";
  },
  refused: (error) => {
    const code = error.data && error.data.code;
    $("link").textContent = `refused: ${code || error.message}`;
    // The login is over (expired, revoked, logged out elsewhere): back to the login form.
    if (code === "session_expired" || code === "auth_required") location.href = PATH;
  },
  // A logout elsewhere, or the session's end; not this page's own logout, whose answer clears the cookie.
  ended: () => { if (!state.leaving) location.href = PATH; },
  event: (name, args) => {
    if (name === "tail") showTail(args[0]);
  },
});

for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
for (const id of ["device-tenant", "device-status", "device-sort", "user-tenant", "room-namespace"]) {
  $(id).addEventListener("change", () => { state.views[state.tab] = null; refresh(); });
}
for (const id of ["device-filter", "user-filter", "room-filter"]) {
  $(id).addEventListener("input", () => { state.views[state.tab] = null; refresh(); });
}
for (const id of ["tail-tenant", "tail-room", "tail-event"]) {
  $(id).addEventListener("change", () => { if (state.tailRunning) setTail(true); });
}
$("tail-toggle").addEventListener("click", () => setTail(!state.tailRunning));
$("logout").form.addEventListener("submit", () => { state.leaving = true; });
$("tail-clear").addEventListener("click", () => $("tail-table").tBodies[0].replaceChildren());

setInterval(refresh, REFRESH_MS);
live.open();
