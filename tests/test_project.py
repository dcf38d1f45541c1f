"""The project's own promises: CI runs the command the README gives."""

import os
import re
from pathlib import Path

import pytest

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


# The package in layers: a module imports from its own layer or those above it.
LAYERS = (
    {"load_order", "seeding", "architecture"},
    {"keras_xception", "torch_xception", "convert", "costs"},  # the models
    {"recipe", "runs", "distributed", "epoch_plan", "data", "train_keras", "train_torch", "training", "train", "bench"},
    {"results", "plots", "diagrams", "notebook"},  # what the notebooks display
)


def package_imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, at any depth of its code."""
    import ast

    package = ROOT / "xception_common"
    imports = {}
    for path in sorted(package.glob("*.py")):
        if path.stem == "__init__":
            continue
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xception_common."):
                found.add(node.module.split(".")[1])
        imports[path.stem] = found
    return imports


def test_the_package_is_layered_without_cycles():
    imports = package_imports()
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    assert set(imports) == set(layer), "every module belongs to one layer"
    upward = [(module, target) for module, targets in imports.items() for target in targets
              if layer[target] > layer[module]]
    assert upward == []
    # Within a layer, too, no module reaches back to itself.
    def reaches(start, goal, seen=()):
        return any(t == goal or (t not in seen and reaches(t, goal, (*seen, t))) for t in imports[start])

    assert [m for m in imports if reaches(m, m)] == []


# Each half of the package with the other framework missing: the model, its
# costs, a one-epoch training run on digits.
HALVES = {
    "torch": """
from xception_common import costs, training
from xception_common.runs import TrainConfig
from xception_common.torch_xception import Xception
print(sum(costs.parameters_by_flow(Xception()).values()))
history = training.train(TrainConfig("torch", "digits", 1, 71, 8, subset=16), progress=False)
print(len(history))
""",
    "keras": """
from xception_common import costs, training
from xception_common.keras_xception import build_xception
from xception_common.runs import TrainConfig
print(sum(costs.parameters_by_flow(build_xception(input_shape=(71, 71, 3))).values()))
history = training.train(TrainConfig("keras", "digits", 1, 71, 8, subset=16), progress=False)
print(len(history))
""",
}
MISSING = {"torch": ("keras", "tensorflow"), "keras": ("torch", "torchinfo")}


@pytest.mark.parametrize("half", HALVES)
def test_each_half_works_with_the_other_framework_missing(half, tmp_path):
    import subprocess
    import sys

    for name in MISSING[half]:  # first on the path, and importing it fails as for a missing package
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ModuleNotFoundError('No module named {name!r}')\n")
    code = f"{HALVES[half]}import sys\nprint(sorted(m for m in {MISSING[half]!r} if m in sys.modules))"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-4:] == ["22855952", "1", "[]", ""], done.stdout
