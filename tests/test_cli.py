"""The archc command as a user runs it: output, exit codes, formats."""

import csv
import io
import json
import subprocess
import sys

from conftest import SPECS

LENET = str(SPECS / "lenet5.arch")


def archc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True, cwd=cwd)


def test_check_valid_spec_prints_a_summary():
    run = archc("check", LENET)
    assert run.returncode == 0
    assert run.stdout.strip().endswith("LeNet5 is valid: 9 layers, 61,706 params, 416,520 MACs")


def test_check_reports_errors_with_location_and_exit_1(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network N {\n  input x: 16x5x5\n  dense F5: 120\n}\n")
    run = archc("check", str(bad))
    assert run.returncode == 1
    message = "dense F5 needs a flat input or the channels last, but gets 16x5x5 with the channels first"
    assert f"{bad}:3:3: error: {message} [E0304]" in run.stderr
    assert "    3 |   dense F5: 120" in run.stderr and "^^^" in run.stderr
    assert "Traceback" not in run.stderr


def test_check_json_diagnostics(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network N {\n  input x: 3x8x8\n  maxpoo: 2x2\n}\n")
    run = archc("check", str(bad), "--format", "json")
    assert run.returncode == 1
    (diag,) = json.loads(run.stdout)["diagnostics"]
    assert (diag["line"], diag["col"], diag["code"]) == (3, 3, "E0201")
    assert diag["help"] == ["did you mean `maxpool`?"]


def test_usage_errors_exit_2():
    assert archc("table").returncode == 2
    assert archc("table", LENET, "--format", "xml").returncode == 2
    assert archc("table", LENET, "--columns", "name,bogus").returncode == 2
    assert archc("table", LENET, "--input", "axb").returncode == 2
    assert archc("table", LENET, "--batch", "0").returncode == 2


def test_missing_file_is_a_clear_error():
    run = archc("check", "no/such.arch")
    assert run.returncode == 1 and "cannot read `no/such.arch`: no such file" in run.stderr


def test_rich_table_shows_the_lenet_activation_sizes():
    run = archc("table", LENET)
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    header = next(line for line in lines if "activation size" in line)
    end = header.index("activation size") + len("activation size")  # the column is right-aligned
    names = ("image", "C1", "S2", "C3", "S4", "flatten1", "F5", "F6", "out")
    sizes = [line[:end].split()[-1] for line in lines if line.split() and line.split()[0] in names]
    assert [int(s.replace(",", "")) for s in sizes] == [1024, 4704, 1176, 1600, 400, 400, 120, 84, 10]
    assert "Total params 61,706" in run.stdout and "MACs 416,520 (FLOPs 833,040)" in run.stdout
    assert "FLOPs = 2 x MACs" in run.stdout


def test_json_contract():
    data = json.loads(archc("table", LENET, "--format", "json").stdout)
    assert data["network"] == "LeNet5" and data["inputs"] == {"image": [1, 32, 32]}
    first = data["layers"][0]
    assert {
        k: first[k] for k in ("name", "op", "inputs", "output_shape", "params", "buffers", "macs", "activations")
    } == {
        "name": "image",
        "op": "input",
        "inputs": [],
        "output_shape": [1, 32, 32],
        "params": 0,
        "buffers": 0,
        "macs": 0,
        "activations": 1024,
    }
    totals = data["totals"]
    assert (totals["params"], totals["buffers"], totals["macs"], totals["flops"]) == (61706, 0, 416520, 833040)
    assert totals["param_bytes"] == 61706 * 4
    assert data["warnings"] == []


def test_batch_and_dtype_scale_the_bytes_only():
    one = json.loads(archc("table", LENET, "--format", "json").stdout)["totals"]
    big = json.loads(archc("table", LENET, "--format", "json", "--batch", "8", "--dtype", "float16").stdout)["totals"]
    assert big["macs"] == one["macs"] and big["activations"] == one["activations"]
    assert big["activation_bytes"] == one["activation_bytes"] // 4 * 2 * 8
    assert big["param_bytes"] == one["param_bytes"] // 2


def test_csv_and_markdown_and_columns():
    rows = list(csv.DictReader(io.StringIO(archc("table", LENET, "--format", "csv").stdout)))
    assert [r["size"] for r in rows] == ["1024", "4704", "1176", "1600", "400", "400", "120", "84", "10"]
    md = archc("table", LENET, "--format", "markdown", "--columns", "name,output,params").stdout
    assert "| layer | output | params |" in md and "| C1 | 6x28x28 | 156 |" in md


def test_input_override_and_hwc_layout():
    run = archc(
        "table", LENET, "--format", "csv", "--columns", "name,output", "--input", "image=1x36x36", "--layout", "hwc"
    )
    assert "C1,32x32x6" in run.stdout.splitlines()
    unnamed = archc("table", LENET, "--format", "csv", "--columns", "name,output", "--input", "1x36x36")
    assert unnamed.stdout == run.stdout.replace("32x32x6", "6x32x32").replace("36x36x1", "1x36x36").replace(
        "16x16x6", "6x16x16"
    ).replace("12x12x16", "16x12x12").replace("6x6x16", "16x6x6")


def test_warnings_go_to_stderr_and_keep_exit_0(tmp_path):
    spec = tmp_path / "w.arch"
    spec.write_text("network N {\n  input x: 3x7x7\n  conv c: 8 @ 3x3 /3\n}\n")
    run = archc("check", str(spec))
    assert run.returncode == 0
    assert "warning: conv c does not divide evenly" in run.stderr and "1 warning" in run.stdout


# -- codegen ------------------------------------------------------------------------


def test_codegen_prints_the_torch_module_by_default():
    run = archc("codegen", LENET)
    assert run.returncode == 0, run.stderr
    assert "class LeNet5(nn.Module):" in run.stdout
    assert "        x = torch.tanh(self.C1(x))" in run.stdout
    compile(run.stdout, "lenet5_torch.py", "exec")


def test_codegen_writes_the_numpy_module_to_a_file(tmp_path):
    out = tmp_path / "lenet5_numpy.py"
    run = archc("codegen", LENET, "--target", "numpy", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert "LeNet5 for numpy" in run.stderr
    assert out.read_text().count("\nimport ") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["lenet5_numpy.py"]  # no temporary file left


def test_codegen_at_another_input_size(tmp_path):
    run = archc("codegen", str(SPECS / "resnet18.arch"), "--input", "3x64x64", "--target", "numpy")
    assert run.returncode == 0, run.stderr
    assert "Input x: N x 3 x 64 x 64." in run.stdout


def test_codegen_of_a_bad_spec_writes_nothing_and_exits_1(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network N {\n  input x: 16x5x5\n  dense F5: 120\n}\n")
    out = tmp_path / "model.py"
    run = archc("codegen", str(bad), "-o", str(out))
    assert run.returncode == 1
    assert "error: dense F5 needs a flat input" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()


def test_codegen_to_an_unwritable_place_exits_1_and_leaves_nothing(tmp_path):
    for target in (tmp_path / "missing" / "model.py", tmp_path):
        run = archc("codegen", LENET, "-o", str(target))
        assert run.returncode == 1
        assert run.stderr.startswith(f"archc: error: cannot write `{target}`")
        assert "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_codegen_rejects_an_unknown_target():
    run = archc("codegen", LENET, "--target", "jax")
    assert run.returncode == 2
    assert "invalid choice: 'jax'" in run.stderr


def test_written_files_get_the_usual_permissions_not_a_temporary_files(tmp_path):
    out = tmp_path / "model.py"
    argv = ["codegen", LENET, "-o", str(out)]
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import os, sys; os.umask(0o022); from archc.cli import main; sys.exit(main({argv!r}))",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert out.stat().st_mode & 0o777 == 0o644
