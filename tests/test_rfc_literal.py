"""The RFC's own workload line, copied as a new user would: `usemem --punch-holes -d -s -1
800m` as a `run` step, with a usemem that detaches the way vm-scalability's does.

vm-scalability's usemem -d writes its memory, then forks: the parent exits (so the
command returns), the child punches the holes and prints "punch holes done" to the stdout
it inherited, after its parent is gone, then sleeps. On the SSH channel that print killed
it, and the baseline scored an idle guest's 1.01 with exit 0. The harness now runs the
command in its own cgroup with its output in a log: the child lives, is watched, and the
baseline shows the RFC's effect (more than 1.3 MiB of host THP lost per ballooned MiB).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_scenario_cli
from toml_text import RFC_TIMING, arm, preamble, rfc_steps

from harness.results import load_results

pytestmark = [pytest.mark.vm, pytest.mark.slow]

# Our own stand-in for vm-scalability's usemem (its detach behaviour, not its code):
# usemem [--punch-holes] [-d] [-s SEC] SIZE[m].
VMSCALABILITY_STYLE_USEMEM_C = r"""
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/time.h>
int main(int argc, char **argv) {
    static const struct option opts[] = {{"punch-holes", 0, NULL, 'H'}, {NULL, 0, NULL, 0}};
    int c, holes = 0, detach = 0; long secs = 0;
    while ((c = getopt_long(argc, argv, "ds:", opts, NULL)) != -1) {
        if (c == 'H') holes = 1;
        else if (c == 'd') detach = 1;
        else if (c == 's') secs = atol(optarg);
        else return 2;
    }
    if (optind != argc - 1) return 2;
    char *end; unsigned long bytes = strtoul(argv[optind], &end, 0);
    if (*end == 'm' || *end == 'M') bytes <<= 20;
    long page = sysconf(_SC_PAGESIZE);
    struct timeval t0, t1; gettimeofday(&t0, NULL);
    volatile unsigned long *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    for (unsigned long i = 0; i < bytes / sizeof(long); i++) p[i] = i;
    gettimeofday(&t1, NULL);
    unsigned long us = (t1.tv_sec - t0.tv_sec) * 1000000UL + (t1.tv_usec - t0.tv_usec);
    printf("%lu bytes / %lu usecs = %lu KB/s\n", bytes, us, (bytes * 1000000ULL >> 10) / (us ? us : 1));
    fflush(stdout);
    if (detach && fork() > 0) return 0;          /* the parent: the command returns here */
    if (holes) {
        for (unsigned long off = 0; off + 2 * page <= bytes; off += 2 * page)
            madvise((char *)p + off, page, MADV_DONTNEED);
        printf("punch holes done\n");             /* printed after the parent exited */
        fflush(stdout);
    }
    if (secs < 0) for (;;) pause();
    sleep(secs);
    return 0;
}
"""

def scenario_text(usemem: Path) -> str:
    """The RFC's experiment as its cover letter ran it: a detached usemem (its own binary),
    one arm, the patched QEMU with thp-order off."""
    return (preamble("rfc-literal", memory_mib=1024, files={"/usr/bin/usemem": usemem},
                     vm={"vcpus": 1, "guest_thp": "always"},
                     timing={**RFC_TIMING, "balloon_timeout_seconds": 300})
            + rfc_steps("usemem --punch-holes -d -s -1 800m", kind="run")
            + arm("baseline", "patched", "patched", device={"thp-order": "off"}))


@pytest.fixture(scope="module")
def literal_results(tmp_path_factory, artifacts):
    tmp = tmp_path_factory.mktemp("rfc-literal")
    (tmp / "usemem.c").write_text(VMSCALABILITY_STYLE_USEMEM_C)
    subprocess.run(["cc", "-static", "-O2", "-o", str(tmp / "usemem"), str(tmp / "usemem.c")], check=True)
    return run_scenario_cli(tmp, scenario_text(tmp / "usemem"))


def test_the_detached_usemem_lives_is_watched_and_measured(literal_results):
    proc, out = literal_results
    res = load_results(out)
    assert proc.returncode == 0, proc.stderr
    log = (out / "runs/baseline-r1/steps/usemem.log").read_text()
    assert "KB/s" in log and "punch holes done" in log   # the second line came after its parent exited
    wl = res.runs[0]["workloads"]
    assert [w["label"] for w in wl] == ["usemem"] and wl[0]["kind"] == "run"
    # 800 MiB written, every other page punched out: about 400 MiB stay, in its own cgroup
    assert all(r["anon_kib"] >= 380 * 1024 for r in wl[0]["readings"])


def test_the_baseline_shows_the_rfcs_effect(literal_results):
    _, out = literal_results
    s = load_results(out).summary
    row = s[s["step"] == "balloon 624"].iloc[0]
    assert row["reached"] and row["workloads_after"] == 1
    assert row["workload_anon_after_kib"] >= 380 * 1024
    assert row["thp_lost_per_ballooned_mib"] > 1.3, row.to_dict()
