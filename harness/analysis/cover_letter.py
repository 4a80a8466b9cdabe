"""``balloon-harness cover-letter RESULTS...``: the results section of a patch series' cover
letter, written from results folders, so the numbers in a posting are the harness's own and
anyone can repeat them with the commands it prints.

Plain ASCII within ``width`` columns (72: what a mail client quotes without rewrapping; no
box drawing, no ANSI): per folder the scenario, its arms (stack and design) and the commands
that repeat it at the recorded harness commit; per guest stack a table of the headline
figures (median and spread, n, reached k/n, stalls, failed runs and OOM kills); the
decisions of every arm against its baseline arm, which are ``compare``'s own
(:func:`harness.analysis.compare.compare` on ``DIR:baseline DIR:arm``: the same tests,
adjustment and effect floors, nothing recomputed here); the scenario's own claims as
``check`` judges them (:func:`harness.analysis.claims.decided_sentences`); the stacks'
kernel and QEMU versions and module hashes; the host; and a closing line on how to repeat
it. Several folders (one per stack, say) make one section: a table per stack, whichever
folder its arms come from.

Text only: :mod:`harness.cli.analysis` writes it.
"""

from __future__ import annotations

import math
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.analysis.claims import decided_sentences
from harness.analysis.compare import PRIMARY, Comparison, Side, compare
from harness.analysis.decide import N_TOO_SMALL
from harness.analysis.defaults import CONFIDENCE, COVER_WIDTH, DEFAULT_ALPHA, RATIO
from harness.analysis.expectations import primary_of
from harness.analysis.groups import HEADLINE_METRICS, REACHED_FRACTION, fmt_metric, fmt_metric_spread, summary_stats
from harness.analysis.report import stopped_short
from harness.errors import HarnessError
from harness.render.numbers import fmt_p
from harness.render.text import text_table
from harness.results.folder import ResultsFolder, open_folder, ordered
from harness.results.metrics import METRICS, MOVE_KINDS, TABLE_KINDS
from harness.results.provenance import UNRECORDED, Host, Provenance, provenance

WIDTH = COVER_WIDTH
MIN_WIDTH = 60
SHORT_FLAG = "!"
RATIOS = (RATIO, "thp_lost_per_returned_mib")     # the figures a stop-short run flatters
SHA_CHARS = 12
# What a posting may carry: ASCII. Characters the scenarios' texts and the number formats
# use, spelled in ASCII; anything else becomes "?".
ASCII_SPELLINGS = {"\u00d7": "x", "\u2264": "<=", "\u2265": ">=", "\u2013": "-", "\u2014": "-", "\u2212": "-",
                   "\u2026": "...", "\u00b7": "*", "\u221e": "inf", "\u2018": "'", "\u2019": "'", "\u201c": '"',
                   "\u201d": '"', "\u2192": "->", "\u00b5": "u", "\u00a0": " "}


@dataclass(frozen=True)
class Entry:
    """One arm of one folder: a column of its stack's table."""

    folder: ResultsFolder
    prov: Provenance
    arm: str
    label: str

    @property
    def stack(self) -> str:
        return self.prov.arms[self.arm].stack


def ascii_text(text: str) -> str:
    """``text`` in ASCII: the usual typographic characters spelled out, accents dropped,
    anything else "?"."""
    out = []
    for ch in text:
        if ord(ch) < 128:
            out.append(ch)
            continue
        spelled = ASCII_SPELLINGS.get(ch)
        if spelled is None:
            spelled = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"
        out.append(spelled)
    return "".join(out)


def fit(lines: Sequence[str], width: int) -> list[str]:
    """Every line within ``width`` columns: a longer one (a long path, a wide table at a
    narrow width) is wrapped at spaces, and a word longer than the line is cut."""
    out: list[str] = []
    for line in lines:
        if len(line) <= width:
            out.append(line.rstrip())
            continue
        indent = " " * min(len(line) - len(line.lstrip()) + 4, width // 2)
        out += textwrap.wrap(line, width=width, subsequent_indent=indent, break_on_hyphens=False,
                             break_long_words=True, drop_whitespace=True)
    return out


def wrap(text: str, width: int, indent: str = "", subsequent: Optional[str] = None) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent,
                         subsequent_indent=indent if subsequent is None else subsequent,
                         break_on_hyphens=False, break_long_words=False) or [indent.rstrip()]


def shell_lines(words: Sequence[str], width: int, indent: str = "  $ ") -> list[str]:
    """A command as shell lines within ``width``: continued with `` \\`` where it must break,
    never between an option and its value."""
    tokens: list[str] = []
    for w in words:
        if tokens and tokens[-1].startswith("--") and " " not in tokens[-1] and not w.startswith("-"):
            tokens[-1] += " " + w
        else:
            tokens.append(w)
    lines, current = [], indent + tokens[0]
    for w in tokens[1:]:
        if len(current) + 1 + len(w) + 2 > width:
            lines.append(current + " \\")
            current = " " * (len(indent) + 4) + w
        else:
            current += " " + w
    return lines + [current]


def short_sha(sha: Optional[str]) -> str:
    """A commit or a SHA-256 cut to its first 12 characters (``-dirty`` kept); a sentence
    (``unknown (harness 0.1.0, ...)``) as it is."""
    if not sha:
        return UNRECORDED
    head, dirty = (sha[:-6], "-dirty") if sha.endswith("-dirty") else (sha, "")
    return sha if " " in head else head[:SHA_CHARS] + dirty


# --- opening the folders --------------------------------------------------------------------

def open_results(paths: Sequence[str | Path]) -> list[ResultsFolder]:
    """The folders, each refused in one line when it is not a results folder or has no
    finished run (nothing to report)."""
    if not paths:
        raise HarnessError("cover-letter needs at least one results folder")
    folders = []
    for p in paths:
        f = open_folder(p)
        if not f.runs or f.summary.empty:
            failed = f" ({len(f.failed)} failed)" if f.failed else ""
            raise HarnessError(f"{f.path}: no finished runs{failed}: nothing to put in a cover letter")
        folders.append(f)
    return folders


def entries_of(folders: Sequence[ResultsFolder], provs: Sequence[Provenance]) -> list[Entry]:
    """Every arm of every folder, labelled by its name (with the folder's number when two
    folders hold an arm of that name)."""
    arms = [(f, p, a) for f, p in zip(folders, provs) for a in f.arm_order()]
    names = [a for _, _, a in arms]
    number = {id(f): i for i, f in enumerate(folders, 1)}
    return [Entry(f, p, a, a if names.count(a) == 1 else f"{a} [{number[id(f)]}]") for f, p, a in arms]


def by_stack(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.stack, []).append(e)
    return groups


def tables_of(entries: Sequence[Entry]) -> dict[tuple[str, str], list[Entry]]:
    """The entries of each table: a stack's arms, and of one scenario when the folders
    hold several (their steps and figures differ)."""
    several = len({e.prov.scenario for e in entries}) > 1
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.stack, e.prov.scenario if several else ""), []).append(e)
    return groups


def baselines_of(entries: Sequence[Entry], names: Sequence[str]) -> dict[int, Entry]:
    """Each entry's baseline (by ``id``): the named arm on its stack, in its own folder if
    that folder has one; without names, the first arm of its stack in its folder. An entry
    that is its own baseline, or whose stack has none, is left out."""
    known = {e.arm for e in entries}
    unknown = [n for n in names if n not in known]
    if unknown:
        arms = ", ".join(dict.fromkeys(e.arm for e in entries))
        raise HarnessError(f"--baseline {unknown[0]}: no such arm with results (arms: {arms})")
    out: dict[int, Entry] = {}
    for group in by_stack(entries).values():
        for e in group:
            same_folder = [b for b in group if b.folder is e.folder]
            if names:
                candidates = [b for b in same_folder if b.arm in names] or [b for b in group if b.arm in names]
            else:
                candidates = same_folder[:1]
            if candidates and candidates[0] is not e:
                out[id(e)] = candidates[0]
    return out


# --- the figures ----------------------------------------------------------------------------

def figures_of(folder: ResultsFolder) -> list[str]:
    """The figures a table shows: the headline ones, then the scenario's deciding ones."""
    primary = [m for m in primary_of(folder) if m != REACHED_FRACTION]
    return list(dict.fromkeys([m for m in HEADLINE_METRICS if m != REACHED_FRACTION] + primary))


def _stats(folder: ResultsFolder, metrics: list[str]) -> pd.DataFrame:
    s = folder.summary
    s = s[s["kind"].isin(TABLE_KINDS)] if "kind" in s.columns else s
    arms, steps = folder.order()
    return summary_stats(s, arms, steps, metrics=[m for m in metrics if m in s.columns])


def _steps(entries: Sequence[Entry]) -> list[str]:
    steps: list[str] = []
    for e in entries:
        s = e.folder.summary
        s = s[s["kind"].isin(TABLE_KINDS)] if "kind" in s.columns else s
        _, st = ordered(s, e.folder.scenario.arms, e.folder.scenario.steps)
        steps += [x for x in st if x not in steps and (s["arm"] == e.arm).any()]
    return steps


def _step_rows(entries: Sequence[Entry], step: str, stats: dict[int, pd.DataFrame],
               metrics: list[str]) -> tuple[list[tuple[str, list[str]]], bool]:
    """One step's rows (a label, a cell per entry): runs, reached, each figure measured by
    some arm, stalled moves; True when a ratio is flagged as earned by stopping short."""
    sts, rows_of = [], []
    for e in entries:
        st, s = stats[id(e.folder)], e.folder.summary
        sts.append(st[(st["arm"] == e.arm) & (st["step"] == step)])
        rows_of.append(s[(s["arm"] == e.arm) & (s["step"] == step)])
    rows = [("runs (n)", [str(len(r)) if len(r) else "-" for r in rows_of])]
    if any(not st.empty and int(st.iloc[0]["reached_n"]) for st in sts):
        rows.append(("reached", [f"{int(st.iloc[0]['reached_k'])}/{int(st.iloc[0]['reached_n'])}"
                                 if not st.empty and int(st.iloc[0]["reached_n"]) else "-" for st in sts]))
    short = [stopped_short(st) for st in sts]
    flagged = False
    for m in metrics:
        row = []
        for st, s_short in zip(sts, short):
            r = st[st["metric"] == m]
            cell = fmt_metric_spread(m, r.iloc[0]) if not r.empty else "-"
            if m in RATIOS and s_short and cell != "-":
                cell += SHORT_FLAG
                flagged = True
            row.append(cell)
        if any(c != "-" for c in row):
            rows.append((METRICS[m].header, row))
    kinds = {str(k) for r in rows_of for k in r.get("kind", pd.Series(dtype=object)).dropna()}
    if kinds & set(MOVE_KINDS):
        rows.append(("stalled moves", [_stalls(e, step) for e in entries]))
    return rows, flagged


def stack_table(entries: Sequence[Entry], width: int) -> tuple[list[str], bool]:
    """The stack's table: a block per step, a row per figure, a column per arm (the arms in
    several blocks when they do not fit the width). True when a ratio is flagged."""
    folders = {id(e.folder): e.folder for e in entries}
    stats = {key: _stats(f, figures_of(f)) for key, f in folders.items()}
    metrics: list[str] = list(dict.fromkeys(m for e in entries for m in figures_of(e.folder)))
    lines: list[str] = []
    flagged = False
    for step in _steps(entries):
        rows, short = _step_rows(entries, step, stats, metrics)
        flagged |= short
        lines += ([""] if lines else []) + [f"at step {step!r}:"]
        lines += _side_by_side(rows, [e.label for e in entries], width)
    failed = [f"{e.label} {_failed(e)}" for e in entries if e.prov.failed.get(e.arm)]
    lines += [""] + wrap("failed runs (OOM kills among them): " + ("; ".join(failed) if failed else "none"),
                         width, "", "    ")
    return lines, flagged


def _stalls(e: Entry, step: str) -> str:
    i = e.prov.incidents.get((e.arm, step))
    if i is None or not i.moves:
        return "-"
    return f"{i.stalled}/{i.moves}" + (f" +{i.timeouts} timeout" if i.timeouts else "")


def _failed(e: Entry) -> str:
    failed, oom = len(e.prov.failed.get(e.arm, [])), len(e.prov.oom.get(e.arm, []))
    return f"{failed} ({oom})"


def _side_by_side(rows: list[tuple[str, list[str]]], labels: list[str], width: int) -> list[str]:
    """The rows with as many arm columns per block as fit ``width``."""
    label_w = max(len(r) for r, _ in rows)
    col_w = [max([len(labels[i])] + [len(cells[i]) for _, cells in rows]) for i in range(len(labels))]
    blocks: list[list[int]] = []
    current: list[int] = []
    used = 2 + label_w
    for i, w in enumerate(col_w):
        if current and used + 2 + w > width:
            blocks.append(current)
            current, used = [], 2 + label_w
        current.append(i)
        used += 2 + w
    blocks.append(current)
    out: list[str] = []
    for k, block in enumerate(blocks):
        table = text_table(["figure"] + [labels[i] for i in block],
                           [[r] + [cells[i] for i in block] for r, cells in rows], left=1)
        out += ([""] if k else []) + ["  " + line for line in table.splitlines()]
    return out


# --- the decisions --------------------------------------------------------------------------

def _ci(metric: str, lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unbounded"
    return f"{fmt_metric(metric, lo)}..{fmt_metric(metric, hi)}"


def decisions(entries: Sequence[Entry], baselines: dict[int, Entry], alpha: float,
              width: int) -> list[str]:
    """Each arm against its baseline as ``compare`` decides it: the deciding figures' rows."""
    lines: list[str] = []
    short_needed: dict[int, list[str]] = {}
    for e in entries:
        b = baselines.get(id(e))
        if b is None:
            continue
        try:
            c = compare(Side(b.folder, b.arm), Side(e.folder, e.arm), alpha=alpha)
        except HarnessError as err:
            lines += wrap(f"{e.label} against {b.label}: no decision: {err}", width, "", "    ")
            continue
        lines += comparison_block(c, e, b, width, short_needed)
    if short_needed:
        needed = "; ".join(f"{k} runs per arm for {', '.join(dict.fromkeys(v))}"
                           for k, v in sorted(short_needed.items()))
        lines += [""] + wrap(f"n too small: the runs cannot reach alpha however large the effect; {needed}",
                             width, "", "    ")
    return lines


def comparison_block(c: Comparison, e: Entry, b: Entry, width: int,
                     short_needed: dict[int, list[str]]) -> list[str]:
    """One comparison's deciding rows, a table per step (its name above it when several)."""
    rows = c.rows[c.rows["role"] == PRIMARY] if not c.rows.empty else c.rows
    holm = next((a for a in rows["adjustment"] if a), "") if not rows.empty else ""
    head = (f"{e.label} against {b.label}" + (f" ({e.stack})" if e.stack != UNRECORDED else "")
            + (f", {holm}" if holm else "") + ":")
    out = [""] + wrap(head, width, "", "    ")
    out += shell_lines(["balloon-harness", "compare", f"{b.folder.path.name}:{b.arm}",
                        f"{e.folder.path.name}:{e.arm}"], width, "  $ ")
    if rows.empty:
        return out + ["  (no deciding figure measured on both sides)"]
    steps = list(dict.fromkeys(rows["step"]))
    for step in steps:
        body = []
        for r in rows[rows["step"] == step].itertuples():
            name = "reached" if r.metric == REACHED_FRACTION else METRICS[r.metric].short
            body.append([name, fmt_metric(r.metric, r.median_a), fmt_metric(r.metric, r.median_b),
                         fmt_metric(r.metric, r.shift), _ci(r.metric, r.ci_low, r.ci_high), fmt_p(r.p_adjusted),
                         r.verdict])
            if r.verdict == N_TOO_SMALL and r.reps_needed:
                short_needed.setdefault(int(r.reps_needed), []).append(f"{e.label} {name}")
        table = text_table(["figure", "base", "arm", "shift", f"{CONFIDENCE:.0%} CI", "p adj", "decision"],
                           body, left=1, last_left=True)
        out += ([f"  at step {step!r}:"] if len(steps) > 1 else []) + ["  " + line for line in table.splitlines()]
    return out


# --- provenance -----------------------------------------------------------------------------

def folder_block(i: int, f: ResultsFolder, p: Provenance, width: int) -> list[str]:
    """The folder: scenario, runs, arms with their designs, the commands that repeat it."""
    per_arm = f.summary.groupby("arm")["run_id"].nunique().to_dict() if "run_id" in f.summary.columns else {}
    counts = list(dict.fromkeys(per_arm.get(a, 0) for a in p.arms))
    runs = str(counts[0]) if len(counts) == 1 else ", ".join(str(per_arm.get(a, 0)) for a in p.arms)
    head = f"[{i}] scenario {p.scenario}" + (f": {p.description}" if p.description else "")
    out = wrap(head, width, "", "    ")
    failed = sum(len(v) for v in p.failed.values())
    out += wrap(f"folder {f.path.name}: {len(f.runs)} finished runs ({runs} per arm), {failed} failed; "
                f"started {p.created or UNRECORDED}; harness {short_sha(p.harness_revision)}",
                width, "    ")
    label_w = max(len(a) for a in p.arms)
    for name, a in p.arms.items():
        out += wrap(f"{name.ljust(label_w)}  {a.stack}: {a.design}", width, "    ", " " * (6 + label_w))
    rev = p.harness_revision or ""
    out.append("    to repeat it:")
    if rev and not rev.startswith("unknown"):
        out += shell_lines(["git", "checkout", short_sha(rev).removesuffix("-dirty")], width, "      $ ")
        if rev.endswith("-dirty"):
            out += wrap("(the harness had uncommitted changes: the checkout is not exactly what ran)",
                        width, "        ")
    elif rev:
        out += wrap(f"(harness revision {rev})", width, "        ")
    if p.scenario_file:
        out += shell_lines(["balloon-harness", "build", "--scenario", p.scenario_file], width, "      $ ")
    out += shell_lines(p.run_command, width, "      $ ")
    if not p.scenario_file:
        out += wrap(f"(the scenario's text as it ran: {f.path.name}/scenario.toml)", width, "        ")
    return out


def stacks_block(entries: Sequence[Entry], width: int) -> list[str]:
    """Per stack: guest kernel, QEMU, and each design's builds (module and QEMU hashes)."""
    out: list[str] = []
    for stack, group in by_stack(entries).items():
        build = group[0].prov.stacks.get(stack)
        kernel = build.kernel if build and build.kernel else UNRECORDED
        qemu_src = (f", QEMU {build.qemu_tree}" if build and build.qemu_tree
                    else f", QEMU source {build.qemu_source}" if build and build.qemu_source else "")
        out += wrap(f"{stack}: guest Linux {kernel}{qemu_src}", width, "  ", "      ")
        seen: set[tuple[str, str]] = set()
        for e in group:
            a = e.prov.arms[e.arm]
            qemu = f"{a.qemu_version or 'version ' + UNRECORDED}, sha256 {short_sha(a.qemu_sha256)}"
            for kind, name, text in (
                    ("module", a.module, ", ".join(short_sha(s) for s in a.module_sha256) or UNRECORDED),
                    ("qemu", a.qemu, qemu)):
                if (kind, name) in seen:
                    continue
                seen.add((kind, name))
                label = "sha256 " if kind == "module" else ""
                out += wrap(f"{kind} {name}: {label}{text}", width, "      ", "          ")
    return out


def host_block(provs: Sequence[Provenance], width: int) -> list[str]:
    """The host (a block per distinct host when the folders ran on several): CPU, host
    kernel, THP settings, the accelerators the runs used."""
    hosts: list[tuple[Host, list[str], set[str]]] = []
    for p in provs:
        for host, names, accels in hosts:
            if host.same_as(p.host):
                names.append(p.path.name)
                accels.update(p.host.accelerators)
                break
        else:
            hosts.append((p.host, [p.path.name], set(p.host.accelerators)))
    out: list[str] = []
    for h, names, accels in hosts:
        accel = ", ".join(sorted(accels)) or UNRECORDED
        note = " (TCG: no KVM, an emulated CPU: times are not a KVM host's)" if accels == {"tcg"} else ""
        thp = " ".join(f"{k}={v}" for k, v in h.thp) or UNRECORDED
        lines = [f"CPU {h.cpu or UNRECORDED}, {h.cpus if h.cpus is not None else '?'} CPUs; host Linux "
                 f"{h.kernel or UNRECORDED}", f"THP {thp}", f"accelerator {accel}{note}"]
        if len(hosts) > 1:
            lines.insert(0, "for " + ", ".join(names) + ":")
        for line in lines:
            out += wrap(line, width, "  ", "      ")
    return out


# --- the section ----------------------------------------------------------------------------

def command_of(folders: Sequence[ResultsFolder], baselines: Sequence[str], width: int) -> list[str]:
    words = ["balloon-harness", "cover-letter", *[f.path.name for f in folders]]
    for b in baselines:
        words += ["--baseline", b]
    if width != WIDTH:
        words += ["--width", str(width)]
    return words


def cover_letter(paths: Sequence[str | Path], baselines: Sequence[str] = (), width: int = WIDTH,
                 alpha: float = DEFAULT_ALPHA) -> str:
    """The results section for ``paths`` (results folders), plain ASCII within ``width``.

    ``baselines``: the arms the others are decided against (one per stack; default: each
    folder's first arm on each stack)."""
    if width < MIN_WIDTH:
        raise HarnessError(f"--width {width}: at least {MIN_WIDTH} columns (a table needs them)")
    folders = open_results(paths)
    provs = [provenance(f) for f in folders]
    entries = entries_of(folders, provs)
    base = baselines_of(entries, list(baselines))
    lines = ["Results", "=======", ""]
    lines += wrap("Measured with balloon-harness; every figure below is the harness's own, read from the "
                  "results folders named here, and the commands under each repeat it.", width)
    for i, (f, p) in enumerate(zip(folders, provs), 1):
        lines += [""] + folder_block(i, f, p, width)
    any_flag = False
    for (stack, scenario), group in tables_of(entries).items():
        title = f"Stack {stack}" if stack != UNRECORDED else "Stack (not recorded)"
        build = group[0].prov.stacks.get(stack)
        if build and build.kernel:
            title += f": guest Linux {build.kernel}"
        if scenario:
            title += f"; scenario {scenario}"
        lines += ["", *wrap(title, width, "", "    "), ""]
        table, flagged = stack_table(group, width)
        any_flag |= flagged
        lines += table
    lines += [""] + wrap("Figures: median over the runs; (a..b): min..max of 2-4 runs; [a..b]: "
                         "interquartile range of 5 or more. reached k/n: runs whose guest got to the target. "
                         "stalled moves: moves that stopped short while the guest's driver failed to allocate "
                         "(k/n runs). failed runs (OOM kills): runs that produced no results, and of those the "
                         "ones whose guest's OOM killer acted.", width)
    if any_flag:
        lines += wrap(f"{SHORT_FLAG}: a THP ratio earned by stopping short (not every run reached the target, or "
                      "the host got back little of what was ballooned): do not rank the arm on it.", width)
    decided = decisions(entries, base, alpha, width)
    if decided:
        lines += ["", "Decisions", "---------"]
        lines += wrap(f"Each arm against its stack's baseline, as `balloon-harness compare` decides: base and arm "
                      f"are medians (reached: the fraction of runs); shift: Hodges-Lehmann estimate of arm - "
                      f"base (reached: the difference of fractions) with its {CONFIDENCE:.0%} interval; p adj: "
                      f"the two-sided p (exact Mann-Whitney U, Boschloo for reached) adjusted by Holm over the "
                      f"comparison's deciding figures and steps; better/worse: p adj < {alpha:g} and the shift "
                      f"at least the figure's effect floor; same: the whole interval within the floor.", width)
        lines += decided
    claims = [(f, decided_sentences(f, width)) for f in folders]
    if any(s for _, s in claims):
        lines += ["", "The scenarios' own claims, as `balloon-harness check` judges them:"]
        for f, sentences in claims:
            if sentences:
                lines += ([f"[{folders.index(f) + 1}] {f.scenario.name}:"] if len(folders) > 1 else []) + sentences
    lines += ["", "Stacks", "------"] + stacks_block(entries, width)
    lines += ["", "Host", "----"] + host_block(provs, width)
    lines += [""] + wrap("To reproduce: run the commands under each folder above, then write this section "
                         "from the folders they make with:", width)
    lines += shell_lines(command_of(folders, list(baselines), width), width, "  $ ")
    return "\n".join(fit([ascii_text(line) for line in lines], width)) + "\n"
