"""The command line is an extra: the library installs without click and prompt_toolkit."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires

from wsend.cli import CLI_PACKAGES


def _requirement_names(marker_filter: str | None) -> set[str]:
    names = set()
    for line in requires("wsend") or []:
        spec, _, marker = line.partition(";")
        if (marker_filter is None) == (not marker.strip()) and (
            marker_filter is None or marker_filter in marker
        ):
            name = spec.split("[")[0].split(">")[0].split("=")[0].strip()
            names.add(name.lower().replace("-", "_"))
    return names


def test_library_requires_only_httptools() -> None:
    assert _requirement_names(None) == {"httptools"}


def test_cli_extra_brings_click_and_prompt_toolkit() -> None:
    assert _requirement_names('extra == "cli"') == {"click", "prompt_toolkit"}


def test_library_imports_without_the_cli_packages() -> None:
    code = (
        "import sys\n"
        "for name in ('click', 'prompt_toolkit'): sys.modules[name] = None\n"
        "import wsend, wsend.hub, wsend.cli\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_command_without_its_extra_says_how_to_install_it() -> None:
    for missing in sorted(CLI_PACKAGES):
        code = (
            "import sys\n"
            f"sys.modules[{missing!r}] = None\n"
            "sys.argv = ['wsend', '--help']\n"
            "from wsend.cli import main\n"
            "main()\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 1
        assert result.stdout == ""
        assert f"needs {missing}" in result.stderr
        assert "pip install 'wsend[cli]'" in result.stderr
        assert "Traceback" not in result.stderr
