"""Issue 19, the parts that need no build: arms naming source trees are parsed and refused
like any other key, a tree is identified by its content (git or a plain folder, dirty or
not) and copied without being written, a fragment that turns off what the harness needs is
named, and `kernel-config` prints the fragment. The builds and boots are in
tests/test_own_trees_build.py."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest

from harness.artifacts.kernel_tree import (
    build_kernel_tree,
    fragment_text,
    missing_required,
    parse_config,
    required_symbols,
)
from harness.artifacts.needs import needs_of
from harness.artifacts.trees import KernelTree, export, identify
from harness.cli.main import main
from harness.errors import BuildError, ConfigError
from harness.experiment.scenario import BUILT_IN, OWN_TREE, load_scenario
from harness.results.identity import fingerprint

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]


def _scenario(tmp_path: Path, arm: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(f"""
name = "t"
[[steps]]
kind = "balloon"
target_mib = 624
[[arms]]
name = "mine"
{arm}
""")
    return p


def _linux_like(root: Path) -> Path:
    """A folder with a Linux tree's top-level markers (enough for the scenario's checks)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Kbuild").write_text("obj-y += init/\n")
    (root / "Kconfig").write_text("mainmenu \"t\"\n")
    return root


def _git_tree(root: Path) -> Path:
    _linux_like(root)
    (root / "init").mkdir()
    (root / "init" / "main.c").write_text("int main_c;\n")
    (root / ".gitignore").write_text("*.o\n")
    subprocess.run([*GIT, "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-q", "-m", "base"], check=True)
    return root


def _status(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--ignored"], capture_output=True,
                          text=True, check=True).stdout


# --- scenario keys ------------------------------------------------------------------------

def test_a_kernel_tree_arm_is_parsed_relative_to_the_scenario(tmp_path):
    _linux_like(tmp_path / "linux")
    (tmp_path / "extra.config").write_text("CONFIG_KSM=y\n")
    s = load_scenario(_scenario(tmp_path, 'kernel = { source = "linux", config = ["extra.config"], ref = "main" }\n'
                                          'qemu = "stock"'))
    arm = s.arm("mine")
    assert arm.kernel_tree == KernelTree(source=(tmp_path / "linux").resolve(),
                                         config=((tmp_path / "extra.config").resolve(),),
                                         ref="main")
    assert arm.kernel is None and arm.module == BUILT_IN
    needs = needs_of(s.arms)["bookworm"]
    assert needs.kernel_trees == frozenset({arm.kernel_tree})
    assert not needs.wants_module("patched") and not needs.wants_module("stock")   # nothing Debian-built


def test_a_scenario_chooses_the_minimal_kernel_for_every_arm_naming_no_kernel_or_module(tmp_path):
    _linux_like(tmp_path / "linux")
    p = tmp_path / "s.toml"
    p.write_text("""
name = "t"
kernel = { source = "linux" }
[[steps]]
kind = "balloon"
target_mib = 624
[[arms]]
name = "mine-off"
device = { thp-order = "off" }
[[arms]]
name = "mine-on"
device = { thp-order = "on" }
[[arms]]
name = "debian"
qemu = "stock"
module = "stock"
""")
    s = load_scenario(p)
    tree = KernelTree(source=(tmp_path / "linux").resolve())
    assert s.arm("mine-off").kernel_tree == s.arm("mine-on").kernel_tree == tree
    assert s.arm("mine-on").module == BUILT_IN and s.arm("debian").kernel_tree is None
    assert s.arm("debian").module == "stock"
    p.write_text(p.read_text().replace('source = "linux"', 'source = "nowhere"'))
    with pytest.raises(ConfigError, match=r"s.toml: kernel.source: .*no such folder"):
        load_scenario(p)


def test_a_qemu_tree_arm_builds_no_stack_qemu(tmp_path):
    q = tmp_path / "qemu"
    q.mkdir()
    (q / "configure").write_text("#!/bin/sh\n")
    s = load_scenario(_scenario(tmp_path, 'qemu = { source = "qemu" }\nmodule = "stock"'))
    arm = s.arm("mine")
    assert arm.qemu == OWN_TREE and arm.qemu_tree is not None and arm.qemu_tree.source == q.resolve()
    needs = needs_of(s.arms)["bookworm"]
    assert needs.qemu_trees == frozenset({arm.qemu_tree})
    assert not needs.wants_qemu("stock") and not needs.wants_qemu("patched")


@pytest.mark.parametrize("what, make, reason", [
    ("missing", lambda p: None, "no such folder"),
    ("a file", lambda p: p.write_text("x"), "not a folder"),
    ("an empty folder", lambda p: p.mkdir(), "not a Linux source tree (it has no Kbuild at its top)"),
])
def test_a_kernel_source_that_is_not_a_tree_is_refused_naming_key_and_reason(tmp_path, what, make, reason):
    make(tmp_path / "linux")
    with pytest.raises(ConfigError) as e:
        load_scenario(_scenario(tmp_path, 'kernel = { source = "linux" }'))
    assert "arms[0].kernel.source" in str(e.value) and reason in str(e.value), str(e.value)


def test_a_qemu_source_that_is_a_linux_tree_is_refused(tmp_path):
    _linux_like(tmp_path / "linux")
    with pytest.raises(ConfigError, match=r"arms\[0\].qemu.source: .*not a QEMU source tree"):
        load_scenario(_scenario(tmp_path, 'qemu = { source = "linux" }'))


@pytest.mark.parametrize("arm, message", [
    ('kernel = { source = "linux" }\nmodule = "stock"', r"arms\[0\].module: a kernel built from a source tree"),
    ('kernel = { source = "linux", config = ["nope.config"] }', r"arms\[0\].kernel.config\[0\]: .*does not exist"),
    ('kernel = { source = "linux", flavour = "x" }', r"arms\[0\].kernel.flavour: unknown key"),
    ('kernel = { source = "linux", ref = "" }', r"arms\[0\].kernel.ref: must be a git ref"),
])
def test_bad_tree_tables_are_refused(tmp_path, arm, message):
    _linux_like(tmp_path / "linux")
    with pytest.raises(ConfigError, match=message):
        load_scenario(_scenario(tmp_path, arm))


def test_building_a_path_that_is_not_a_tree_says_so(tmp_path):
    with pytest.raises(ConfigError, match="not a Linux source tree"):
        build_kernel_tree(KernelTree(source=tmp_path))


def test_a_tree_built_in_place_is_refused_before_kbuild_does(tmp_path, monkeypatch):
    """Kbuild's out-of-tree build refuses a tree with a .config; the harness says what to do."""
    monkeypatch.setenv("BALLOON_HARNESS_CACHE", str(tmp_path / "cache"))
    tree = _git_tree(tmp_path / "linux")
    (tree / ".config").write_text("CONFIG_64BIT=y\n")
    with pytest.raises(BuildError, match=r"built in place \(\.config exists\).*make mrproper.*or give a `ref`"):
        build_kernel_tree(KernelTree(source=tree))
    assert not list((tmp_path / "cache" / "kernel-tree").glob("*/bzImage"))


# --- a tree's identity ----------------------------------------------------------------------

def test_a_git_tree_is_identified_by_content_and_its_uncommitted_changes(tmp_path):
    tree = _git_tree(tmp_path / "a")
    clean = identify(tree)
    assert clean.kind == "git" and not clean.dirty and clean.changes is None
    assert clean.content == subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD^{tree}"],
                                           capture_output=True, text=True).stdout.strip()
    # the same content in another clone is the same build; a path is no part of the key
    other = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(tree), str(other)], check=True)
    assert identify(other).key == clean.key

    (tree / "init" / "main.c").write_text("int main_c = 1;\n")
    edited = identify(tree)
    assert edited.dirty and edited.key != clean.key and edited.content == clean.content
    (tree / "init" / "new.c").write_text("int n;\n")         # untracked, not ignored: part of it
    untracked = identify(tree)
    assert untracked.dirty and untracked.key != edited.key
    (tree / "init" / "main.o").write_text("object")          # ignored: not part of it
    assert identify(tree).key == untracked.key
    # a ref is the committed content, whatever the work tree holds
    at_ref = identify(tree, "main")
    assert at_ref.content == clean.content and not at_ref.dirty and at_ref.key == clean.key


def test_a_plain_folder_is_identified_by_a_content_hash(tmp_path):
    tree = _linux_like(tmp_path / "src")
    first = identify(tree)
    assert first.kind == "dir" and not first.dirty
    (tree / "Kbuild").write_text("obj-y += mm/\n")
    assert identify(tree).key != first.key
    with pytest.raises(ConfigError, match="needs a git work tree"):
        identify(tree, "main")


def test_an_unknown_ref_is_named(tmp_path):
    tree = _git_tree(tmp_path / "a")
    with pytest.raises(ConfigError, match="'no-such-branch' names no commit"):
        identify(tree, "no-such-branch")


def test_export_copies_what_was_identified_and_never_writes_the_tree(tmp_path):
    tree = _git_tree(tmp_path / "a")
    (tree / "init" / "main.c").write_text("int edited;\n")
    (tree / "init" / "new.c").write_text("int n;\n")
    (tree / "init" / "main.o").write_text("object")
    before = _status(tree)
    work = export(identify(tree), tmp_path / "work")
    assert (work / "init" / "main.c").read_text() == "int edited;\n" and (work / "init" / "new.c").exists()
    assert not (work / "init" / "main.o").exists() and not (work / ".git").exists()
    committed = export(identify(tree, "main"), tmp_path / "ref")
    assert (committed / "init" / "main.c").read_text() == "int main_c;\n"
    assert not (committed / "init" / "new.c").exists()
    assert _status(tree) == before


# --- the configuration fragment --------------------------------------------------------------

def test_a_fragment_that_turns_off_a_required_symbol_is_named(tmp_path):
    mine = tmp_path / "mine.config"
    mine.write_text("CONFIG_VIRTIO_BALLOON=n\n# CONFIG_MEMCG is not set\nCONFIG_KSM=y\n")
    config = {**parse_config(fragment_text()), **parse_config(mine.read_text())}
    problems = missing_required(config, (mine,))
    assert len(problems) == 2, problems
    assert any(p.startswith("CONFIG_VIRTIO_BALLOON is off: turned off by") and str(mine) in p for p in problems)
    assert any(p.startswith("CONFIG_MEMCG is off: turned off by") for p in problems)
    config.pop("CONFIG_MEMCG")     # absent without a fragment saying so: a dependency, or an older kernel
    assert any("CONFIG_MEMCG is off: its dependencies are off" in p for p in missing_required(config, ()))


def test_the_fragment_asks_for_everything_the_issue_lists():
    required = set(required_symbols())
    for sym in ("VIRTIO_PCI", "VIRTIO_NET", "VIRTIO_BALLOON", "VIRTIO_MEM", "PAGE_REPORTING",
                "TRANSPARENT_HUGEPAGE", "COMPACTION", "BALLOON_COMPACTION", "MEMORY_HOTPLUG",
                "MEMORY_HOTREMOVE", "CGROUPS", "MEMCG", "PROC_PAGE_MONITOR", "PROC_FS", "SYSFS",
                "SERIAL_8250_CONSOLE", "BLK_DEV_INITRD"):
        assert f"CONFIG_{sym}" in required, sym


def test_kernel_config_prints_the_fragment():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["kernel-config"]) == 0
    assert out.getvalue() == fragment_text() and "make olddefconfig" in out.getvalue()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["kernel-config", "--required"]) == 0
    assert out.getvalue().split() == required_symbols()


def test_results_of_two_tree_contents_are_told_apart():
    def meta(content, changes=None):
        return {"own_trees": {"bookworm: kernel /home/me/linux": {"identity": {"content": content,
                                                                              "changes": changes}}}}
    assert fingerprint(meta("aaa"))["kernel trees"] == "aaa"
    assert fingerprint(meta("aaa")) != fingerprint(meta("aaa", "ddd")) != fingerprint(meta("bbb"))


def test_export_of_a_work_tree_carries_its_submodules_files(tmp_path):
    """QEMU's checkouts hold submodules (meson, keycodemapdb): a copy without them does not build."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "meson.py").write_text("print('meson')\n")
    subprocess.run([*GIT, "init", "-q", "-b", "main", str(sub)], check=True)
    subprocess.run([*GIT, "-C", str(sub), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(sub), "commit", "-q", "-m", "sub"], check=True)
    tree = _git_tree(tmp_path / "a")
    subprocess.run([*GIT, "-c", "protocol.file.allow=always", "-C", str(tree), "submodule", "add", "-q", str(sub),
                    "meson"], check=True)
    subprocess.run([*GIT, "-C", str(tree), "commit", "-q", "-m", "add meson"], check=True)
    clean = identify(tree)
    assert not clean.dirty
    work = export(clean, tmp_path / "work")
    assert (work / "meson" / "meson.py").read_text() == "print('meson')\n"
    (tree / "meson" / "meson.py").write_text("print('edited')\n")   # a change inside the submodule
    subprocess.run([*GIT, "-C", str(tree / "meson"), "commit", "-q", "-am", "edit"], check=True)
    assert identify(tree).dirty and identify(tree).key != clean.key


def test_a_failed_compile_shows_the_compilers_error_even_when_make_went_on(tmp_path):
    """make -j goes on with other files after an error: the last lines alone may not show it."""
    from harness.artifacts.steps import run_step
    script = tmp_path / "build.sh"
    script.write_text("echo 'init/main.c:3:1: error: unknown type name this'\necho ' 3 | this is not C;'\n"
                      "for i in $(seq 60); do echo \"  CC      mm/file$i.o\"; done\nexit 2\n")
    with pytest.raises(BuildError) as e:
        run_step("build", ["sh", str(script)], tmp_path / "build.log", quiet=True)
    message = str(e.value)
    assert "--- the first errors in" in message and "init/main.c:3:1: error: unknown type name this" in message
    assert message.index("error: unknown type") < message.index("--- last lines of")


# --- requirements by meaning (issue 27) -------------------------------------------------------
# tests/data/kconfig/linux-*/ hold real excerpts of Debian's linux-source 6.1, 6.12 and 7.2
# (the balloon, compaction and migration entries of mm/Kconfig, VIRTIO_BALLOON's of
# drivers/virtio/Kconfig); the whole trees are checked in tests/test_own_trees_stacks.py.

KCONFIG_DATA = Path(__file__).parent / "data" / "kconfig"
BALLOON_NEED = "the balloon core, with migration of ballooned pages (compaction moves them)"


def _balloon_requirements():
    from harness.artifacts.kernel_tree import requirements
    _, reqs = requirements()
    return [r for r in reqs if r.need in (BALLOON_NEED, "the virtio balloon driver, built in",
                                          "compaction and page migration")]


def test_every_line_of_the_fragment_belongs_to_a_requirement_and_6_1_spells_them_first():
    from harness.artifacts.kernel_tree import requirements
    header, reqs = requirements()
    assert not [line for line in header if line.startswith("CONFIG_")]
    spelled = {sym for r in reqs for spelling in r.spellings for sym, _ in spelling}
    assert {k for k in parse_config(fragment_text())} <= spelled
    balloon = next(r for r in reqs if r.need == BALLOON_NEED)
    assert balloon.spellings == ((("CONFIG_MEMORY_BALLOON", "y"), ("CONFIG_BALLOON_COMPACTION", "y")),
                                 (("CONFIG_BALLOON", "y"), ("CONFIG_BALLOON_MIGRATION", "y")))
    # the default stack's kernel (6.1): the first spellings, i.e. the file's own CONFIG_ lines
    assert required_symbols() == [k for k, v in parse_config(fragment_text()).items() if v == "y"]


@pytest.mark.parametrize("linux, core", [
    ("6.1", ["CONFIG_MEMORY_BALLOON", "CONFIG_BALLOON_COMPACTION"]),
    ("6.12", ["CONFIG_MEMORY_BALLOON", "CONFIG_BALLOON_COMPACTION"]),
    ("7.2", ["CONFIG_BALLOON", "CONFIG_BALLOON_MIGRATION"]),
])
def test_the_balloon_requirements_resolve_to_each_kernels_own_symbols(linux, core):
    from harness.artifacts.kconfig import kconfig_symbols, resolve
    tree = KCONFIG_DATA / f"linux-{linux}"
    resolved = resolve(_balloon_requirements(), kconfig_symbols(tree), str(tree))
    by_need = {r.requirement.need: [sym for sym, _ in r.spelling] for r in resolved}
    assert by_need[BALLOON_NEED] == core
    assert by_need["the virtio balloon driver, built in"] == ["CONFIG_VIRTIO_BALLOON"]
    assert by_need["compaction and page migration"] == ["CONFIG_COMPACTION", "CONFIG_MIGRATION"]


def _without(tree: Path, dest: Path, symbols: set[str]) -> Path:
    """A scratch copy of ``tree`` with the ``config`` entries of ``symbols`` cut from mm/Kconfig."""
    import shutil
    shutil.copytree(tree, dest)
    kconfig = dest / "mm" / "Kconfig"
    out, skipping = [], False
    for line in kconfig.read_text().splitlines():
        if line.startswith("config "):
            skipping = line.split()[1] in symbols
        elif line and not line[0].isspace():
            skipping = False
        if not skipping:
            out.append(line)
    kconfig.write_text("\n".join(out) + "\n")
    return dest


def test_a_tree_with_no_spelling_of_a_requirement_is_refused_naming_it_and_the_symbols_tried(tmp_path):
    from harness.artifacts.kconfig import kconfig_symbols, resolve
    tree = _without(KCONFIG_DATA / "linux-7.2", tmp_path / "linux", {"BALLOON", "BALLOON_MIGRATION"})
    assert "BALLOON" not in kconfig_symbols(tree) and "VIRTIO_BALLOON" in kconfig_symbols(tree)
    with pytest.raises(BuildError) as e:
        resolve(_balloon_requirements(), kconfig_symbols(tree), str(tree))
    message = str(e.value)
    assert f"the Kconfig of {tree} has no spelling of what the harness needs" in message
    assert (f"need {BALLOON_NEED}: tried CONFIG_MEMORY_BALLOON + CONFIG_BALLOON_COMPACTION (none defined); "
            f"CONFIG_BALLOON + CONFIG_BALLOON_MIGRATION (none defined)") in message, message
    assert "virtio balloon driver" not in message       # only what is lacking is named


def test_half_a_spelling_is_refused_naming_the_symbol_it_lacks(tmp_path):
    from harness.artifacts.kconfig import kconfig_symbols, resolve
    tree = _without(KCONFIG_DATA / "linux-7.2", tmp_path / "linux", {"BALLOON_MIGRATION"})
    with pytest.raises(BuildError, match=r"CONFIG_BALLOON \+ CONFIG_BALLOON_MIGRATION \(no CONFIG_BALLOON_MIGRATION\)"):
        resolve(_balloon_requirements(), kconfig_symbols(tree), str(tree))


def test_kernel_config_tree_refuses_a_tree_lacking_requirements_on_one_line_each(tmp_path, capsys):
    tree = _without(KCONFIG_DATA / "linux-7.2", tmp_path / "linux", {"BALLOON", "BALLOON_MIGRATION"})
    assert main(["kernel-config", "--tree", str(tree)]) == 1
    err = capsys.readouterr().err
    assert f"need {BALLOON_NEED}: tried CONFIG_MEMORY_BALLOON + CONFIG_BALLOON_COMPACTION" in err
    # the excerpt has no PCI, TTY, ...: each requirement it lacks has its own line
    assert "\n  need the serial console, with timestamps: tried CONFIG_PRINTK + " in err, err
    assert main(["kernel-config", "--tree", str(tmp_path / "nowhere")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_kconfig_symbols_skip_help_texts_and_other_architectures(tmp_path):
    from harness.artifacts.kconfig import kconfig_symbols, symbols_in
    text = ("config REAL\n\tbool \"real\"\n\thelp\n\t  Unlike the old\n\t  config BALLOON\n\n"
            "\t  entry, this one...\n\nmenuconfig AFTER_HELP\n\tbool\n  config INDENTED # a comment\n")
    assert symbols_in(text) == {"REAL", "AFTER_HELP", "INDENTED"}
    _linux_like(tmp_path / "t")
    for arch, sym in (("x86", "X86_ONLY"), ("arm64", "ARM64_ONLY")):
        (tmp_path / "t" / "arch" / arch).mkdir(parents=True)
        (tmp_path / "t" / "arch" / arch / "Kconfig").write_text(f"config {sym}\n\tdef_bool y\n")
    (tmp_path / "t" / "Kconfig.debug").write_text("config DEBUG_X\n\tbool\n")
    assert kconfig_symbols(tmp_path / "t") == {"X86_ONLY", "DEBUG_X"}


def test_a_fragment_line_outside_any_requirement_is_refused():
    from harness.artifacts.kconfig import parse_requirements
    with pytest.raises(ConfigError, match=r"f:2: CONFIG_X=y belongs to no requirement"):
        parse_requirements("# header\nCONFIG_X=y\n", "f")
    with pytest.raises(ConfigError, match=r"f:3: 'BALLOON=y' is not CONFIG_NAME=value"):
        parse_requirements("# need: x\nCONFIG_X=y\n# or: BALLOON=y\n", "f")
