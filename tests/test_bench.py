"""The benchmark tool: its options, its timing, its table, its JSON, its missing frameworks.

Speeds are only checked to be positive: what they are depends on the machine.
The timing itself is checked on steps that sleep for known times.
"""

import json
import os
import subprocess
import sys
import time
from contextlib import redirect_stdout
from io import StringIO

import keras
import numpy as np
import pytest
import torch
from torch.utils.benchmark import Measurement, TaskSpec

from xception_common import bench

TINY = ["--image-size", "71", "--batch-size", "2", "--steps", "1", "--warmup", "0"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image-size", "70", "--batch-size", "2"], "--image-size must be at least 71, got 70"),
        (["--image-size", "128", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--image-size", "128", "--batch-size", "2", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["--image-size", "128", "--batch-size", "2", "--warmup", "-1"], "--warmup must be at least 0"),
        (["--image-size", "128", "--batch-size", "2", "--workers", "-1"], "--workers must be at least 0, got -1"),
        (["--image-size", "128", "--batch-size", "2", "--models", "resnet"], "invalid choice: 'resnet'"),
        (["--batch-size", "2"], "the following arguments are required: --image-size"),
        ([*TINY, "--models", "keras", "--workers", "2"], "--workers is for the torch-stream row, which --models"),
        ([*TINY, "--models", "torch", "--compile-mode", "default"], "--compile-mode is for the torch-compiled row"),
        ([*TINY, "--models", "torch-input", "--profile", "p"], "--profile is for the torch or torch-fp32 or"),
        ([*TINY, "--json", "EXISTING"], "exists; choose another name or remove it first"),
        ([*TINY, "--json", "EXISTING/x.json"], "EXISTING exists and is not a folder"),
        ([*TINY, "--models", "torch", "--profile", "EXISTING"], "EXISTING exists and is not a folder"),
        ([*TINY, "--models", "torch", "keras", "--profile", "PROFILED"], "--profile PROFILED holds torch.txt already; "
         "choose another folder or remove them first"),
    ],
)
def test_bad_options_exit_with_code_2_and_say_why(argv, message, capsys, tmp_path):
    existing = tmp_path / "existing.json"
    existing.write_text("kept")
    profiled = tmp_path / "profile"  # an earlier profile of the torch row
    profiled.mkdir()
    (profiled / "torch.txt").write_text("kept")
    argv = [arg.replace("EXISTING", str(existing)).replace("PROFILED", str(profiled)) for arg in argv]
    message = message.replace("EXISTING", str(existing)).replace("PROFILED", str(profiled))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert existing.read_text() == "kept" and (profiled / "torch.txt").read_text() == "kept"
    assert [path.name for path in profiled.iterdir()] == ["torch.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_exits_with_code_2_and_says_why(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*TINY, "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "--device cuda: PyTorch sees no CUDA device; use --device cpu" in capsys.readouterr().err


# --- timing ----------------------------------------------------------------------


def sleeping_step(durations):
    """A step that sleeps for the next of ``durations`` (the last one over and
    over), and the list of the times it was called at."""
    calls = []

    def step():
        calls.append(time.perf_counter())
        time.sleep(durations[min(len(calls), len(durations)) - 1])

    return step, calls


def test_timeit_times_the_steps_after_the_warm_up(monkeypatch):
    # Two slow warm-up steps, then steps of 0.05 s and 0.15 s in turn: their
    # median is 0.1 s and their quartiles 0.05 s and 0.15 s. Timed warm-up
    # steps would move both.
    step, calls = sleeping_step([0.4, 0.4, 0.05, 0.15, 0.05, 0.15])
    monkeypatch.setattr(bench, "import_torch", lambda: None)  # as where PyTorch is not installed
    timing = bench.time_steps(step, bench.Options(71, 2, steps=4, warmup=2, num_classes=10, device="cpu"))
    assert len(calls) == 6 and timing.steps == 4
    assert timing.median_s == pytest.approx(0.1, abs=0.03)
    assert timing.iqr_s == pytest.approx(0.1, abs=0.03)


def test_torch_timer_times_at_least_the_steps_and_a_second():
    step, calls = sleeping_step([0.04])
    options = bench.Options(71, 2, steps=3, warmup=2, num_classes=10, device="cpu")
    timing = bench.time_steps(step, options)
    # More than --steps: the Timer times a second at least (some 25 steps of 0.04 s), after the warm-up
    # and its own untimed steps.
    assert timing.steps * timing.median_s >= 0.9 * bench.MIN_RUN_TIME and bench.MIN_RUN_TIME == 1.0
    assert len(calls) > options.warmup + timing.steps
    assert timing.median_s == pytest.approx(0.04, abs=0.02)
    assert 0 <= timing.iqr_s < timing.median_s


def test_timeit_statistics_are_those_of_torch_measurement():
    times = [0.31, 0.12, 0.25, 0.4, 0.18, 0.22, 0.5]
    expected = Measurement(number_per_run=1, raw_times=times, task_spec=TaskSpec("step()", ""))
    timing = bench.timing_from_times(times)
    assert timing.median_s == pytest.approx(expected.median)
    assert timing.iqr_s == pytest.approx(expected.iqr)
    assert timing.steps == len(times)


def test_keras_steps_return_host_values():
    # A step that returned a tensor could still be running when the clock is read.
    model = keras.Sequential([keras.Input((71, 71, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10, activation="softmax")])
    train_step, infer_step = bench.keras_steps(model, bench.Options(71, 2, 1, 0, 10, "cpu"))
    loss, probabilities = train_step(), infer_step()
    assert isinstance(loss, (float, np.floating, np.ndarray)) and np.isfinite(loss)
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_keras_input_step_gives_scaled_batches_past_the_end_of_its_plan():
    options = bench.Options(71, 2, steps=1, warmup=1, num_classes=10, device="cpu")
    make_batch = bench.keras_input_step(options)
    planned = bench.input_images(options) // options.batch_size
    batches = [make_batch() for _ in range(3 * planned)]
    for batch in batches:
        assert isinstance(batch, np.ndarray) and batch.shape == (2, 71, 71, 3)
        assert -1 - 1e-6 <= batch.min() and batch.max() <= 1 + 1e-6
    # Random uint8 images span the whole range: scaled to [-1, 1], not [0, 1].
    assert min(batch.min() for batch in batches) < -0.9 and max(batch.max() for batch in batches) > 0.9
    np.testing.assert_array_equal(batches[0], batches[planned])  # round the plan again


# --- runs --------------------------------------------------------------------------


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
        for phase in ("train", "infer"):
            assert result[f"{phase}_images_per_s"] > 0
            assert result[f"{phase}_iqr_percent"] >= 0
            assert result[f"{phase}_steps"] >= 1
        # Their references did not run, so there is nothing to compare with.
        assert result["reference"] is None and result["train_ratio"] is None


def test_tiny_run_prints_machine_line_and_table(tiny_run):
    _, lines, results = tiny_run
    machine, header, rule, *rows = lines
    assert machine.startswith("CPU ") and "torch " in machine and "keras " in machine
    assert "image 71, batch 2, steps 1, warm-up 0, timed with torch.utils.benchmark" in machine
    assert header.split()[:2] == ["model", "settings"]
    assert header.split()[2:11] == ["train", "img/s", "train", "IQR", "MFU", "infer", "img/s", "infer", "IQR"]
    assert set(rule) == {"-", " "}
    assert [row.split()[0] for row in rows] == ["torch", "keras"]
    for row, result in zip(rows, results):
        expected = [f"{result['train_images_per_s']:.1f}", f"{result['train_iqr_percent']:.1f}%",
                    f"{result['infer_images_per_s']:.1f}", f"{result['infer_iqr_percent']:.1f}%"]
        assert row.split()[-4:] == expected
        assert "fp32" in row


def test_json_rows_carry_results_and_run_settings(tiny_run):
    _, lines, results = tiny_run
    expected = {
        "model", "settings", "status",
        "train_images_per_s", "train_iqr_percent", "train_steps",
        "infer_images_per_s", "infer_iqr_percent", "infer_steps",
        "reference", "train_ratio", "infer_ratio", "precision", "train_mfu_percent",
        "machine", "image_size", "batch_size", "steps", "warmup", "num_classes", "device", "compile_mode",
        "peak_tflops", "profile_dir", "workers",
    }
    for result in results:
        assert set(result) == expected
        assert result["machine"] == lines[0]
        assert (result["image_size"], result["batch_size"], result["steps"]) == (71, 2, 1)
        assert result["device"] == "cpu"


def test_markdown_table_has_a_column_per_figure():
    options = bench.Options(71, 4, 1, 0, 10, "cpu")
    # 0.5 s a step with quartiles 0.45 s and 0.55 s: 8 images/s, IQR 20%.
    result = bench.measured("keras", "fp32", options, bench.Timing(0.5, 0.1, 12))
    header, rule, row = ([cell.strip() for cell in line.split("|")[1:-1]]
                         for line in bench.format_table([result], markdown=True).splitlines())
    assert len(header) == len(rule) == len(row) == 10 and set(rule) == {"---"}
    cells = dict(zip(header, row))
    assert (cells["train img/s"], cells["train IQR"], cells["infer img/s"]) == ("8.0", "20.0%", "")
    assert result.train_steps == 12 and result.infer_steps is None


# NVIDIA's datasheet figures, dense (without sparsity): H200 SXM 989.4 bf16/fp16 and 494.7 TF32;
# A100 312 and 156; T4 65 fp16 and 8.1 fp32 (no TF32); L4 121 and 60.
@pytest.mark.parametrize("name, precision, tflops", [
    ("NVIDIA H200", "bfloat16", 989.4), ("NVIDIA H200", "float32", 494.7),
    ("NVIDIA A100-SXM4-80GB", "float16", 312.0), ("Tesla T4", "float16", 65.0), ("Tesla T4", "float32", 8.1),
    ("NVIDIA L4", "bfloat16", 121.0), ("NVIDIA L40S", "bfloat16", None), ("NVIDIA GeForce RTX 4090", "float32", None),
])
def test_peaks_are_found_by_a_whole_word_of_the_device_name(name, precision, tflops):
    peak = bench.peak_flops(name, precision)
    assert peak == (None if tflops is None else pytest.approx(tflops * 1e12))


def test_utilisation_is_model_flops_over_the_peak_of_each_rows_precision():
    rows = [bench.Result("torch", train_images_per_s=2000.0, precision="bfloat16"),
            bench.Result("timm", train_images_per_s=500.0, precision="float32"),
            bench.Result("torch-input", train_images_per_s=9000.0),
            bench.Result("keras", status="not installed", precision="float32")]
    bench.add_utilisation(rows, 6e9, {"bfloat16": 1e15, "float32": 5e14}.get)
    # 6 GFLOP × 2000 images/s = 12 TFLOPS of 1000; 6 GFLOP × 500 = 3 TFLOPS of 500.
    assert [r.train_mfu_percent for r in rows] == [pytest.approx(1.2), pytest.approx(0.6), None, None]


def test_a_given_peak_fills_the_mfu_column_on_a_cpu(tmp_path, capsys):
    path = tmp_path / "results.json"
    assert bench.main([*TINY, "--models", "torch", "torch-input", "--peak-tflops", "2", "--json", str(path)]) == 0
    torch_row, input_row = json.loads(path.read_text())
    flops = bench.training_flops_per_image(bench.Options(71, 2, 1, 0, 1000, "cpu"))
    # 2 FLOPs a multiply-add, × 3 for forward and backward, of the multiply-adds the textbook
    # formulas give on Keras' own layer shapes (torchinfo counts them for the benchmark).
    from xception_common.costs import keras_layer_costs
    from xception_common.keras_xception import build_xception

    keras_mult_adds = sum(row.mult_adds for row in keras_layer_costs(build_xception(input_shape=(71, 71, 3))))
    assert flops == 6 * keras_mult_adds and 0.5e9 < keras_mult_adds < 0.6e9  # about 0.55 billion at 71 px
    assert torch_row["train_mfu_percent"] == pytest.approx(100 * flops * torch_row["train_images_per_s"] / 2e12)
    assert input_row["train_mfu_percent"] is None
    out = capsys.readouterr().out
    assert f"MFU: {flops / 1e9:.2f} GFLOP per training image ÷ 2 TFLOPS (--peak-tflops)" in out
    assert f"{torch_row['train_mfu_percent']:.2f}%" in out


def test_without_torchinfo_the_table_keeps_its_measurements_and_says_why_mfu_is_missing(monkeypatch, tmp_path,
                                                                                       capsys):
    monkeypatch.setitem(sys.modules, "torchinfo", None)  # makes `import torchinfo` fail
    path = tmp_path / "results.json"
    assert bench.main([*TINY, "--models", "torch", "--peak-tflops", "2", "--json", str(path)]) == 0
    [row] = json.loads(path.read_text())
    assert row["status"] == "ok" and row["train_images_per_s"] > 0 and row["train_mfu_percent"] is None
    out = capsys.readouterr().out
    assert "MFU: not computed, since torchinfo is not installed (pip install torchinfo)" in out
    assert "GFLOP per training image" not in out


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_peak_must_be_positive(value, capsys):
    with pytest.raises(SystemExit):
        bench.main([*TINY, "--peak-tflops", value])
    assert f"--peak-tflops must be a positive number, got {float(value)}" in capsys.readouterr().err


def test_a_compiled_model_is_timed_after_its_compiling_first_steps():
    """``measure_torch`` compiles the classifier it is given; the first
    training and inference steps, which compile, are timed apart."""
    options = bench.Options(71, 2, 2, 1, 3, "cpu")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3))
    torch._dynamo.reset()
    train, infer, first = bench.measure_torch(model, options, compile_mode="default")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # a training and an inference graph
    assert first > train.median_s and first > infer.median_s
    assert train.steps >= 2 and infer.steps >= 2


def test_profile_writes_a_trace_and_a_table_of_the_training_steps(tmp_path, capsys):
    assert bench.main([*TINY, "--models", "torch", "--profile", str(tmp_path / "profile")]) == 0
    trace = json.loads((tmp_path / "profile" / "torch.trace.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    # Each profiled step runs the convolutions forward and backward, and the optimizer.
    assert {"aten::convolution", "aten::convolution_backward", "Optimizer.step#SGD.step"} <= names
    summary, _, table = (tmp_path / "profile" / "torch.txt").read_text().partition("\n\n")
    assert summary.startswith("torch: ") and "ms a training step" in summary and "Self CPU" in table
    calls = int(summary.split(", ")[1].split()[0])
    # 74 convolutions forward (2 plain, 34 separable in two halves, 4 projection shortcuts), an aten call each.
    assert calls > 74
    # A step's calls: the trace's aten events over the profiled steps (a few outside them, at its edges).
    traced = sum(str(event.get("name", "")).startswith("aten::") for event in trace["traceEvents"])
    assert calls == pytest.approx(traced / bench.PROFILED_STEPS, rel=0.01)
    assert summary in capsys.readouterr().out


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


# The bench's command with `import torch` failing as for a missing package: a
# torch package first on the path whose import raises, as in test_project.py.
WITHOUT_TORCH = """
import sys
from xception_common import bench

code = bench.main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(code)
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch warns only where it sees no GPU")
def test_the_cli_prints_no_cuda_toolkit_warning_on_a_cpu(tmp_path):
    """A CUDA build of torch on a machine without a GPU logs "No CUDA runtime
    is found" when torch.utils.benchmark is imported and a CUDA toolkit is
    found; CUDA_HOME names one (any folder) so that it is, on any machine."""
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-m", "xception_common.bench", *TINY, "--models", "torch"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train img/s" in run.stdout
    if torch.version.cuda is not None:  # a CPU-only build never warns, so the test holds there trivially
        control = subprocess.run([sys.executable, "-c", "import torch.utils.benchmark"],
                                 capture_output=True, text=True, env=env, timeout=600)
        assert "No CUDA runtime is found" in control.stderr
    assert "No CUDA runtime is found" not in run.stderr


def test_without_torch_the_torch_rows_say_so_and_keras_rows_run(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\")\n")
    path = tmp_path / "results.json"
    models = ["torch", "torch-fp32", "timm", "torch-input", "keras", "keras-input"]
    argv = [*TINY, "--steps", "2", "--num-classes", "10", "--models", *models, "--json", str(path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *argv],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["model"]: r for r in json.loads(path.read_text())}
    for name in ("torch", "torch-fp32", "timm", "torch-input"):
        assert rows[name]["status"] == "not installed" and rows[name]["train_images_per_s"] is None
    for name in ("keras", "keras-input"):
        assert rows[name]["status"] == "ok" and rows[name]["train_images_per_s"] > 0
        assert rows[name]["train_steps"] == 2  # timeit times exactly --steps
    assert rows["keras-input"]["reference"] == "keras" and rows["keras-input"]["train_ratio"] > 0
    machine = rows["keras"]["machine"]
    assert "torch not installed" in machine and "torch threads" not in machine and "timed with timeit" in machine


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


def test_ratios_divide_the_medians():
    options = bench.Options(71, 8, 1, 0, 10, "cpu")
    # Medians of 0.4 s and 0.5 s a step: ours trains at 20 images/s, timm at 16.
    ours = bench.measured("torch", "", options, bench.Timing(0.4, 0.2, 5), bench.Timing(0.1, 0.0, 5))
    timm = bench.measured("timm", "", options, bench.Timing(0.5, 0.01, 5), bench.Timing(0.2, 0.0, 5))
    bench.add_ratios([ours, timm])
    assert ours.train_images_per_s == pytest.approx(20) and ours.train_iqr_percent == pytest.approx(50)
    assert (ours.train_ratio, ours.infer_ratio) == (pytest.approx(1.25), pytest.approx(2.0))


def test_input_pipelines_are_measured_against_their_models(tmp_path, capsys):
    path = tmp_path / "results.json"
    models = ["--models", "torch", "torch-input", "keras-input"]
    assert bench.main([*TINY, "--steps", "3", *models, "--json", str(path)]) == 0
    torch_row, torch_input, keras_input = json.loads(path.read_text())
    for row in (torch_input, keras_input):
        assert row["status"] == "ok" and row["train_images_per_s"] > 0 and row["infer_images_per_s"] is None
        assert row["train_steps"] >= 3 and row["infer_steps"] is None
        assert row["settings"].endswith("→ 71px")  # the --image-size asked for
    # The input pipeline is compared with its own framework's model, where that ran.
    assert torch_input["reference"] == "torch" and torch_input["train_ratio"] > 0
    assert torch_input["infer_ratio"] is None
    assert keras_input["reference"] is None and keras_input["train_ratio"] is None  # no keras row ran
    printed = capsys.readouterr().out.splitlines()[-2]
    assert printed.startswith("torch-input") and printed.split()[-2] == "torch"


def test_the_streaming_pipeline_is_measured_against_the_model(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    made = []
    write = bench.write_sample_jpegs
    monkeypatch.setattr(bench, "write_sample_jpegs", lambda folder, count: made.append(count) or write(folder, count))
    argv = [*TINY, "--steps", "3", "--models", "torch", "torch-stream", "--workers", "2", "--json", str(path)]
    assert bench.main(argv) == 0
    torch_row, stream_row = json.loads(path.read_text())
    assert stream_row["status"] == "ok" and stream_row["train_images_per_s"] > 0
    assert stream_row["train_steps"] == 3 and stream_row["infer_images_per_s"] is None
    assert stream_row["settings"] == "input only: 500×375 JPEG files → 71px, 2 decoding workers on " \
        f"{os.cpu_count()} cores"
    assert stream_row["reference"] == "torch" and stream_row["train_ratio"] == pytest.approx(
        stream_row["train_images_per_s"] / torch_row["train_images_per_s"])
    assert made == [2 * (0 + 3)]  # a batch of files per warm-up and timed step; rounds go round them again


def test_sample_jpegs_are_of_the_size_asked_for(tmp_path):
    from PIL import Image

    bench.write_sample_jpegs(tmp_path, 3, (120, 90))
    files = sorted((tmp_path / "train").rglob("*.jpg"))
    assert [Image.open(f).size for f in files] == [(120, 90)] * 3
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["a", "b"]  # two classes, as a data folder needs
    assert len(list((tmp_path / "test").rglob("*.jpg"))) == 2
    bench.write_sample_jpegs(tmp_path / "one", 1, (120, 90))  # even for one image a step: two classes
    assert sorted(p.name for p in (tmp_path / "one" / "train").iterdir()) == ["a", "b"]


def test_input_ratio_leaves_inference_empty():
    results = [bench.Result("torch", train_images_per_s=10.0, infer_images_per_s=30.0),
               bench.Result("torch-input", train_images_per_s=500.0)]
    bench.add_ratios(results)
    assert (results[1].reference, results[1].train_ratio, results[1].infer_ratio) == ("torch", 50.0, None)


def test_the_trainer_row_times_the_trainers_own_step_through_the_epoch_plan(tmp_path, monkeypatch):
    """The row calls ``Trainer.train_step`` with the plan's batches in order,
    going round the plan again past its end, each with its own images'
    labels; it is compared with the torch row, and the step trains."""
    from xception_common import train_torch
    from xception_common.epoch_plan import crop_padding, epoch_plan

    seen, trained = [], []
    step_of_trainer = train_torch.Trainer.train_step

    def train_step(self, images, labels, plan, step):
        before = next(self.model.parameters()).detach().clone()
        result = step_of_trainer(self, images, labels, plan, step)
        seen.append((step, labels.tolist()))
        trained.append(not torch.equal(before, next(self.model.parameters())))
        return result

    monkeypatch.setattr(train_torch.Trainer, "train_step", train_step)
    path = tmp_path / "results.json"
    assert bench.main([*TINY, "--steps", "3", "--num-classes", "3", "--models", "torch", "torch-trainer",
                       "--json", str(path)]) == 0
    torch_row, trainer_row = json.loads(path.read_text())
    assert trainer_row["status"] == "ok" and trainer_row["train_steps"] >= 3 and trainer_row["infer_steps"] is None
    assert trainer_row["reference"] == "torch" and trainer_row["train_ratio"] == pytest.approx(
        trainer_row["train_images_per_s"] / torch_row["train_images_per_s"])
    assert trainer_row["precision"] == "float32" and ", channels_last, 32px uint8 → 71px" in trainer_row["settings"]
    options = bench.parse_args([*TINY, "--steps", "3", "--num-classes", "3"])[1]
    _, labels, _ = bench.input_data(options, 2 * (0 + 3))  # a batch per warm-up and timed step
    order = epoch_plan(len(labels), 2, crop_padding(32), True, bench.SEED, 0).order
    assert len(seen) > order.shape[0]  # round the plan at least once
    for count, (step, step_labels) in enumerate(seen):
        assert step == count % order.shape[0]
        assert step_labels == labels[order[step]].tolist()
    assert all(trained)
