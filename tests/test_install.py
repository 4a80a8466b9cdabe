"""``pip install`` of the project outside the repository: the wheel carries its scenarios,
image sources and patch series (harness/_data), and ``balloon-harness`` works from any folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.build  # builds a wheel and a venv: half a minute, kept out of test-fast
REPO = Path(__file__).resolve().parents[1]
_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
                                   ".ruff_cache")
_AT_THE_TOP = {"results", "build", "dist"}   # the work tree's own folders: harness/results/ is code


def SKIP(folder: str, names: list[str]) -> set[str]:
    top = _AT_THE_TOP & set(names) if Path(folder) == REPO else set()
    return set(_ANYWHERE(folder, names)) | top


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with only the wheel installed; its dependencies come from this venv's
    site-packages through a .pth file (no second download of pandas and friends)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp / "whl"), str(src)], check=True, capture_output=True)
    wheel = next((tmp / "whl").glob("balloon_harness-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps-from-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere


def test_the_wheel_carries_its_data_and_reads_it_from_the_package(installed):
    venv, elsewhere = installed
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "from harness.resources import FOLDERS, data_dir, scenario_path\n"
                          "for f in FOLDERS: print(data_dir(f))\n"
                          "print(scenario_path('rfc-v1'))"],
                         cwd=elsewhere, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(venv) in line and "/harness/_data/" in line for line in out), out
    assert Path(out[-1]).read_text().startswith("#")
    assert (Path(out[2]) / "series").exists()  # the guest patch series


def test_installed_command_runs_from_another_folder(installed):
    venv, elsewhere = installed
    cli = venv / "bin" / "balloon-harness"
    for args in (["--help"], ["reproduce", "--help"], ["run", "--help"]):
        proc = subprocess.run([str(cli), *args], cwd=elsewhere, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    # the guest kernel's fragment travels in the wheel (images/guest-kernel.config)
    proc = subprocess.run([str(cli), "kernel-config"], cwd=elsewhere, capture_output=True, text=True)
    assert proc.returncode == 0 and "CONFIG_VIRTIO_BALLOON=y" in proc.stdout, proc.stderr


def test_installed_build_uses_the_packaged_patches(installed, artifacts):
    venv, elsewhere = installed
    proc = subprocess.run([str(venv / "bin" / "balloon-harness"), "build"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    # Same patch contents, same cache keys: the installed copy finds everything built.
    assert "manifest:" in proc.stdout and ": built (" not in proc.stderr
