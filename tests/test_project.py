"""The project's own promises: CI runs the command the README gives."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_code_passes_the_linter():
    """ruff, with the settings in pyproject.toml (lines of at most 120)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Set up and run the tests:\s*```bash\n(.+?)\n```", readme, re.S)
    assert block, "README.md lost its test command"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert block.group(1).strip() in ci_lines


def repository_url():
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


def notebooks():
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_opens_with_title_badge_and_setup():
    import json

    url = repository_url()
    owner_repo = url.removeprefix("https://github.com/")
    for path in notebooks():
        cells = json.loads(path.read_text())["cells"]
        intro, setup = cells[0], cells[1]
        intro_text = "".join(intro["source"])
        assert intro["cell_type"] == "markdown" and intro_text.startswith("# "), path.name
        badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{path.name}"
        assert badge in intro_text, f"{path.name}: no Colab badge for {badge}"
        setup_text = "".join(setup["source"])
        assert '"google.colab" in sys.modules' in setup_text, path.name
        assert f"git+{url}" in setup_text, f"{path.name}: installs from another address"
        assert "setup(seed=" in setup_text, path.name
        other_urls = {u for c in cells for u in re.findall(r"github\.com/[\w.-]+/[\w.-]+", "".join(c["source"]))}
        assert other_urls <= {f"github.com/{owner_repo}"}, f"{path.name}: {other_urls}"


def test_readme_installs_from_the_repository_address():
    readme = (ROOT / "README.md").read_text()
    addresses = set(re.findall(r"git\+(https://github\.com/[\w.-]+/[\w.-]+)", readme))
    assert addresses == {repository_url()}


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for path in notebooks():
        assert path.name in readme, f"README.md does not list {path.name}"
