// Runs the /console/ test page's own script against the server, with a tiny
// DOM stand-in and the `ws` package as the browser WebSocket (no browser here).
//
//   node actions_console.js <http://host:port> '<config json>'
//
// config: token, sessionId, artifactId, stayMs (idle time before the requests),
//         requests: [{action, data, requestId, asString}],
//         raw: text sent with the "Send raw text" button, timeoutMs
// Prints {"type": "status", text} changes, {"type": "line", kind, text} for each
// log line of the page, then done.

const vm = require("vm");
const WebSocket = require("ws");
const { print, deadline } = require("./lib");

const base = process.argv[2];
const config = JSON.parse(process.argv[3] || "{}");
deadline(config.timeoutMs || 10000, () => "console");

function element(id) {
  const el = {
    id, value: "", checked: false, disabled: false, className: "", scrollTop: 0, scrollHeight: 0, onclick: null,
    children: [], _text: "",
    appendChild(child) { this.children.push(child); print({ type: "line", kind: child.className, text: child.textContent }); },
  };
  Object.defineProperty(el, "textContent", {
    get() { return this._text; },
    set(v) {
      this._text = v;
      if (id === "status") print({ type: "status", text: v });
      if (id === "log" && v === "") this.children = [];
    },
  });
  return el;
}

(async () => {
  const response = await fetch(base + "/console/");
  const html = await response.text();
  const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
  const ids = [...html.matchAll(/id="([^"]+)"/g)].map((m) => m[1]);
  const elements = Object.fromEntries(ids.map((id) => [id, element(id)]));
  elements.asString.checked = true;
  elements.action.value = "ping";
  elements.data.value = "{}";
  const url = new URL(base);
  const context = vm.createContext({
    document: { getElementById: (id) => elements[id], createElement: () => element("line") },
    location: { protocol: url.protocol, host: url.host },
    WebSocket, URLSearchParams, JSON, Date, String, console,
  });
  vm.runInContext(script, context);
  const $ = (id) => elements[id];
  const lines = () => $("log").children.map((c) => c.className);
  const until = async (cond) => { while (!cond()) await new Promise((r) => setTimeout(r, 20)); };

  $("token").value = config.token;
  $("sessionId").value = config.sessionId;
  $("artifactId").value = config.artifactId || "";
  $("connect").onclick();
  await until(() => $("status").textContent.startsWith("connected") || lines().includes("error"));
  if ($("status").textContent.startsWith("connected")) {
    // Long enough for several server pings: the page must answer them.
    await new Promise((r) => setTimeout(r, config.stayMs || 0));
    for (const request of config.requests || []) {
      const before = $("log").children.length;
      $("action").value = request.action;
      $("requestId").value = request.requestId || "";
      $("data").value = JSON.stringify(request.data === undefined ? {} : request.data);
      $("asString").checked = request.asString !== false;
      $("send").onclick();
      await until(() => $("log").children.slice(before).some((c) => ["RESPONSE", "ERROR"].includes(c.className)));
    }
    if (config.raw !== undefined) {
      const before = $("log").children.length;
      $("data").value = config.raw;
      $("raw").onclick();
      await until(() => $("log").children.slice(before).some((c) => c.className === "ERROR"));
    }
    $("disconnect").onclick();
  }
  await until(() => $("status").textContent === "disconnected");
  print({ type: "done" });
  process.exit(0);
})();
