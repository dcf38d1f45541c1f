"""The benchmark tool: its options, its table, its JSON, its missing frameworks.

Speeds are only checked to be positive: what they are depends on the machine.
"""

import json
import sys
from contextlib import redirect_stdout
from io import StringIO

import pytest

from xception_common import bench

TINY = ["--image-size", "71", "--batch-size", "2", "--steps", "1", "--warmup", "0"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image-size", "70", "--batch-size", "2"], "--image-size must be at least 71, got 70"),
        (["--image-size", "128", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--image-size", "128", "--batch-size", "2", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["--image-size", "128", "--batch-size", "2", "--warmup", "-1"], "--warmup must be at least 0"),
        (["--image-size", "128", "--batch-size", "2", "--models", "resnet"], "invalid choice: 'resnet'"),
        (["--batch-size", "2"], "the following arguments are required: --image-size"),
    ],
)
def test_bad_options_exit_with_code_2_and_say_why(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real run of both our models, shared by the tests below."""
    path = tmp_path_factory.mktemp("bench") / "results.json"
    out = StringIO()
    with redirect_stdout(out):
        code = bench.main([*TINY, "--models", "torch", "keras", "--json", str(path)])
    return code, out.getvalue().splitlines(), json.loads(path.read_text())


def test_tiny_run_measures_both_models(tiny_run):
    code, _, results = tiny_run
    assert code == 0
    assert [r["model"] for r in results] == ["torch", "keras"]
    for result in results:
        assert result["status"] == "ok"
        assert result["train_images_per_s"] > 0
        assert result["infer_images_per_s"] > 0
        # Their references did not run, so there is nothing to compare with.
        assert result["reference"] is None and result["train_ratio"] is None


def test_tiny_run_prints_machine_line_and_table(tiny_run):
    _, lines, results = tiny_run
    machine, header, rule, *rows = lines
    assert machine.startswith("CPU ") and "torch " in machine and "keras " in machine
    assert "image 71, batch 2, steps 1, warm-up 0" in machine
    assert header.split()[:2] == ["model", "settings"] and "train img/s" in header
    assert set(rule) == {"-", " "}
    assert [row.split()[0] for row in rows] == ["torch", "keras"]
    assert f"{results[0]['train_images_per_s']:.1f}" in rows[0]
    assert "fp32" in rows[0] and "fp32" in rows[1]


def test_json_rows_carry_results_and_run_settings(tiny_run):
    _, lines, results = tiny_run
    expected = {
        "model", "settings", "status", "train_images_per_s", "infer_images_per_s",
        "reference", "train_ratio", "infer_ratio",
        "machine", "image_size", "batch_size", "steps", "warmup", "num_classes", "device",
    }
    for result in results:
        assert set(result) == expected
        assert result["machine"] == lines[0]
        assert (result["image_size"], result["batch_size"], result["steps"]) == (71, 2, 1)
        assert result["device"] == "cpu"


def test_missing_timm_gives_a_row_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    path = tmp_path / "results.json"
    out = StringIO()
    with redirect_stdout(out):
        assert bench.main([*TINY, "--models", "timm", "--markdown", "--json", str(path)]) == 0
    [result] = json.loads(path.read_text())
    assert result["status"] == "not installed" and result["train_images_per_s"] is None
    assert "| timm | not installed |" in out.getvalue()


def test_missing_keras_gives_rows_not_a_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    options = bench.Options(71, 2, 1, 0, 10, "cpu")
    for name in ("keras", "keras-applications", "keras-input"):
        assert bench.run_model(name, options).status == "not installed"


def test_torch_fp32_row_is_cuda_only():
    result = bench.run_model("torch-fp32", bench.Options(71, 2, 1, 0, 10, "cpu"))
    assert result.status.startswith("CUDA only")


def test_ratios_are_against_each_framework_reference():
    results = [
        bench.Result("torch", train_images_per_s=30.0, infer_images_per_s=90.0),
        bench.Result("timm", train_images_per_s=20.0, infer_images_per_s=60.0),
        bench.Result("keras", train_images_per_s=10.0, infer_images_per_s=40.0),
        bench.Result("keras-applications", status="not installed"),
    ]
    bench.add_ratios(results)
    torch_row, timm_row, keras_row, _ = results
    assert (torch_row.reference, torch_row.train_ratio, torch_row.infer_ratio) == ("timm", 1.5, 1.5)
    assert timm_row.reference is None and timm_row.train_ratio is None
    assert keras_row.reference is None and keras_row.train_ratio is None
    table = bench.format_table(results).splitlines()
    assert "1.50" in table[2] and "timm" in table[2]
    assert "not installed" in table[5]


def test_input_pipelines_are_measured_against_their_models(tmp_path, capsys):
    path = tmp_path / "results.json"
    models = ["--models", "torch", "torch-input", "keras-input"]
    assert bench.main([*TINY, "--steps", "3", *models, "--json", str(path)]) == 0
    torch_row, torch_input, keras_input = json.loads(path.read_text())
    for row in (torch_input, keras_input):
        assert row["status"] == "ok" and row["train_images_per_s"] > 0 and row["infer_images_per_s"] is None
        assert row["settings"].endswith("→ 71px")  # the --image-size asked for
    # The input pipeline is compared with its own framework's model, where that ran.
    assert torch_input["reference"] == "torch" and torch_input["train_ratio"] > 0
    assert torch_input["infer_ratio"] is None
    assert keras_input["reference"] is None and keras_input["train_ratio"] is None  # no keras row ran
    printed = capsys.readouterr().out.splitlines()[-2]
    assert printed.startswith("torch-input") and printed.split()[-2] == "torch"


def test_input_ratio_leaves_inference_empty():
    results = [bench.Result("torch", train_images_per_s=10.0, infer_images_per_s=30.0),
               bench.Result("torch-input", train_images_per_s=500.0)]
    bench.add_ratios(results)
    assert (results[1].reference, results[1].train_ratio, results[1].infer_ratio) == ("torch", 50.0, None)
