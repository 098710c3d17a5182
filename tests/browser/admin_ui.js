// The official admin UI (the bundle shipped in @socket.io/admin-ui, served by
// the test from an origin of its own) in Debian's chromium, driven by
// playwright-core as a person would use it: log in through the connection
// form, then read the Sockets and Rooms pages.
//
//   node admin_ui.js '<config json>'
//
// config: ui (URL of the UI's index.html), server (rtserver's URL), username,
// password, sockets (socket ids the Sockets page must list), rooms (room names
// the Rooms page must list), screenshots (a directory), chromium (default
// /usr/bin/chromium), timeoutMs (default 60000).
//
// Only the test's own servers are reached: every other request (the page's
// web fonts and icon font) is answered here with an empty stylesheet, and the
// browser resolves no other host.
//
// Prints JSON lines: step {name}, sockets {rows: [[id, address, transport]]},
// rooms {names}, screenshot {path}, error {source, text} for each page error
// or console error, failure {message}, done.
const path = require("path");
const { chromium } = require("playwright-core");

const config = JSON.parse(process.argv[2]);
const timeout = config.timeoutMs || 60000;
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const local = (url) => /^https?:\/\/127\.0\.0\.1(:\d+)?\//.test(url) || url.startsWith("data:");

async function screenshot(page, name) {
  const file = path.join(config.screenshots, name);
  await page.screenshot({ path: file, fullPage: true });
  print({ type: "screenshot", path: file });
}

// Open one of the UI's pages and wait until its slide-in transition is over
// (until then the page it leaves is still in the document).
async function show(page, hash) {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForFunction(
    (h) => location.hash === h && !document.querySelector('[class*="-enter-active"], [class*="-leave-active"]'),
    hash,
  );
}

// Rows of the page's data table once it lists everything in `expected` (first column).
async function tableRows(page, expected) {
  const rows = page.locator("table tbody tr");
  for (const text of expected) {
    await rows.filter({ hasText: text }).first().waitFor({ timeout });
  }
  return rows.evaluateAll((trs) =>
    trs.map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => td.innerText.trim())),
  );
}

async function main() {
  const browser = await chromium.launch({
    executablePath: config.chromium || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.route(
      (url) => !local(url.href),
      (route) => route.fulfill({ status: 200, contentType: "text/css", body: "" }),
    );
    const page = await context.newPage();
    page.setDefaultTimeout(timeout);
    page.on("pageerror", (err) => print({ type: "error", source: "page", text: String(err) }));
    page.on("console", (msg) => {
      if (msg.type() === "error") print({ type: "error", source: "console", text: msg.text() });
    });

    await page.goto(config.ui);
    print({ type: "step", name: "loaded" });
    await page.getByLabel("Server URL").fill(config.server);
    await page.getByLabel("Username").fill(config.username);
    await page.getByLabel("Password").fill(config.password);
    await page.getByRole("button", { name: "Connect" }).click();
    await page.getByLabel("Server URL").waitFor({ state: "hidden" });
    print({ type: "step", name: "logged in" });
    await page.getByText("Healthy").first().waitFor();
    await screenshot(page, "dashboard.png");

    await show(page, "#/sockets/");
    // A socket that connected over long-polling shows WebSocket once upgraded.
    await page.waitForFunction(
      (ids) =>
        ids.every((id) =>
          Array.from(document.querySelectorAll("table tbody tr")).some(
            (tr) => tr.innerText.includes(id) && tr.innerText.includes("WebSocket"),
          ),
        ),
      config.sockets,
    );
    const sockets = await tableRows(page, config.sockets);
    print({ type: "sockets", rows: sockets.map((row) => row.slice(0, 3)) });
    await screenshot(page, "sockets.png");

    await show(page, "#/rooms/");
    const rooms = await tableRows(page, config.rooms);
    print({ type: "rooms", names: rooms.map((r) => r[0]) });
    await screenshot(page, "rooms.png");
    print({ type: "done" });
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  print({ type: "failure", message: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
