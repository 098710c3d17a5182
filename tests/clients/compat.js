// Runs the compatibility scenario (compat_scenario.js) with one installed
// socket.io-client version and prints its report as one JSON line.
//
//   node compat.js <package> <url> <token>
//
// <package> is one of package.json's names: socket.io-client (4.8), or an
// alias such as socket.io-client-v3.  Output: {"type": "report", version, ...}.

const { print, deadline } = require("./lib");
const scenario = require("./compat_scenario");

const [pkg, url, token] = process.argv.slice(2);
deadline(30000, () => ({ pkg }));

const client = require(pkg);
const version = require(`${pkg}/package.json`).version;

scenario(client.io || client, url, token).then((report) => {
  print({ type: "report", version, ...report });
  process.exit(0);
});
