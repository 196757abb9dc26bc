"""The README as a new user reads it: its first commands, and its tour run against a demo."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import free_port, notifications_command, stop_group, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: The README's tour blocks: fenced as ```sh tour.
TOUR = re.findall(r"^```sh tour\n(.*?)^```$", README, re.MULTILINE | re.DOTALL)
#: The one line the test changes: the demo's address, to the port the test's demo listens on.
BASE_LINE = "export BASE=http://127.0.0.1:8000"
INSTALL_AND_SERVE = "pip install . && notifications serve --demo"
TEST_COMMAND = "pip install -e '.[test]' && pytest"


def first_screen() -> str:
    """Return the README up to its first section."""
    return README.split("\n## ", 1)[0]


def test_the_first_screen_has_the_two_commands() -> None:
    blocks = re.findall(r"^```sh\n(.*?)^```$", first_screen(), re.MULTILINE | re.DOTALL)
    assert [block.strip() for block in blocks] == [INSTALL_AND_SERVE, TEST_COMMAND]
    assert "/docs" in first_screen() and "#a-five-minute-tour" in first_screen()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in ci.splitlines()


def test_the_tour_is_parametrised_in_one_line_only() -> None:
    assert len(TOUR) >= 5
    assert TOUR[0].splitlines()[0] == BASE_LINE
    tour = "\n".join(TOUR)
    # Everything else reaches the server through $BASE, so the substitution below is all.
    assert tour.count("127.0.0.1") == 1 and tour.count(":8000") == 1
    for block in TOUR:
        # Runnable as printed: no synopsis brackets or placeholders.
        assert not re.search(r"\s\[--|<[a-z][a-z ]*>", block), block


def test_no_runnable_block_holds_synopsis_syntax() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"^```(?:sh|bash)[^\n]*\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
        for block in blocks:
            assert not re.search(r"\s\[--|<[a-z][a-z ]*>|<32 hex>", block), (page.name, block)


def test_the_tests_read_nothing_outside_the_repository() -> None:
    outside = re.compile("|".join([r"/work/", r"\.\./shared", r"\"shared\" / \"reference\"",
                                   r"parents\[2\]"]))
    for path in [*ROOT.glob("tests/*.py"), *ROOT.glob("bench/*.py"),
                 *ROOT.glob("notifications/*.py"), ROOT / "cli.py"]:
        if path.name == Path(__file__).name:
            continue
        found = outside.search(path.read_text(encoding="utf-8"))
        assert found is None, (
            f"{path.relative_to(ROOT)} reads outside the repository: {found.group()}"
        )


def test_the_tour_runs_against_a_demo_server(tmp_path: Path) -> None:
    """Start the demo as the first screen says (on a free port), then run each tour block."""
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    # A new user's shell: no NOTIFICATIONS_* settings, the default database location (in a
    # home of its own), the virtualenv's commands first on PATH.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NOTIFICATIONS_") and k != "XDG_DATA_HOME"}
    env.update(HOME=str(home), PATH=bin_dir + os.pathsep + env.get("PATH", ""))
    port = free_port()
    log_path = tmp_path / "demo.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([*notifications_command(), "serve", "--demo", "--port", str(port),
                                   "--workers", "1"], cwd=home, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, server, log_path)
        database = home / ".local" / "share" / "notifications" / "notifications.db"
        assert database.exists() and f"Database: {database}" in log_path.read_text()
        state = tmp_path / "tour-state.sh"
        state.write_text("")
        outputs = []
        for number, block in enumerate(TOUR, 1):
            script = block.replace(BASE_LINE, f"export BASE={base}")
            # Each block in a fresh bash that starts from the variables the previous ones exported.
            wrapped = f"set -euo pipefail\n. {state}\n{script}\nexport -p > {state}\n"
            result = subprocess.run(["bash", "-c", wrapped], cwd=home, env=env,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, (
                f"tour block {number} failed ({result.returncode}):\n{block}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
            outputs.append(result.stdout + result.stderr)
    finally:
        stop_group(server)
    setup, dataset, inbox, marking, stream, tail, admin = outputs[:7]
    assert str(database) in setup
    assert '"notifications":' in dataset and '"user_id":"alice"' in dataset
    assert '"count":' in dataset
    assert '"items":' in inbox and '"organization_id":"acme"' in inbox
    assert '{"ok":true}' in marking
    assert "event: notification" in stream and "Live review" in stream
    assert "Data platform 2.5.0 published" in tail and "Traceback" not in tail
    assert "UNREAD" in admin and "notifications  " in admin
    assert len(TOUR) == 7, "a new tour block needs its own check above"
