"""``rtserver check-config`` and ``rtserver serve`` exit codes and messages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from rtserver import App, cli, logs
from rtserver.config import Config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RTSERVER_HOST", "RTSERVER_PORT", "RTSERVER_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[Config, App | None, tuple[str, str]]]:
    """Stands in for the real server: records what `serve` would have run.

    The start-up checks still run, on a data directory of the test's own, and
    the process-wide GC tuning is left out of the test process."""
    monkeypatch.setenv("RTSERVER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli, "tune_gc", lambda: None)
    calls: list[tuple[Config, App | None, tuple[str, str]]] = []
    log_setup: list[tuple[str, str]] = []

    async def fake_serve(config: Config, app: App | None = None, reload_config=None, worker=None) -> None:
        # SIGHUP reads the same file with the same overrides; one process, no supervisor.
        assert reload_config is not None and reload_config() == config
        assert worker is None
        calls.append((config, app, log_setup[-1]))

    monkeypatch.setattr(cli, "serve_until_signal", fake_serve)
    monkeypatch.setattr(logs, "setup", lambda level, fmt: log_setup.append((level, fmt)))
    return calls


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_lines(err: str) -> list[str]:
    lines = err.splitlines()
    assert lines
    assert all(line.startswith("config error: ") for line in lines), err
    return [line.removeprefix("config error: ") for line in lines]


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[server]\nport = 8080\n[engineio]\npaths = ["/socket.io/"]\n')
    assert cli.main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("ok")
    assert str(path) in out
    assert err == ""


def test_check_config_cluster_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://user:secret@redis.example:6380", "unix:///run/redis/redis.sock"):
        assert cli.main(["check-config", str(write(tmp_path, f'[cluster]\nredis_url = "{url}"\n'))]) == 0, url
    assert capsys.readouterr().err == ""


def test_check_config_empty_file_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(write(tmp_path, ""))]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\nport = 70000", "server.port"),
        ('[server]\nport = "80"', "server.port"),
        ("[server]\nbogus = 1", "server"),
        ('[server]\nlog_level = "loud"', "server.log_level"),
        ('[engineio]\ncors_origins = "*"', "engineio.cors_origins"),
        ('[cluster]\nredis_url = "http://127.0.0.1:6379"', "cluster.redis_url"),
        ('[cluster]\nredis_url = "redis://"', "cluster.redis_url"),
        ('[cluster]\nredis_url = "redis://host:99999"', "cluster.redis_url"),
        ('[cluster]\nredis_url = "unix://"', "cluster.redis_url"),
        ('[cluster]\nnode_id = "emitter"', "cluster.node_id"),
        ('[cluster]\nnode_id = "a#b"', "cluster.node_id"),
        ('[cluster]\nprefix = ""', "cluster.prefix"),
        ("[cluster]\nrequest_timeout = 0", "cluster.request_timeout"),
    ],
)
def test_check_config_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str) -> None:
    assert cli.main(["check-config", str(write(tmp_path, toml))]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [problem] = error_lines(err)
    assert problem.startswith(f"{key}: ")


def test_check_config_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[server]\nport = "x"\nhost = 5\n[socketio]\nnamespaces = ["x"]\n[http]\nread_timeout = 0')
    assert cli.main(["check-config", str(path)]) == 2
    keys = sorted(p.split(":")[0] for p in error_lines(capsys.readouterr().err))
    assert keys == ["http.read_timeout", "server.host", "server.port", "socketio.namespaces"]


def test_check_config_invalid_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[server\n")
    assert cli.main(["check-config", str(path)]) == 2
    [problem] = error_lines(capsys.readouterr().err)
    assert problem.startswith(f"{path}: invalid TOML")


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.toml"
    assert cli.main(["check-config", str(path)]) == 2
    [problem] = error_lines(capsys.readouterr().err)
    assert problem.startswith(f"{path}: cannot read")


def test_check_config_bad_env_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTSERVER_PORT", "http")
    assert cli.main(["check-config", str(write(tmp_path, ""))]) == 2
    [problem] = error_lines(capsys.readouterr().err)
    assert problem.startswith("server.port: ")


def test_check_config_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["check-config"])
    assert info.value.code == 2


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "70000"],
        ["--port", "-5"],
        ["--host", "0.0.0.0", "--port", "65536"],
    ],
)
def test_serve_bad_override_exits_2(served: list[Any], capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert cli.main(["serve", *args]) == 2
    [problem] = error_lines(capsys.readouterr().err)
    assert problem.startswith("server.port: ")
    assert served == []


def test_serve_bad_config_exits_2(tmp_path: Path, served: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[engineio]\nping_interval = -1")
    assert cli.main(["serve", "--config", str(path)]) == 2
    [problem] = error_lines(capsys.readouterr().err)
    assert problem.startswith("engineio.ping_interval: ")
    assert served == []


def test_serve_missing_config_exits_2(tmp_path: Path, served: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    [problem] = error_lines(capsys.readouterr().err)
    assert "cannot read" in problem
    assert served == []


def test_serve_runs_with_overrides(tmp_path: Path, served: list[Any]) -> None:
    path = write(tmp_path, '[server]\nhost = "10.1.1.1"\nport = 4000\nlog_level = "warning"\nlog_format = "json"')
    assert cli.main(["serve", "--config", str(path), "--port", "0"]) == 0
    [(config, app, log_setup)] = served
    assert (config.server.host, config.server.port) == ("10.1.1.1", 0)
    assert app is None
    assert log_setup == ("warning", "json")


def test_serve_defaults_with_host_override(served: list[Any]) -> None:
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0
    [(config, _, _)] = served
    assert (config.server.host, config.server.port) == ("0.0.0.0", 3000)


def test_serve_loads_app(tmp_path: Path, served: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cli_test_app_ok.py").write_text("from rtserver import App\nmy_app = App()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cli_test_app_ok", raising=False)
    assert cli.main(["serve", "--app", "cli_test_app_ok:my_app"]) == 0
    [(_, app, _)] = served
    assert isinstance(app, App)
    assert app is sys.modules["cli_test_app_ok"].my_app


@pytest.mark.parametrize(
    "spec",
    ["cli_test_no_such_module:app", "cli_test_app_bad:missing", "cli_test_app_bad:not_an_app"],
)
def test_serve_bad_app_exits_2(
    tmp_path: Path,
    served: list[Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
) -> None:
    (tmp_path / "cli_test_app_bad.py").write_text("not_an_app = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cli_test_app_bad", raising=False)
    path = write(tmp_path, f'[app]\nmodule = "{spec}"')
    assert cli.main(["serve", "--config", str(path)]) == 2
    assert "cannot load app" in capsys.readouterr().err
    assert served == []
