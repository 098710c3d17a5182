"""`make bench`: rtserver side by side with Node socket.io and python-socketio.

Standard library only (it creates the environments it needs):

- bench/.venv from bench/requirements.txt (python-socketio on aiohttp and on
  uvicorn, pyjwt, py-spy), and `npm ci` in bench/peers/node and bench/loadgen
  from their committed lock files;
- for every run, scenario and server: a fresh server pinned to core 0, the
  load generator (bench/loadgen/loadgen.js) pinned to core 1, loopback only;
- the median of the runs per figure, the ratio rtserver/peer, written to
  bench/results/latest.md and latest.json;
- a py-spy profile of rtserver under the 1,000-subscriber fan-out.

The cluster scenario runs two nodes of a server (rtserver with [cluster], Node
socket.io with @socket.io/redis-adapter) on core 0 and one redis-server
(Debian's) beside the load generator on core 1: subscribers spread over both
nodes, publishes on the first, CPU summed over the nodes.

Knobs: BENCH_RUNS (default 3), BENCH_QUICK=1 (one run, small sizes: a smoke
test), BENCH_SERVERS (comma list), BENCH_SCENARIOS (comma list; e.g.
BENCH_SCENARIOS=cluster_1000x200 BENCH_SERVERS=rtserver,socket.io for the
cluster alone; `workers` names the comparison of `serve --workers 2` with one
process, bench/results/workers.md), BENCH_PROFILE=0 (skip the profile).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
RT_PYTHON = ROOT / ".venv" / "bin" / "python"
SECRET = "rtserver-bench-secret-0123456789abcdef"  # also in bench/apps/rtserver.toml
QUICK = os.environ.get("BENCH_QUICK") == "1"
RUNS = int(os.environ.get("BENCH_RUNS", "1" if QUICK else "3"))
SERVER_CORE, LOADGEN_CORE = "0", "1"

# Scenario -> load generator options.  Full sizes follow the issue; quick ones are a smoke test.
SCENARIOS: dict[str, dict] = {
    "connect": {"scenario": "connect", "n": 2000, "concurrency": 100},
    "fanout_1000x200": {"scenario": "fanout", "n": 1000, "messages": 200, "payload": 100, "window": 20},
    "fanout_100x2000": {"scenario": "fanout", "n": 100, "messages": 2000, "payload": 100, "window": 20},
    "polling_200x200": {"scenario": "polling", "n": 200, "messages": 200, "payload": 100, "window": 20},
    "slow_1000x200": {"scenario": "slow", "n": 1000, "messages": 200, "payload": 100, "window": 20,
                      "stall_bytes": 65536, "stall_count": 64},
    "memory": {"scenario": "memory", "n": 10000, "hold": 30, "concurrency": 200},
    "cluster_1000x200": {"scenario": "fanout", "n": 1000, "messages": 200, "payload": 100, "window": 20, "nodes": 2},
}
#: The servers with a cluster of their own through Redis.
CLUSTER_SERVERS = ("rtserver", "socket.io (node)")
if QUICK:
    SCENARIOS["connect"]["n"] = 300
    SCENARIOS["fanout_1000x200"].update(n=200, messages=50)
    SCENARIOS["fanout_100x2000"].update(n=20, messages=300)
    SCENARIOS["polling_200x200"].update(n=30, messages=30)
    SCENARIOS["slow_1000x200"].update(n=200, messages=50, stall_count=32)
    SCENARIOS["memory"].update(n=1000, hold=3)
    SCENARIOS["cluster_1000x200"].update(n=200, messages=50)


def log(*args: object) -> None:
    print("[bench]", *args, file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> None:
    log("$", " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


# ------------------------------------------------------------ environments
def setup() -> None:
    if not shutil.which("node") or not shutil.which("npm"):
        sys.exit("bench: node and npm are required")
    if not shutil.which("taskset"):
        sys.exit("bench: taskset (util-linux) is required")
    if not RT_PYTHON.exists():
        sys.exit("bench: run `make bench` (it creates .venv first)")
    req = BENCH / "requirements.txt"
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < req.stat().st_mtime:
        if not (VENV / "bin" / "python").exists():
            run([sys.executable, "-m", "venv", str(VENV)])
        run([str(VENV / "bin" / "pip"), "install", "--quiet", "--upgrade", "pip"])
        run([str(VENV / "bin" / "pip"), "install", "--quiet", "-r", str(req)])
        stamp.touch()
    for pkg in (BENCH / "peers" / "node", BENCH / "loadgen"):
        marker = pkg / "node_modules" / ".package-lock.json"
        if not marker.exists() or marker.stat().st_mtime < (pkg / "package-lock.json").stat().st_mtime:
            run(["npm", "ci", "--no-audit", "--no-fund"], cwd=pkg)
    # 10,000 held connections need 10,000+ descriptors in the server and the load generator.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    log(f"open files limit: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ servers
def server_cmd(name: str, port: int, scratch: Path, redis_url: str | None = None) -> list[str]:
    py = str(VENV / "bin" / "python")
    if name == "rtserver":
        config = BENCH / "apps" / "rtserver.toml"
        if redis_url:
            clustered = scratch / "rtserver-cluster.toml"
            clustered.write_text(config.read_text() + f'\n[cluster]\nredis_url = "{redis_url}"\n')
            config = clustered
        return [str(RT_PYTHON), "-m", "rtserver", "serve", "--config", str(config),
                "--app", "rtserver_app:app", "--port", str(port)]
    if name == "socket.io (node)":
        return ["node", str(BENCH / "peers" / "node" / "server.js"), str(port), SECRET, *([redis_url] if redis_url else [])]
    if name == "python-socketio (aiohttp)":
        return [py, str(BENCH / "peers" / "python" / "sio_app.py"), "aiohttp", str(port), SECRET]
    if name == "python-socketio (uvicorn)":
        return [py, str(BENCH / "peers" / "python" / "sio_app.py"), "uvicorn", str(port), SECRET]
    raise ValueError(name)


SERVERS = ["rtserver", "socket.io (node)", "python-socketio (aiohttp)", "python-socketio (uvicorn)"]
if os.environ.get("BENCH_SERVERS"):
    SERVERS = [s for s in SERVERS if s.split(" ")[0] in os.environ["BENCH_SERVERS"].split(",")]


class Server:
    def __init__(self, name: str, profile_to: Path | None = None, redis_url: str | None = None,
                 cores: str = SERVER_CORE, args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.port = free_port()
        self.scratch = Path(tempfile.mkdtemp(prefix="rtbench-"))
        env = dict(os.environ, PYTHONPATH=str(BENCH / "apps"), PYTHONUNBUFFERED="1")
        cmd = ["taskset", "-c", cores, *server_cmd(name, self.port, self.scratch, redis_url), *args]
        notify = None
        if "--workers" in args:
            # Ready when the supervisor says so (it listens before its workers do).
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(str(self.scratch / "notify.sock"))
            notify.settimeout(0.1)
            env["NOTIFY_SOCKET"] = str(self.scratch / "notify.sock")
        if profile_to is not None:
            # py-spy on the load generator's core, sampling the server on core 0.
            cmd = ["taskset", "-c", LOADGEN_CORE, str(VENV / "bin" / "py-spy"), "record", "--format", "raw",
                   "--rate", "200", "--nonblocking", "-o", str(profile_to), "--", *cmd]
        self.log = open(self.scratch / "server.log", "w+")
        self.proc = subprocess.Popen(cmd, cwd=self.scratch, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.workers: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.tail()}")
            try:
                if notify is not None:
                    if b"READY=1" not in notify.recv(4096):
                        continue
                else:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{name} did not listen within 30 s: {self.tail()}")
        if notify is not None:
            notify.close()
            self.workers = self._children(self.pid)
        if profile_to is not None:
            self.pid = self._leaf_pid(self.pid)
        time.sleep(0.3)

    @staticmethod
    def _children(pid: int) -> list[int]:
        """A supervisor's workers (listed under the thread that started each)."""
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        return found

    @staticmethod
    def _leaf_pid(pid: int) -> int:
        """The profiled python under py-spy (taskset execs, so it is py-spy's child)."""
        for _ in range(50):
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.1)
        return pid

    @property
    def ports(self) -> list[int]:
        return [self.port]

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.workers]

    def tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class Redis:
    """A redis-server of the benchmark's own (no persistence), beside the load generator."""

    def __init__(self, cores: str = LOADGEN_CORE) -> None:
        self.port = free_port()
        self.scratch = Path(tempfile.mkdtemp(prefix="rtbench-redis-"))
        self.proc = subprocess.Popen(
            ["taskset", "-c", cores, "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.scratch)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not listen within 10 s")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.scratch, ignore_errors=True)


class Cluster:
    """``nodes`` servers of one kind on one redis-server."""

    def __init__(self, name: str, nodes: int) -> None:
        self.name = name
        self.redis = Redis()
        self.nodes: list[Server] = []
        try:
            for _ in range(nodes):
                self.nodes.append(Server(name, redis_url=self.redis.url))
        except RuntimeError:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()


def start(name: str, scenario: str) -> Server | Cluster:
    nodes = SCENARIOS[scenario].get("nodes", 1)
    return Cluster(name, nodes) if nodes > 1 else Server(name)


def runs_on(name: str, scenario: str) -> bool:
    return SCENARIOS[scenario].get("nodes", 1) == 1 or name in CLUSTER_SERVERS


def loadgen(server: Server | Cluster, options: dict, cores: str = LOADGEN_CORE) -> dict:
    opts = dict(options, port=server.ports[0], pid=server.pids[0], ports=server.ports, pids=server.pids, secret=SECRET,
                clk_tck=os.sysconf("SC_CLK_TCK"), timeout=120, idle_timeout=15)
    budget = 300
    cmd = ["taskset", "-c", cores, "node", str(BENCH / "loadgen" / "loadgen.js"), json.dumps(opts)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"error": f"load generator exceeded {budget} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"load generator exit {out.returncode}: {out.stderr[-1000:]}"}
    return json.loads(lines[-1])


# ------------------------------------------------------------------ figures
# (figure key, label, unit, extractor, better) -- better: "high" or "low".
def _lat(key: str):
    return lambda r: (r.get("latency_ms") or {}).get(key)


FIGURES: dict[str, list[tuple[str, str, callable, str]]] = {
    "connect": [
        ("handshakes/s (2,000 clients, JWT verified)", "/s", lambda r: r.get("handshakes_per_s"), "high"),
        ("server CPU per handshake", "µs", lambda r: r.get("server_cpu_per_handshake_us"), "low"),
        ("failed handshakes", "", lambda r: r.get("failed"), "low"),
    ],
    "fanout": [
        ("delivered messages/s", "/s", lambda r: r.get("msgs_per_s"), "high"),
        ("latency p50", "ms", _lat("p50"), "low"),
        ("latency p99", "ms", _lat("p99"), "low"),
        ("latency max", "ms", _lat("max"), "low"),
        ("lost messages", "", lambda r: r.get("lost"), "low"),
        ("server CPU per delivered message", "µs", lambda r: r.get("server_cpu_us_per_msg"), "low"),
        ("load generator CPU share", "", lambda r: r.get("loadgen_cpu_share"), "low"),
    ],
    "memory": [
        ("RSS growth per idle connection", "KiB", lambda r: (r.get("bytes_per_connection") or 0) / 1024, "low"),
        ("connections held / dropped", "", lambda r: f"{r.get('connected')}/{r.get('dropped')}", "none"),
        ("heartbeats answered per client", "", lambda r: r.get("pings_per_client"), "none"),
    ],
}


# Long-polling also says how many messages each answered GET carried (the
# fewer requests per message, the less a server spends on HTTP).
FIGURES["polling"] = [*FIGURES["fanout"],
                      ("messages per answered poll", "", lambda r: r.get("messages_per_poll"), "none")]


def figures_for(scenario: str):
    kind = SCENARIOS[scenario]["scenario"]
    return FIGURES["fanout" if kind in ("fanout", "slow") else kind]


def median(values: list) -> object:
    nums = [v for v in values if isinstance(v, (int, float))]
    if not nums:
        return values[0] if values else None
    return statistics.median(nums)


def fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if unit == "/s" or abs(value) >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, int) or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def machine() -> dict:
    def cmd(*c: str) -> str:
        try:
            return subprocess.run(c, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    versions = {
        "python": platform.python_version(),
        "node": cmd("node", "--version"),
        "rtserver": cmd(str(RT_PYTHON), "-c", "import rtserver.version as v; print(v.__version__)") or "?",
        "trio": cmd(str(RT_PYTHON), "-c", "import trio; print(trio.__version__)"),
        "coredis": cmd(str(RT_PYTHON), "-c", "import coredis; print(coredis.__version__)"),
        "redis-server": cmd("redis-server", "--version").split(" v=")[-1].split(" ")[0],
    }
    pkgs = json.loads(cmd(str(VENV / "bin" / "pip"), "list", "--format", "json") or "[]")
    for p in pkgs:
        if p["name"].lower() in ("python-socketio", "python-engineio", "aiohttp", "uvicorn", "uvloop", "websockets"):
            versions[p["name"].lower()] = p["version"]
    for pkg, where in (("socket.io", "peers/node"), ("engine.io", "peers/node"), ("@socket.io/redis-adapter", "peers/node"),
                       ("ws", "loadgen")):
        try:
            versions[f"{pkg} (npm)"] = json.loads((BENCH / where / "node_modules" / pkg / "package.json").read_text())["version"]
        except OSError:
            pass
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(int(mem) / 1024 / 1024, 1),
            "kernel": platform.release(), "os": cmd("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
            "versions": versions, "loadavg_start": os.getloadavg()}


# ----------------------------------------------------------------- profile
def profile() -> dict:
    """py-spy (raw collapsed stacks) on rtserver under the 1,000-subscriber fan-out."""
    out = BENCH / "results" / "profile-rtserver-fanout.txt"
    raw = Path(tempfile.mkdtemp(prefix="rtbench-prof-")) / "stacks.txt"
    server = Server("rtserver")
    try:
        # Attached after start-up (imports stay out of the profile), on the load generator's core.
        spy = subprocess.Popen(["taskset", "-c", LOADGEN_CORE, str(VENV / "bin" / "py-spy"), "record", "--pid",
                                str(server.pid), "--format", "raw", "--rate", "250", "--nonblocking", "-o", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.5)
        # Three times the messages of the scenario, for more samples.
        opts = SCENARIOS["fanout_1000x200"]
        result = loadgen(server, dict(opts, messages=opts["messages"] * (1 if QUICK else 3)))
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)
    finally:
        server.stop()
    if not raw.exists():
        return {"error": "py-spy wrote no profile (ptrace not permitted?)", "run": result}
    self_time: dict[str, int] = {}
    total_time: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [f for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in frames]  # per function, not per line
        leaf = frames[-1]
        self_time[leaf] = self_time.get(leaf, 0) + n
        for f in set(frames):
            total_time[f] = total_time.get(f, 0) + n

    def top(d: dict[str, int], k: int = 25) -> list[tuple[str, float]]:
        return [(f, round(100 * c / samples, 1)) for f, c in sorted(d.items(), key=lambda x: -x[1])[:k]]

    report = {"samples": samples, "self": top(self_time), "inclusive": top(total_time, 40),
              "run": {k: result.get(k) for k in ("msgs_per_s", "lost", "server_cpu_us_per_msg", "error")}}
    lines = [f"py-spy record (raw, 250 Hz, attached after start-up) of rtserver under fanout_1000x200; {samples} samples; "
             f"run under the profiler: {report['run']}", "", "## self time (% of samples)"]
    lines += [f"{pct:5.1f}%  {f}" for f, pct in report["self"]]
    lines += ["", "## inclusive time (% of samples)"]
    lines += [f"{pct:5.1f}%  {f}" for f, pct in report["inclusive"]]
    out.write_text("\n".join(lines) + "\n")
    shutil.rmtree(raw.parent, ignore_errors=True)
    return report


# ----------------------------------------------------------------- workers
#: `serve --workers 2` against one process, every process free to use both
#: cores (the load generator and redis-server too): what one command gives on
#: this machine.  "[cluster]" is one process with Redis on, to tell the cost
#: of the cluster from the cost of a second process.
WORKER_SETUPS = {"1 process": (1, False), "1 process, [cluster]": (1, True), "--workers 2": (2, True)}
WORKER_SCENARIOS = ("connect", "fanout_1000x200", "memory")
BOTH_CORES = f"{SERVER_CORE},{LOADGEN_CORE}"


def start_setup(workers: int, clustered: bool) -> tuple[Server, Redis | None]:
    redis = Redis(BOTH_CORES) if clustered else None
    try:
        args = ("--workers", str(workers)) if workers > 1 else ()
        return Server("rtserver", redis_url=redis.url if redis else None, cores=BOTH_CORES, args=args), redis
    except RuntimeError:
        if redis is not None:
            redis.stop()
        raise


def compare_workers() -> None:
    """Run WORKER_SCENARIOS on each of WORKER_SETUPS; write bench/results/workers.md and .json."""
    started = time.monotonic()
    info = machine()
    raw: dict[str, dict[str, list[dict]]] = {s: {name: [] for name in WORKER_SETUPS} for s in WORKER_SCENARIOS}
    for r in range(RUNS):
        for scenario in WORKER_SCENARIOS:
            for name, (workers, clustered) in WORKER_SETUPS.items():
                try:
                    server, redis = start_setup(workers, clustered)
                except RuntimeError as exc:
                    raw[scenario][name].append({"error": str(exc)})
                    continue
                try:
                    result = loadgen(server, SCENARIOS[scenario], cores=BOTH_CORES)
                finally:
                    server.stop()
                    if redis is not None:
                        redis.stop()
                raw[scenario][name].append(result)
                log(f"workers run {r + 1}/{RUNS} {scenario:16} {name:22} "
                    + json.dumps({k: result.get(k) for k in ("error", "handshakes_per_s", "msgs_per_s", "lost",
                                                            "server_cpu_us_per_msg", "connected", "dropped") if k in result}))
    info["loadavg_end"] = os.getloadavg()
    info["duration_s"] = round(time.monotonic() - started)
    names = list(WORKER_SETUPS)
    md = ["# `serve --workers 2` against one process", "",
          f"Generated by `make bench` ({'BENCH_QUICK=1, ' if QUICK else ''}{RUNS} run{'s' if RUNS > 1 else ''}, median per "
          f"figure; {info['duration_s']} s). rtserver only, loopback, nothing pinned: the server's processes, "
          "redis-server and the one load generator share the machine's cores (the load generator's own CPU share is in "
          "the table). The machine is shared with other work and loaded (load average below): compare the ratios of "
          "one run, not rates across runs.", "",
          f"- {info['nproc']} cores: {info['cpu']}; kernel {info['kernel']}; "
          f"load average at start {tuple(round(x, 2) for x in info['loadavg_start'])}, "
          f"at end {tuple(round(x, 2) for x in info['loadavg_end'])}",
          "- `1 process`: no cluster; `1 process, [cluster]`: one node with Redis on; `--workers 2`: a supervisor and two "
          "workers on one port, each a node of the cluster (broadcasts cross Redis to the other worker). Server CPU "
          "and RSS are summed over the supervisor and its workers.", ""]
    figures = {
        "connect": [("handshakes/s", "/s", lambda r: r.get("handshakes_per_s"), "high"),
                    ("server CPU per handshake", "µs", lambda r: r.get("server_cpu_per_handshake_us"), "low"),
                    ("failed handshakes", "", lambda r: r.get("failed"), "none")],
        "fanout_1000x200": [("fan-out delivered/s", "/s", lambda r: r.get("msgs_per_s"), "high"),
                            ("server CPU per delivered message", "µs", lambda r: r.get("server_cpu_us_per_msg"), "low"),
                            ("latency p50", "ms", _lat("p50"), "low"), ("latency p99", "ms", _lat("p99"), "low"),
                            ("lost messages", "", lambda r: r.get("lost"), "none"),
                            ("load generator CPU share", "", lambda r: r.get("loadgen_cpu_share"), "none")],
        "memory": [("idle connections held", "", lambda r: r.get("connected"), "high"),
                   ("dropped", "", lambda r: r.get("dropped"), "none"),
                   ("RSS growth per idle connection", "KiB", lambda r: (r.get("bytes_per_connection") or 0) / 1024, "low")],
    }
    medians: dict[str, dict[str, dict[str, object]]] = {}
    for scenario in WORKER_SCENARIOS:
        opts = SCENARIOS[scenario]
        md += [f"## {scenario}", "", "`" + ", ".join(f"{k}={v}" for k, v in opts.items()) + "`", "",
               "| figure | " + " | ".join(names) + " | --workers 2 / 1 process | [cluster] / 1 process |",
               "|---|---|---|---|---|---|"]
        medians[scenario] = {}
        for label, unit, extract, better in figures[scenario]:
            row = {name: median([extract(x) for x in raw[scenario][name] if "error" not in x]) if any(
                "error" not in x for x in raw[scenario][name]) else None for name in names}
            medians[scenario][label] = row

            def ratio(a: object, b: object) -> str:
                ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b and better != "none"
                return f"{a / b:.2f}×" if ok else ""

            md.append(f"| {label}{' (' + unit + ')' if unit and unit != '/s' else ''} | "
                      + " | ".join(fmt(row[n], unit) for n in names)
                      + f" | {ratio(row['--workers 2'], row['1 process'])} | {ratio(row['1 process, [cluster]'], row['1 process'])} |")
        errors = [f"{n} run {i + 1}: {x['error'][:300]}" for n in names for i, x in enumerate(raw[scenario][n]) if "error" in x]
        md += [""] + [f"- error: {e}" for e in errors] + ([""] if errors else [])
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    stem = "workers-quick" if QUICK else "workers"
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"machine": info, "runs": RUNS, "setups": WORKER_SETUPS,
                                                 "medians": medians, "raw": raw}, indent=1, default=str) + "\n")
    print("\n".join(md))
    log(f"wrote {out / (stem + '.md')}")


# -------------------------------------------------------------------- main
def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"bench: stopped by signal {signum}")  # unwinds: every server is stopped


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    started = time.monotonic()
    setup()
    scenarios = list(SCENARIOS)
    workers = "rtserver" in SERVERS
    if os.environ.get("BENCH_SCENARIOS"):
        chosen = os.environ["BENCH_SCENARIOS"].split(",")
        scenarios = [s for s in scenarios if s in chosen]
        workers = workers and "workers" in chosen
    if (workers or any(SCENARIOS[s].get("nodes", 1) > 1 for s in scenarios)) and not shutil.which("redis-server"):
        sys.exit("bench: redis-server is required for the cluster and workers scenarios (apt-get install redis-server)")
    info = machine()
    log(f"machine: {info['nproc']} cores, {info['cpu']}, kernel {info['kernel']}; runs={RUNS} quick={QUICK}")
    raw: dict[str, dict[str, list[dict]]] = {s: {name: [] for name in SERVERS} for s in scenarios}
    for r in range(RUNS):
        for scenario in scenarios:
            for name in SERVERS:  # interleaved: each run sees every server under the same conditions
                if not runs_on(name, scenario):
                    continue
                t0 = time.monotonic()
                try:
                    server = start(name, scenario)
                except RuntimeError as exc:
                    raw[scenario][name].append({"error": str(exc)})
                    log(f"run {r + 1} {scenario} {name}: {exc}")
                    continue
                try:
                    result = loadgen(server, SCENARIOS[scenario])
                finally:
                    server.stop()
                raw[scenario][name].append(result)
                brief = {k: result.get(k) for k in ("error", "handshakes_per_s", "msgs_per_s", "lost", "latency_ms",
                                                    "bytes_per_connection", "dropped", "loadgen_cpu_share") if k in result}
                log(f"run {r + 1}/{RUNS} {scenario:16} {name:26} {time.monotonic() - t0:5.1f}s {json.dumps(brief)}")
        if r + 1 < RUNS:  # partial results survive an interrupted run
            info["loadavg_end"] = os.getloadavg()
            info["duration_s"] = round(time.monotonic() - started)
            write_results(info, scenarios, raw, None, runs_done=r + 1)
    if workers:
        compare_workers()
    prof = None
    if os.environ.get("BENCH_PROFILE", "1") != "0" and "rtserver" in SERVERS and scenarios:
        log("profiling rtserver under fanout_1000x200 with py-spy")
        try:
            prof = profile()
        except Exception as exc:  # the profile is a bonus: report, never fail the benchmark
            prof = {"error": repr(exc)}
    info["loadavg_end"] = os.getloadavg()
    info["duration_s"] = round(time.monotonic() - started)
    if scenarios:
        write_results(info, scenarios, raw, prof)


def write_results(info: dict, scenarios: list[str], raw: dict, prof: dict | None, runs_done: int = RUNS) -> None:
    peers = [s for s in SERVERS if s != "rtserver"]
    table: dict[str, dict[str, dict[str, object]]] = {}
    md = ["# rtserver benchmarks", "",
          f"Generated by `make bench` ({'BENCH_QUICK=1, ' if QUICK else ''}{runs_done} of {RUNS} run{'s' if RUNS > 1 else ''}, "
          f"median per figure; {info['duration_s']} s in all).", "",
          "Same machine, same run, loopback only: each server pinned to core 0, the one load generator "
          "(bench/loadgen, Node + ws, raw Engine.IO/Socket.IO frames) to core 1; a fresh server process per "
          "scenario and run, servers interleaved within each run. Ratio = rtserver / peer "
          "(for /s figures higher is better for rtserver, for latency, CPU and memory lower is better).", "",
          "## Machine", "",
          f"- {info['nproc']} cores: {info['cpu']}; {info['mem_gib']} GiB; kernel {info['kernel']}; {info['os']}",
          "- " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
          f"- load average at start {tuple(round(x, 2) for x in info['loadavg_start'])}, "
          f"at end {tuple(round(x, 2) for x in info['loadavg_end'])}", ""]
    for scenario in scenarios:
        opts = SCENARIOS[scenario]
        table[scenario] = {}
        desc = ", ".join(f"{k}={v}" for k, v in opts.items() if k != "scenario")
        md += [f"## {scenario}", "", f"`{opts['scenario']}`: {desc}", ""]
        if opts.get("nodes", 1) > 1:
            md += [f"{opts['nodes']} nodes of each server on core 0 ({' and '.join(CLUSTER_SERVERS)} only), one "
                   "redis-server beside the load generator on core 1; subscribers spread over the nodes, publishes on "
                   "the first; server CPU summed over the nodes.", ""]
        head = "| figure | " + " | ".join(SERVERS) + " | " + " | ".join(f"rtserver / {p}" for p in peers) + " |"
        md += [head, "|" + "---|" * (1 + len(SERVERS) + len(peers))]
        for label, unit, extract, better in figures_for(scenario):
            row: dict[str, object] = {}
            for name in SERVERS:
                values = [extract(res) for res in raw[scenario][name] if "error" not in res]
                row[name] = median(values) if values else None
            table[scenario][label] = row
            ratios = []
            for p in peers:
                a, b = row.get("rtserver"), row.get(p)
                ratios.append(f"{a / b:.2f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
                              and better != "none" and label not in ("lost messages", "failed handshakes") else "")
            cells = [fmt(row[name], unit) for name in SERVERS]
            md.append(f"| {label}{' (' + unit + ')' if unit and unit != '/s' else ''} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        errors = [f"{name} run {i + 1}: {res['error'][:300]}" for name in SERVERS
                  for i, res in enumerate(raw[scenario][name]) if "error" in res]
        notes = []
        for name in SERVERS:
            for i, res in enumerate(raw[scenario][name]):
                if res.get("timed_out") or res.get("subscribers_dropped") or res.get("duplicates"):
                    notes.append(f"{name} run {i + 1}: timed_out={res.get('timed_out')} dropped={res.get('subscribers_dropped')} duplicates={res.get('duplicates')}")
                if opts["scenario"] == "slow":
                    notes.append(f"{name} run {i + 1}: stalled client closed by the server: {res.get('stalled_client_closed')}")
        md += [""] + [f"- error: {e}" for e in errors] + [f"- {n}" for n in notes] + ([""] if errors or notes else [])
    if "slow_1000x200" in table and "fanout_1000x200" in table:
        md += ["## Slow consumer vs. baseline", "",
               "The 999 others with one stalled client (slow_1000x200) relative to no stalled client (fanout_1000x200); "
               "1.00 = did not move.", "", "| server | msgs/s | p50 | p99 |", "|---|---|---|---|"]
        for name in SERVERS:
            s, b = table["slow_1000x200"], table["fanout_1000x200"]
            def rel(label: str) -> str:
                x, y = s[label].get(name), b[label].get(name)
                return f"{x / y:.2f}" if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y else "—"
            md.append(f"| {name} | {rel('delivered messages/s')} | {rel('latency p50')} | {rel('latency p99')} |")
        md.append("")
    if prof:
        md += ["## rtserver profile (py-spy, fanout_1000x200)", ""]
        if "error" in prof:
            md.append(f"profile failed: {prof['error']}")
        else:
            md += [f"{prof['samples']} samples; full list in bench/results/profile-rtserver-fanout.txt. Self time:", "",
                   "| % samples | function |", "|---|---|"]
            md += [f"| {pct} | `{f}` |" for f, pct in prof["self"][:15]]
        md.append("")
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    # A smoke run, or a run of some scenarios only, never overwrites the full results.
    stem = "quick" if QUICK else "+".join(scenarios) if os.environ.get("BENCH_SCENARIOS") else "latest"
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"machine": info, "quick": QUICK, "runs": RUNS, "runs_done": runs_done, "scenarios": SCENARIOS,
                                                 "servers": SERVERS, "medians": table, "raw": raw, "profile": prof},
                                                indent=1, default=str) + "\n")
    print("\n".join(md))
    log(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}")


if __name__ == "__main__":
    main()
