"""config.toml loading: defaults, one named problem per bad key, env overrides."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from rtserver import config as config_mod
from rtserver.config import Config, ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_mod.load(write(tmp_path, text), environ={} if environ is None else environ)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_defaults() -> None:
    config = config_mod.load(None, environ={})
    assert config == Config()
    assert (config.server.host, config.server.port, config.server.log_level) == ("127.0.0.1", 3000, "info")
    assert config.engineio.paths == ("/socket.io/",)
    assert config.engineio.cors_origins == ()
    assert config.socketio.namespaces == ("/",)
    assert config.socketio.max_attachments == 10
    assert config.app.module == ""


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert config_mod.load(write(tmp_path, ""), environ={}) == Config()


def test_full_file(tmp_path: Path) -> None:
    config = config_mod.load(
        write(
            tmp_path,
            """
[server]
host = "0.0.0.0"
port = 8080
log_level = "debug"
log_format = "json"
shutdown_grace = 0

[http]
max_header_bytes = 1024
read_timeout = 1.5

[engineio]
paths = ["/socket.io/", "/rt/"]
ping_interval = 5
cors_origins = ["https://example.com"]

[socketio]
namespaces = ["/", "/admin"]
max_attachments = 0

[app]
module = "myapp:app"
""",
        ),
        environ={},
    )
    assert config.server == config_mod.ServerConfig("0.0.0.0", 8080, "debug", "json", 0.0)
    assert config.http.max_header_bytes == 1024
    assert config.http.read_timeout == 1.5
    assert config.engineio.paths == ("/socket.io/", "/rt/")
    assert config.engineio.ping_interval == 5.0
    assert isinstance(config.engineio.ping_interval, float)
    assert config.engineio.cors_origins == ("https://example.com",)
    assert config.socketio.namespaces == ("/", "/admin")
    assert config.socketio.max_attachments == 0
    assert config.app.module == "myapp:app"


def test_config_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Config().server.port = 1  # type: ignore[misc]


def test_unstructure_round_trip() -> None:
    config = config_mod.structure({"engineio": {"paths": ["/a/", "/b/"]}, "server": {"port": 1}})
    assert config_mod.structure(config_mod.unstructure(config)) == config


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        # unknown keys
        ("[server]\nbogus = 1", "server"),
        ("[bogus]\nx = 1", "config"),
        ("bogus = 1", "config"),
        # wrong types
        ('[server]\nport = "80"', "server.port"),
        ("[server]\nport = true", "server.port"),
        ("[server]\nport = 80.0", "server.port"),
        ("[server]\nhost = 1", "server.host"),
        ("[server]\nshutdown_grace = false", "server.shutdown_grace"),
        ('[engineio]\nping_interval = "5"', "engineio.ping_interval"),
        ('[engineio]\npaths = "/socket.io/"', "engineio.paths"),
        ('[engineio]\ncors_origins = "https://example.com"', "engineio.cors_origins"),
        ('[engineio]\ncors_origins = {a = "b"}', "engineio.cors_origins"),
        ('[engineio]\npaths = ["/ok/", 1]', "engineio.paths[1]"),
        ('[app]\nmodule = ["x"]', "app.module"),
        ("server = 5", "server"),
        # out of range
        ("[server]\nport = 65536", "server.port"),
        ("[server]\nport = -1", "server.port"),
        ("[server]\nshutdown_grace = -0.1", "server.shutdown_grace"),
        ('[server]\nlog_level = "loud"', "server.log_level"),
        ('[server]\nlog_format = "xml"', "server.log_format"),
        ("[http]\nmax_header_bytes = 1023", "http.max_header_bytes"),
        ("[http]\nkeepalive_timeout = 0", "http.keepalive_timeout"),
        ("[engineio]\nping_timeout = 0", "engineio.ping_timeout"),
        ("[engineio]\nping_interval = nan", "engineio.ping_interval"),
        ("[engineio]\nmax_payload = 100", "engineio.max_payload"),
        ("[engineio]\noutbox_size = 7", "engineio.outbox_size"),
        ("[engineio]\npaths = []", "engineio.paths"),
        ('[engineio]\npaths = ["socket.io"]', "engineio.paths"),
        ('[socketio]\nnamespaces = ["admin"]', "socketio.namespaces"),
        ("[socketio]\nmax_attachments = 1001", "socketio.max_attachments"),
        ("[socketio]\nhandler_concurrency = 0", "socketio.handler_concurrency"),
        ("[socketio]\nack_timeout = -1", "socketio.ack_timeout"),
    ],
)
def test_bad_key_gives_one_message_naming_it(tmp_path: Path, toml: str, key: str) -> None:
    [problem] = problems_of(tmp_path, toml)
    assert problem.startswith(f"{key}: ")
    assert "\n" not in problem
    assert len(problem) > len(key) + 2


def test_unknown_key_message_names_the_key(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, "[server]\nprot = 3000")
    assert problem.startswith("server: ")
    assert "prot" in problem


def test_every_problem_is_reported(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        '[server]\nport = "x"\nhost = 2\n[engineio]\nping_interval = 0\n[socketio]\nmax_attachments = -1',
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "engineio.ping_interval",
        "server.host",
        "server.port",
        "socketio.max_attachments",
    ]


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 1")
    with pytest.raises(ConfigError) as info:
        config_mod.load(path, environ={})
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: invalid TOML")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        config_mod.load(path, environ={})
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: cannot read")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config_mod.load(tmp_path, environ={})


def test_env_overrides_defaults() -> None:
    config = config_mod.load(
        None, environ={"RTSERVER_HOST": "0.0.0.0", "RTSERVER_PORT": "8080", "RTSERVER_LOG_LEVEL": "debug"}
    )
    assert (config.server.host, config.server.port, config.server.log_level) == ("0.0.0.0", 8080, "debug")
    assert config.server.log_format == "text"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "10.0.0.1"\nport = 4000\nlog_format = "json"')
    config = config_mod.load(path, environ={"RTSERVER_PORT": "5000", "UNRELATED": "x"})
    assert (config.server.host, config.server.port, config.server.log_format) == ("10.0.0.1", 5000, "json")


def test_env_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTSERVER_PORT", "4321")
    assert config_mod.load(None).server.port == 4321
    assert config_mod.load(None, environ={}).server.port == 3000


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"RTSERVER_PORT": "eighty"}, "server.port"),
        ({"RTSERVER_PORT": ""}, "server.port"),
        ({"RTSERVER_PORT": "70000"}, "server.port"),
        ({"RTSERVER_LOG_LEVEL": "loud"}, "server.log_level"),
    ],
)
def test_bad_env_override(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, environ=environ)
    [problem] = info.value.problems
    assert problem.startswith(f"{key}: ")


def test_bad_env_override_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, environ={"RTSERVER_PORT": "eighty"})
    assert "RTSERVER_PORT" in info.value.problems[0]


def test_env_override_with_section_not_a_table(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, "server = 5", environ={"RTSERVER_PORT": "8080"})
    assert problem.startswith("server: ")
