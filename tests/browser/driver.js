// Drives Debian's chromium with playwright-core for the browser tests
// (tests/support/browser.py): one browser for a whole test module, a fresh
// context (cookies, storage) for each page a test opens.
//
//   node driver.js <chromium> <screenshot dir>
//
// Commands arrive on stdin as JSON lines {"id", "js"}; the JavaScript is
// evaluated here, awaited, and answered with {"type": "result", id, value |
// error}.  In scope: `open(name, url)` -> a new page in its own context,
// `page(name)`, `shot(name, file)` (a full-page PNG in the screenshot dir),
// `close(name)`, `closeAll()`.  Every uncaught exception or console.error of a page is
// printed as {"type": "jserror", page, text} (a browser's own "Failed to
// load resource" line for an answer with an error status is not: the tests
// check statuses themselves); the tests count these as failures.

const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

const [executablePath, shots] = process.argv.slice(2);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const pages = new Map();   // name -> {context, page}
let browser = null;

async function open(name, url) {
  await close(name);
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("pageerror", (err) => print({ type: "jserror", page: name, text: String(err && err.stack || err) }));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
      print({ type: "jserror", page: name, text: msg.text() });
    }
  });
  pages.set(name, { context, page });
  if (url) await page.goto(url);
  return page;
}

function page(name) {
  const entry = pages.get(name);
  if (!entry) throw new Error(`no page ${name}`);
  return entry.page;
}

async function shot(name, file) {
  await page(name).screenshot({ path: path.join(shots, file), fullPage: true });
  return file;
}

async function closeAll() {
  for (const name of [...pages.keys()]) await close(name);
}

async function close(name) {
  const entry = pages.get(name);
  if (entry) {
    pages.delete(name);
    await entry.context.close();
  }
}

(async () => {
  browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run"],
  });
  print({ type: "ready", version: browser.version() });
  readline.createInterface({ input: process.stdin }).on("line", async (line) => {
    const cmd = JSON.parse(line);
    try {
      const value = await eval(`(async () => { ${cmd.js} })()`);
      print({ type: "result", id: cmd.id, value: value === undefined ? null : value });
    } catch (err) {
      print({ type: "result", id: cmd.id, error: String(err && err.message || err) });
    }
  });
  process.stdin.on("end", async () => {
    await browser.close();
    process.exit(0);
  });
})().catch((err) => {
  print({ type: "fatal", error: String(err && err.stack || err) });
  process.exit(1);
});
