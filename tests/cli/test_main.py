"""The ``wsend`` group: --help, --version, usage errors reported in one line."""

from __future__ import annotations

import pytest

import wsend

from .conftest import run_wsend

COMMANDS = ["connect", "send", "echo", "bench", "serve"]


def test_version() -> None:
    result = run_wsend("--version")
    assert result.code == 0
    assert result.out.strip() == f"wsend, version {wsend.__version__}"


def test_help_lists_commands_and_exit_codes() -> None:
    result = run_wsend("--help")
    assert result.code == 0
    for name in COMMANDS:
        assert name in result.out
    assert "Exit codes:" in result.out
    assert "Examples:" in result.out


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_examples_and_exit_codes(name: str) -> None:
    result = run_wsend(name, "--help")
    assert result.code == 0
    assert f"Usage: wsend {name}" in result.out
    assert "Examples:" in result.out
    assert "Exit codes:" in result.out


def test_unknown_command_is_a_usage_error() -> None:
    result = run_wsend("frobnicate")
    assert result.code == 2
    assert "no such command" in result.err


@pytest.mark.parametrize(
    ("name", "url"),
    [("connect", "http://example.com/"), ("send", "ws://host:99999/"), ("bench", "nonsense")],
)
def test_bad_url_is_one_line_exit_2(name: str, url: str) -> None:
    result = run_wsend(name, url, *(["x"] if name == "send" else []))
    assert result.code == 2
    assert result.err.startswith("error: invalid URL")
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_bad_header_is_a_usage_error() -> None:
    result = run_wsend("send", "ws://127.0.0.1:1/", "x", "-H", "no colon here")
    assert result.code == 2
    assert "Name: value" in result.err


def test_bad_size_is_a_usage_error() -> None:
    result = run_wsend("bench", "ws://127.0.0.1:1/", "-s", "12 parsecs")
    assert result.code == 2
    assert "is not a size" in result.err


def test_missing_cacert_is_a_usage_error() -> None:
    result = run_wsend("send", "wss://127.0.0.1:1/", "x", "--cacert", "/nonexistent.pem")
    assert result.code == 2
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send"], "error: missing argument 'URL' (see 'wsend send --help')"),
        (["frobnicate"], "error: no such command 'frobnicate' (see 'wsend --help')"),
        (
            ["bench", "ws://127.0.0.1:1/", "-c", "0"],
            "error: invalid value for '-c' / '--connections': 0 is not in the range"
            " 1<=x<=10000 (see 'wsend bench --help')",
        ),
        (["connect", "ws://x/", "--bogus"], "error: no such option '--bogus'"),
        (["send", "ws://x/", "x", "--cacert", "/nonexistent.pem"], "'/nonexistent.pem' does not"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    result = run_wsend(*args)
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("error: ")
    assert message in result.err
    assert len(result.err.splitlines()) == 1, result.err


def test_no_command_shows_the_help() -> None:
    result = run_wsend()
    assert result.code == 2
    assert "Usage: wsend" in result.out + result.err
    assert "Commands:" in result.out + result.err
