"""The installed package works from a wheel in a fresh virtual environment,
not only from the checkout: the grammar and the NumPy runtime must ship inside the wheel."""

import shutil
import subprocess
import sys
import venv
import zipfile

from conftest import ROOT, SPECS


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
    )
    (wheel,) = dist.glob("archc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "archc/grammar/arch.lark" in names
    assert "archc/codegen/runtime/numpy_kernels.py" in names

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)
    work = tmp_path / "elsewhere"  # away from the checkout, so only the installed files are used
    work.mkdir()
    shutil.copy(SPECS / "lenet5.arch", work)
    run = subprocess.run([str(env / "bin" / "archc"), "table", "lenet5.arch"], cwd=work, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Total params 61,706" in run.stdout
    # code generation reads the NumPy layer functions from the installed package
    run = subprocess.run(
        [str(env / "bin" / "archc"), "codegen", "lenet5.arch", "--target", "numpy", "-o", "model.py"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "def conv(" in (work / "model.py").read_text()
