// The one load generator of `make bench`: raw Engine.IO v4 / Socket.IO v5 frames
// over WebSocket (the `ws` package) or HTTP long-polling, against any server.
//
// Usage: node loadgen.js '<json options>'   (bench/run.py builds the options)
// Prints one JSON object (the scenario's figures) on stdout.
//
// Frames spoken: "0{...}" open, "40{auth}" connect, "40{...}" connected,
// "42[...]" event, "42<id>[...]" event with ack, "43<id>[...]" ack, "2" ping -> "3" pong.
// Every wait is bounded by opts.timeout seconds; a run that times out reports
// what it got (lost messages, failed handshakes) instead of hanging.
'use strict';
const WebSocket = require('ws');
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');
const { performance } = require('perf_hooks');

const opts = JSON.parse(process.argv[2]);
const HOST = '127.0.0.1';
const PATH = opts.path || '/socket.io/';
const TIMEOUT_MS = (opts.timeout || 60) * 1000;
const CLK_TCK = opts.clk_tck || 100;
// A cluster: clients spread over every node's port, the server CPU summed over every node.
const PORTS = opts.ports || [opts.port];
const PIDS = opts.pids || [opts.pid];

// ------------------------------------------------------------------ helpers
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const JWT_HEADER = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
function mint(sub) {
  const now = Math.floor(Date.now() / 1000);
  const body = JWT_HEADER + '.' + b64url(JSON.stringify({ sub, iat: now, exp: now + 3600 }));
  return body + '.' + crypto.createHmac('sha256', opts.secret).update(body).digest('base64url');
}

function serverCpu() { // utime + stime of the server process(es), in seconds
  let ticks = 0;
  for (const pid of PIDS) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLK_TCK;
}
function serverRss() { // bytes, summed over the server's processes
  let bytes = 0;
  for (const pid of PIDS) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    bytes += Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
  }
  return bytes;
}
function cpuMark() { return { wall: performance.now(), own: process.cpuUsage(), server: serverCpu() }; }
function cpuSince(mark) {
  const wall = (performance.now() - mark.wall) / 1000;
  const own = process.cpuUsage(mark.own);
  const ownSec = (own.user + own.system) / 1e6;
  return { wall_s: wall, loadgen_cpu_s: ownSec, loadgen_cpu_share: ownSec / wall, server_cpu_s: serverCpu() - mark.server };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms); }),
  ]);
}
// Run fn(i) for i < n with at most `limit` in flight; returns [ok, failed].
async function pool(n, limit, fn) {
  let next = 0, ok = 0, failed = 0, firstError = null;
  async function worker() {
    while (next < n) {
      const i = next++;
      try { await fn(i); ok++; } catch (e) { failed++; if (!firstError) firstError = String(e.message || e); }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return { ok, failed, firstError };
}
function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

// Message payloads: {"s":seq,"t":ms,"p":"xxx"} padded to opts.payload bytes of JSON.
function payload(seq) {
  const head = `{"s":${seq},"t":${performance.now().toFixed(3)},"p":"`;
  return head + 'x'.repeat(Math.max(0, (opts.payload || 100) - head.length - 2)) + '"}';
}
// Parse seq and timestamp from '42["msg",{"s":N,"t":T,...}]' without JSON.parse.
function parseMsg(str) {
  const i = str.indexOf('"s":');
  const j = str.indexOf('"t":', i);
  return [parseInt(str.slice(i + 4, i + 16), 10), parseFloat(str.slice(j + 4, j + 24))];
}

// ------------------------------------------------------------------ clients
// A Socket.IO client over WebSocket. onMsg(client, str) gets each "msg" event.
class WsClient {
  constructor(index, onMsg, port = PORTS[index % PORTS.length]) {
    this.index = index; this.onMsg = onMsg; this.port = port; this.acks = new Map(); this.nextAck = 0;
    this.closed = false; this.pings = 0; this.connected = false;
  }
  open() {
    return new Promise((resolve, reject) => {
      const ws = this.ws = new WebSocket(`ws://${HOST}:${this.port}${PATH}?EIO=4&transport=websocket`, { perMessageDeflate: false, skipUTF8Validation: true });
      ws.on('error', (e) => { if (!this.connected) reject(e); });
      ws.on('close', () => { this.closed = true; if (!this.connected) reject(new Error('closed before connect')); });
      ws.on('message', (data) => {
        const str = data.toString();
        const c = str.charCodeAt(0);
        if (c === 52 /* 4 */) {
          const t = str.charCodeAt(1);
          if (t === 50 /* 2: event */) { this.onMsg && this.onMsg(this, str); return; }
          if (t === 51 /* 3: ack */) {
            const m = /^43(\d+)(.*)$/s.exec(str);
            const cb = m && this.acks.get(Number(m[1]));
            if (cb) { this.acks.delete(Number(m[1])); cb(m[2]); }
            return;
          }
          if (t === 48 /* 0: connected */) { this.connected = true; resolve(this); return; }
          if (t === 52 /* 4: connect error */) { reject(new Error('connect error ' + str.slice(2, 120))); return; }
        } else if (c === 50 /* 2 ping */) { this.pings++; ws.send('3'); }
        else if (c === 48 /* 0 open */) { ws.send('40' + JSON.stringify({ token: mint('user' + this.index) })); }
      });
    });
  }
  emit(event, ...args) { this.ws.send('42' + JSON.stringify([event, ...args])); }
  call(event, ...args) {
    const id = this.nextAck++;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.ws.send('42' + id + JSON.stringify([event, ...args]));
    });
  }
  close() { try { this.ws.terminate(); } catch (e) { /* already gone */ } }
}

// A Socket.IO client over HTTP long-polling.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
function request(method, query, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: opts.port, method, agent, path: `${PATH}?EIO=4&transport=polling${query}`,
      headers: body !== undefined ? { 'content-type': 'text/plain;charset=UTF-8', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString()) : reject(new Error(`HTTP ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 100)}`)));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
let pollCount = 0;  // long-polling GETs answered, all clients
class PollClient {
  constructor(index, onMsg) { this.index = index; this.onMsg = onMsg; this.acks = new Map(); this.nextAck = 0; this.closed = false; this.pings = 0; this.stopped = false; }
  async open() {
    const open = await request('GET', '');
    const info = JSON.parse(open.slice(open.indexOf('{'), open.lastIndexOf('}') + 1));
    this.sid = info.sid; this.q = `&sid=${encodeURIComponent(this.sid)}`;
    this.connectedP = new Promise((resolve, reject) => { this.onConnected = resolve; this.onRefused = reject; });
    await request('POST', this.q, '40' + JSON.stringify({ token: mint('user' + this.index) }));
    this.loop();
    return withTimeout(this.connectedP, TIMEOUT_MS, 'polling connect');
  }
  async loop() {
    while (!this.stopped) {
      let body;
      try { body = await request('GET', this.q); pollCount++; } catch (e) { this.closed = true; this.onRefused(e); return; }
      for (const str of body.split('\x1e')) {
        const c = str.charCodeAt(0);
        if (c === 52) {
          const t = str.charCodeAt(1);
          if (t === 50) this.onMsg && this.onMsg(this, str);
          else if (t === 51) {
            const m = /^43(\d+)(.*)$/s.exec(str);
            const cb = m && this.acks.get(Number(m[1]));
            if (cb) { this.acks.delete(Number(m[1])); cb(m[2]); }
          } else if (t === 48) this.onConnected(this);
          else if (t === 52) this.onRefused(new Error('connect error ' + str.slice(2, 120)));
        } else if (c === 50) { this.pings++; this.post('3'); }
        else if (c === 49) { this.closed = true; return; }
      }
    }
  }
  post(body) { request('POST', this.q, body).catch(() => { this.closed = true; }); }
  emit(event, ...args) { this.post('42' + JSON.stringify([event, ...args])); }
  call(event, ...args) {
    const id = this.nextAck++;
    return new Promise((resolve) => { this.acks.set(id, resolve); this.post('42' + id + JSON.stringify([event, ...args])); });
  }
  close() { this.stopped = true; this.post('1'); }
}

// ---------------------------------------------------------------- scenarios
async function connectRate() {
  const n = opts.n, clients = [];
  const mark = cpuMark();
  const res = await pool(n, opts.concurrency || 100, async (i) => {
    const c = new WsClient(i, null);
    clients.push(c);
    await withTimeout(c.open(), TIMEOUT_MS, 'handshake');
  });
  const cpu = cpuSince(mark);
  for (const c of clients) c.close();
  return { n, handshakes: res.ok, failed: res.failed, first_error: res.firstError, handshakes_per_s: res.ok / cpu.wall_s,
    server_cpu_per_handshake_us: cpu.server_cpu_s / Math.max(1, res.ok) * 1e6, ...cpu };
}

// Fan-out: n subscribers in room "bench", one publisher emitting `messages`
// events with at most `window` messages not yet delivered to every subscriber.
async function fanout(transport, stalled) {
  const n = opts.n, M = opts.messages, W = opts.window || 20;
  const counted = stalled ? n - 1 : n;
  const seen = new Uint8Array(n * M);
  const lat = new Float64Array(counted * M);
  let delivered = 0, dups = 0, published = 0, lastDelivery = 0, start = 0, doneResolve;
  const done = new Promise((r) => { doneResolve = r; });
  let publisher;
  function pump() {
    while (published < M && published - Math.floor(delivered / counted) < W) {
      publisher.ws.send('42["publish","bench",' + payload(published) + ']');
      published++;
    }
  }
  function onMsg(client, str) {
    const [s, t] = parseMsg(str);
    const k = client.index * M + s;
    if (s < 0 || s >= M || !(k >= 0)) return;
    if (seen[k]) { dups++; return; }
    seen[k] = 1;
    const now = performance.now();
    lat[delivered++] = now - t;
    lastDelivery = now;
    if (delivered === counted * M) doneResolve();
    else if (published < M) pump();
  }
  const Cls = transport === 'polling' ? PollClient : WsClient;
  const subs = [];
  const res = await pool(n, opts.concurrency || 100, async (i) => {
    const c = new Cls(i, (stalled && i === 0) ? null : onMsg);
    subs.push(c);
    await withTimeout(c.open(), TIMEOUT_MS, 'subscriber connect');
    const ack = await withTimeout(c.call('join', 'bench'), TIMEOUT_MS, 'join');
    if (!ack.includes('ok')) throw new Error('join refused: ' + ack);
    if (stalled && i === 0) await withTimeout(c.call('join', 'stall'), TIMEOUT_MS, 'join stall');
  });
  if (res.failed) throw new Error(`${res.failed} subscribers failed to connect: ${res.firstError}`);
  publisher = new WsClient(n + 1, null, PORTS[0]);  // publishes on one node
  await withTimeout(publisher.open(), TIMEOUT_MS, 'publisher connect');
  let stallInfo = null;
  if (stalled) {
    // The stalled client stops reading its socket; then it is sent far more
    // than the kernel buffers hold, so the server is left holding its backlog.
    const victim = subs.find((c) => c.index === 0);
    victim.ws._socket.pause();
    const big = 'y'.repeat(opts.stall_bytes || 65536);
    for (let i = 0; i < (opts.stall_count || 64); i++) publisher.emit('publish', 'stall', { s: -1, p: big });
    await sleep(500);
    stallInfo = { stall_bytes_sent: big.length * (opts.stall_count || 64) };
  }
  await sleep(200);
  const mark = cpuMark();
  start = performance.now();
  const pollsAtStart = pollCount;
  pump();
  let timedOut = false;
  // Bounded wait: the whole run, or no new delivery for `stall_timeout` seconds.
  await new Promise((resolve) => {
    let lastSeen = -1, idle = 0;
    const tick = setInterval(() => {
      if (delivered === lastSeen) idle += 100; else { idle = 0; lastSeen = delivered; }
      if (idle >= (opts.idle_timeout || 10) * 1000 || performance.now() - start > TIMEOUT_MS) { timedOut = true; clearInterval(tick); resolve(); }
    }, 100);
    done.then(() => { clearInterval(tick); resolve(); });
  });
  const cpu = cpuSince(mark);
  const elapsed = ((lastDelivery || performance.now()) - start) / 1000;
  const sorted = Float64Array.from(lat.subarray(0, delivered)).sort();
  const dropped = subs.filter((c) => c.closed && !(stalled && c.index === 0)).length;
  const victimClosed = stalled ? subs.find((c) => c.index === 0).closed : null;
  for (const c of subs) c.close();
  publisher.close();
  return {
    transport, subscribers: n, counted_subscribers: counted, messages: M, window: W, expected: counted * M, delivered,
    lost: counted * M - delivered, duplicates: dups, timed_out: timedOut, subscribers_dropped: dropped,
    stalled_client_closed: victimClosed, ...stallInfo,
    msgs_per_s: delivered / elapsed, elapsed_s: elapsed,
    ...(transport === 'polling' ? { messages_per_poll: delivered / Math.max(1, pollCount - pollsAtStart) } : {}),
    latency_ms: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.length ? sorted[sorted.length - 1] : null },
    server_cpu_us_per_msg: cpu.server_cpu_s / Math.max(1, delivered) * 1e6, ...cpu,
  };
}

// Idle memory: n connections held for `hold` seconds with heartbeats.
async function memory() {
  const n = opts.n, clients = [];
  const rssBefore = serverRss();
  const res = await pool(n, opts.concurrency || 100, async (i) => {
    const c = new WsClient(i, null);
    clients.push(c);
    await withTimeout(c.open(), TIMEOUT_MS, 'handshake');
  });
  const rssConnected = serverRss();
  const mark = cpuMark();
  await sleep((opts.hold || 30) * 1000);
  const cpu = cpuSince(mark);
  const rssHeld = serverRss();
  const dropped = clients.filter((c) => c.closed).length;
  const pings = clients.reduce((a, c) => a + c.pings, 0);
  for (const c of clients) c.close();
  return { n, connected: res.ok, failed: res.failed, first_error: res.firstError, dropped, hold_s: opts.hold || 30,
    pings_per_client: pings / Math.max(1, clients.length), rss_before: rssBefore, rss_connected: rssConnected, rss_held: rssHeld,
    bytes_per_connection: (rssHeld - rssBefore) / Math.max(1, res.ok), ...cpu };
}

async function main() {
  let result;
  switch (opts.scenario) {
    case 'connect': result = await connectRate(); break;
    case 'fanout': result = await fanout('websocket', false); break;
    case 'polling': result = await fanout('polling', false); break;
    case 'slow': result = await fanout('websocket', true); break;
    case 'memory': result = await memory(); break;
    default: throw new Error('unknown scenario ' + opts.scenario);
  }
  process.stdout.write(JSON.stringify({ scenario: opts.scenario, ...result }) + '\n');
  process.exit(0);
}
main().catch((e) => { process.stdout.write(JSON.stringify({ scenario: opts.scenario, error: String(e.stack || e) }) + '\n'); process.exit(1); });
