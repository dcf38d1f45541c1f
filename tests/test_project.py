"""The project's own promises: CI runs the command the README gives."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Set up and run the tests:\s*```bash\n(.+?)\n```", readme, re.S)
    assert block, "README.md lost its test command"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert block.group(1).strip() in ci_lines
