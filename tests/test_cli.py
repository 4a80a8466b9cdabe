"""The command line as a user meets it: help, doctor, clear errors instead of tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from harness.cli import main


def test_python_m_harness_and_help(capsys):
    """`python -m harness --help` as a user starts it (a process of its own), then every
    subcommand's --help through the same main() in this process (a Python start each cost
    a dozen of them seconds of test-fast; the entry point is what the subprocess is for)."""
    # -X importtime lists every module the process imported (stderr): --help must not pay for
    # the heavy ones the commands themselves need
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not imported & {"pandas", "scipy", "matplotlib", "paramiko", "pydantic", "pyarrow"}, imported
    # The subcommands as argparse lists them ({build,run,...}), not words of the description.
    listed = set(re.search(r"\{([a-z,-]+)\}", out.stdout).group(1).split(","))
    assert {"build", "run", "reproduce", "report", "doctor"} <= listed
    for command in sorted(listed):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        sub = capsys.readouterr()
        assert exit_.value.code == 0 and sub.out.startswith(f"usage: balloon-harness {command}"), command


def test_report_of_a_non_results_folder_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not a results folder" in err and "Traceback" not in err


def test_doctor_says_which_accelerator_and_exits_zero_when_a_run_can_go(artifacts):
    proc = subprocess.run([sys.executable, "-m", "harness", "doctor"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    accel = [l for l in proc.stdout.splitlines() if l.split()[1:2] == ["accelerator"]]
    assert accel, proc.stdout
    assert "KVM usable" in accel[0] or "TCG will be used" in accel[0]
    assert "a run can go" in proc.stdout


def test_second_build_does_nothing_and_says_so(artifacts):
    proc = subprocess.run([sys.executable, "-m", "harness", "build"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("[build]")]
    assert any("cached" in l for l in lines)
    assert not any(": built (" in l for l in lines), lines  # nothing rebuilt
    assert "manifest:" in proc.stdout


def test_each_patched_artifact_is_keyed_by_its_own_patches_only(artifacts):
    from harness.artifacts.patches import GUEST_PATCHES, QEMU_PATCHES, Series
    assert set(artifacts.inputs["patched_qemu"]["patches"]) == {p.name for p in Series.load(QEMU_PATCHES).patches}
    assert set(artifacts.inputs["patched_module"]["patches"]) == {p.name for p in Series.load(GUEST_PATCHES).patches}
    import json
    manifest = json.loads(artifacts.manifest.read_text())
    assert manifest["inputs"]["patched_qemu"]["configure"][0] == "--target-list=x86_64-softmmu"
    assert manifest["guest_kernel"]["version"] == artifacts.kernel.version
