"""`make soak`: an hour of realistic traffic against one rtserver, sampled every 10 s.

The server is `rtserver serve` with the shipped config.toml (every seed
feature, recovery on; a test secret and API key; data in a fresh temporary
directory).  bench/soak.js drives it with stock socket.io-clients and HTTP
calls at a steady rate (residents that stay and drop and recover, churning
clients on every transport, publishes, presence, revocations, signage layout
pushes).  Every 10 s this samples the server's RSS and open descriptors
(/proc), its trio task count and connections (/api/v1/status), the store's
size on disk, the event loop's lag (the /metrics histogram over those 10 s:
p50 and p99 as bucket bounds) and how long /healthz takes.  After the traffic
stops it waits for the last connections to end and samples again.

Writes bench/results/soak.csv, soak.png and soak.md (the figures: memory
growth per hour after warm-up, descriptors and tasks before and after, loop
lag p99).  SOAK_SECONDS (default 3600) sets the traffic's length; the first
fifth (at most 10 minutes) is warm-up.  Needs `make test-deps` (the clients'
node_modules) and bench/.venv (matplotlib; `make soak` makes both).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
RT_PYTHON = ROOT / ".venv" / "bin" / "python"
SECRET = "rtserver-soak-secret-0123456789abcdef"
API_KEY = "rtserver-soak-api-key"
SECONDS = int(os.environ.get("SOAK_SECONDS", "3600"))
INTERVAL = 10.0
WARMUP = min(600.0, SECONDS / 5)
FIELDS = ["t", "phase", "rss_mib", "fds", "tasks", "connections", "store_kib", "lag_p50_ms", "lag_p99_ms", "lag_max_ms",
          "healthz_ms", "messages_out"]


def toml_value(value: object) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them read the same in TOML


def config_text(data_dir: Path) -> str:
    """The shipped config.toml with the soak's server, auth and data settings."""
    text = (ROOT / "config.toml").read_text()
    overrides = {
        "port": 0, "data_dir": str(data_dir), "log_level": "warning",
        "secret": SECRET, "api_keys": [API_KEY],
    }
    for key, value in overrides.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {toml_value(value)}", text, count=1)
        assert count == 1, key
    tomllib.loads(text)  # still valid
    return text


def get(port: int, path: str, timeout: float = 30) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": API_KEY})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def lag_buckets(metrics: str) -> dict[float, float]:
    """Cumulative counts of rtserver_event_loop_lag_seconds by upper bound."""
    found = {}
    for match in re.finditer(r'rtserver_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', metrics):
        found[float(match.group(1))] = float(match.group(2))
    return found


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of what was observed in between."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            return bound
    return bounds[-1]


def counter(metrics: str, name: str) -> float:
    match = re.search(rf"(?m)^{name} (\S+)$", metrics)
    return float(match.group(1)) if match else 0.0


class Sampler:
    def __init__(self, pid: int, port: int, data_dir: Path) -> None:
        self.pid = pid
        self.port = port
        self.data_dir = data_dir
        self.started = time.monotonic()
        self.rows: list[dict[str, object]] = []
        #: The lag histogram's cumulative buckets at each sample.
        self.lags: list[dict[float, float]] = []
        self._lag: dict[float, float] = {}
        self.missed = 0

    def sample_or_miss(self, phase: str) -> dict[str, object] | None:
        """A sample, or None when the server did not answer in time (counted:
        a busy machine must not end an hour's run)."""
        try:
            return self.sample(phase)
        except OSError as exc:
            self.missed += 1
            print(json.dumps({"missed": str(exc), "phase": phase}), flush=True)
            return None

    def sample(self, phase: str) -> dict[str, object]:
        metrics = get(self.port, "/metrics").decode()
        lag = lag_buckets(metrics)
        p50, p99, top = (quantile(self._lag, lag, q) for q in (0.5, 0.99, 1.0))
        self._lag = lag
        status = json.loads(get(self.port, "/api/v1/status"))
        began = time.monotonic()
        get(self.port, "/healthz")
        healthz = time.monotonic() - began
        with open(f"/proc/{self.pid}/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        store = sum(p.stat().st_size for p in self.data_dir.glob("rtserver.db*"))
        row = {
            "t": round(time.monotonic() - self.started, 1), "phase": phase, "rss_mib": round(rss / 2**20, 2),
            "fds": len(os.listdir(f"/proc/{self.pid}/fd")), "tasks": status["tasks"],
            "connections": status["connections"]["total"], "store_kib": round(store / 1024, 1),
            "lag_p50_ms": None if p50 is None else p50 * 1000, "lag_p99_ms": None if p99 is None else p99 * 1000,
            "lag_max_ms": None if top is None else top * 1000, "healthz_ms": round(healthz * 1000, 2),
            "messages_out": counter(metrics, "rtserver_messages_sent_total"),
        }
        self.rows.append(row)
        self.lags.append(lag)
        print(json.dumps(row), flush=True)
        return row


def slope_per_hour(rows: list[dict[str, object]], field: str) -> float:
    """Least-squares slope of ``field`` over time, per hour."""
    xs = [float(r["t"]) for r in rows]
    ys = [float(r[field]) for r in rows]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var * 3600


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("rss_mib", "RSS (MiB)"), ("fds", "open descriptors"), ("tasks", "trio tasks"),
              ("connections", "connections"), ("store_kib", "store (KiB)"), ("lag_p99_ms", "loop lag p99 (ms, bucket)")]
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), sharex=True)
    minutes = [float(r["t"]) / 60 for r in rows]
    for axis, (field, label) in zip(axes, panels, strict=True):
        values = [r[field] if r[field] is not None else float("nan") for r in rows]
        axis.plot(minutes, values, linewidth=1)
        axis.set_ylabel(label, fontsize=8)
        axis.grid(alpha=0.3)
        for phase_change in [r for i, r in enumerate(rows) if i and r["phase"] != rows[i - 1]["phase"]]:
            axis.axvline(float(phase_change["t"]) / 60, color="grey", linestyle="--", linewidth=0.8)
    axes[-1].set_xlabel("minutes (dashed: end of warm-up, end of traffic)")
    figure.suptitle(f"rtserver soak, {SECONDS / 60:.0f} min of traffic", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    if not RT_PYTHON.exists():
        sys.exit("soak: run `make soak` (it creates .venv first)")
    node_modules = ROOT / "tests" / "clients" / "node_modules"
    if not node_modules.exists():
        sys.exit("soak: run `make test-deps` first (the stock socket.io-client)")
    RESULTS.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="rtserver-soak-"))
    data_dir = scratch / "data"
    config = scratch / "config.toml"
    config.write_text(config_text(data_dir))
    log = open(scratch / "server.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    server = subprocess.Popen([str(RT_PYTHON), "-m", "rtserver", "serve", "--config", str(config), "--host", "127.0.0.1"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=scratch)
    traffic = None
    try:
        port = 0
        deadline = time.monotonic() + 30
        while not port:
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"soak: the server did not start: {(scratch / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
            port = listening_port(server.pid)
        sampler = Sampler(server.pid, port, data_dir)
        baseline = sampler.sample("baseline")
        traffic = subprocess.Popen(
            ["node", str(BENCH / "soak.js"), json.dumps({
                "url": f"http://127.0.0.1:{port}", "secret": SECRET, "apiKey": API_KEY, "seconds": SECONDS,
            })],
            env={**os.environ, "NODE_PATH": str(node_modules)}, stdout=open(scratch / "traffic.log", "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        began = time.monotonic()
        after = baseline
        while traffic.poll() is None:
            time.sleep(INTERVAL - (time.monotonic() - began) % INTERVAL)
            if server.poll() is not None:
                sys.exit(f"soak: the server died: {(scratch / 'server.log').read_text()[-3000:]}")
            sampler.sample_or_miss("warm-up" if time.monotonic() - began < WARMUP else "steady")
        # Clients gone: connections end at once, polling ones at the ping timeout.
        for _ in range(9):
            time.sleep(INTERVAL)
            after = sampler.sample_or_miss("after") or after
        report(sampler, baseline, after, scratch)
    finally:
        if traffic is not None and traffic.poll() is None:
            traffic.kill()
        server.terminate()
        server.wait(timeout=30)
        log.close()
    shutil.rmtree(scratch, ignore_errors=True)


def listening_port(pid: int) -> int:
    """The port the server listens on (from /proc/net/tcp and its socket inodes)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                return int(fields[1].split(":")[1], 16)
    return 0


def report(sampler: Sampler, baseline: dict[str, object], after: dict[str, object], scratch: Path) -> None:
    rows = sampler.rows
    with open(RESULTS / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, RESULTS / "soak.png")
    steady = [r for r in rows if r["phase"] == "steady"]
    indexes = [i for i, r in enumerate(rows) if r["phase"] == "steady"]
    overall = quantile(sampler.lags[indexes[0] - 1], sampler.lags[indexes[-1]], 0.99) if indexes else None
    lags = sorted(float(r["lag_p99_ms"]) for r in steady if r["lag_p99_ms"] is not None)
    growth = slope_per_hour(steady, "rss_mib") if len(steady) > 2 else float("nan")
    mean_rss = sum(float(r["rss_mib"]) for r in steady) / max(1, len(steady))
    traffic = (scratch / "traffic.log").read_text().strip().splitlines()
    last = json.loads(traffic[-1]) if traffic else {}
    lines = [
        f"# Soak: {SECONDS / 60:.0f} min of traffic, sampled every {INTERVAL:.0f} s",
        "",
        f"Warm-up {WARMUP / 60:.0f} min; steady {len(steady)} samples ({sampler.missed} missed: no answer within "
        f"30 s).  Traffic (bench/soak.js): {json.dumps(last)}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| RSS after warm-up (mean) | {mean_rss:.1f} MiB |",
        f"| RSS growth after warm-up | {growth:+.2f} MiB/h ({growth / mean_rss * 100:+.2f} %/h) |",
        f"| open descriptors: before traffic / after clients left | {baseline['fds']} / {after['fds']} |",
        f"| trio tasks: before traffic / after clients left | {baseline['tasks']} / {after['tasks']} |",
        f"| connections: before / after | {baseline['connections']} / {after['connections']} |",
        f"| loop lag p99 over the steady phase (bucket bound) | {overall * 1000 if overall else 'n/a'} ms |",
        f"| loop lag p99 per 10 s window (bucket bound): median / worst | "
        f"{lags[len(lags) // 2] if lags else 'n/a'} ms / {lags[-1] if lags else 'n/a'} ms |",
        f"| store on disk: end of traffic | {steady[-1]['store_kib'] if steady else 'n/a'} KiB |",
    ]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
