// The PaaS document's React component (DeploymentStatus), its hooks code as
// written, run under a minimal useState/useEffect shim (no JSX rendering).
//
//   node deployments_react.js <url> <jwt> <deploymentId>
//
// Prints state {name, value} whenever the component's status or logs change.
// stdin command lines: "unmount" runs the effect's cleanup, then exits.

const { io } = require("socket.io-client");
const readline = require("readline");
const { print, deadline } = require("./lib");

const [URL, TOKEN, DEPLOYMENT] = process.argv.slice(2);
deadline(45000, () => "deployments_react");
console.log = (...args) => print({ type: "console", text: args.join(" ") });

// ---- a tiny hook shim ----
const stateNames = ["status", "logs", "socket"];
const states = [];
let hookIndex = 0;
function useState(initial) {
  const index = hookIndex++;
  states[index] = initial;
  const set = (next) => {
    states[index] = typeof next === "function" ? next(states[index]) : next;
    if (stateNames[index] !== "socket") print({ type: "state", name: stateNames[index], value: states[index] });
  };
  return [states[index], set];
}
let cleanup = null;
function useEffect(effect) {
  cleanup = effect();
}

// ---- the document's component, as written (URL filled in, JSX left out) ----
const DeploymentStatus = ({ deploymentId, token }) => {
  const [status, setStatus] = useState('');
  const [logs, setLogs] = useState([]);
  const [socket, setSocket] = useState(null);

  useEffect(() => {
    const newSocket = io(URL, {
      auth: {
        token: token
      }
    });

    newSocket.on('connect', () => {
      console.log('Connected to WebSocket server');
      newSocket.emit('deployment:subscribe', deploymentId);
    });

    newSocket.on('deployment:status', (data) => {
      setStatus(data.status);
    });

    newSocket.on('deployment:log', (data) => {
      setLogs(prevLogs => [...prevLogs, data.log]);
    });

    setSocket(newSocket);

    return () => {
      newSocket.emit('deployment:unsubscribe', deploymentId);
      newSocket.disconnect();
    };
  }, [deploymentId, token]);

  // return (<div> ... status ... logs ... </div>);
};
// ---- end of the document's code ----

DeploymentStatus({ deploymentId: DEPLOYMENT, token: TOKEN });

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "unmount") {
    cleanup();
    print({ type: "unmounted" });
    setTimeout(() => process.exit(0), 100);
  }
});
process.stdin.on("end", () => process.exit(0));
