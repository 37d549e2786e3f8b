"""The README cannot drift: its two commands exist and are what CI runs, and every `buxiban ...`
line it shows parses with the real argument parser."""

import re
import shlex
from pathlib import Path

from buxiban.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_two_commands_come_first_and_ci_runs_the_second():
    first, second = shell_lines()[:2]
    assert first == "bash scripts/quickstart.sh"
    assert second == "bash scripts/test.sh"
    assert (ROOT / "scripts" / "quickstart.sh").is_file() and (ROOT / "scripts" / "test.sh").is_file()
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_buxiban_command_in_the_readme_parses():
    commands = [line for line in shell_lines() if line.startswith("buxiban ")]
    assert len(commands) >= 6
    parser = build_parser()
    for line in commands:
        args = parser.parse_args(shlex.split(line)[1:])
        assert getattr(args, "handler", None), line


def test_no_placeholder_is_left_in_the_readme():
    environment = (
        "BUXIBAN_CACHE",
        "BUXIBAN_HOME",
        "BUXIBAN_API_KEY",
        "BUXIBAN_SCREENSHOTS",
        "BUXIBAN_NO_BROWSER",
        "BUXIBAN_ALLOCATOR",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "MLFLOW_TRACKING_URI",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
    )
    text = README
    for name in environment:  # real environment variables, documented on purpose
        text = text.replace(name, "")
    assert not re.search(r"\b[A-Z]{4,}_[A-Z_]{2,}\b", text)
