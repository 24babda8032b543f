"""docs/RESULTS.md and the result files it cites stay in step: every cited file exists, every file is cited,
result files are named by what they hold (not by commit), and every benchmark command on the page names a
script and options that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "RESULTS.md"
README = ROOT / "README.md"

CITED = re.compile(r"benchmarks/results/([\w.\-]+[\w])")
COMMIT_LIKE = re.compile(r"(?<![0-9a-f])[0-9a-f]{7,40}(?![0-9a-f])")
SCRIPT = re.compile(r"python3?\s+benchmarks/([\w.\-]+\.py)((?:[ \t]+[^\s;|&`]+)*)")
FLAG = re.compile(r"(?<!\S)(--[a-z][\w-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def cited(text: str) -> set[str]:
    return set(CITED.findall(text))


def code_spans(text: str) -> list[str]:
    """The page's code: indented and fenced blocks (a line ending in a backslash joined to the next) and
    inline code spans."""
    spans = []
    block: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            block.append(line.strip())
            continue
        if block:
            spans.append("\n".join(block).replace("\\\n", " "))
            block = []
        spans.extend(re.findall(r"`([^`]+)`", line))
    if block:
        spans.append("\n".join(block).replace("\\\n", " "))
    return spans


def benchmark_commands(text: str) -> list[tuple[str, list[str]]]:
    """(script, its --options) for every ``python benchmarks/X.py ...`` command in the page's code."""
    commands = []
    for span in code_spans(text):
        for line in span.splitlines():
            for script, args in SCRIPT.findall(line):
                commands.append((script, FLAG.findall(args)))
    return commands


def test_every_cited_result_file_exists():
    for doc in (PAGE, README):
        missing = sorted(n for n in cited(doc.read_text()) if not (RESULTS_DIR / n).is_file())
        assert not missing, f"{doc.relative_to(ROOT)} cites result files that do not exist: {missing}"


def test_every_result_file_is_cited_by_the_results_page():
    files = {p.name for p in RESULTS_DIR.iterdir() if p.is_file()}
    assert files, f"no result files in {RESULTS_DIR}"
    orphans = sorted(files - cited(PAGE.read_text()))
    assert not orphans, f"result files docs/RESULTS.md does not cite (cite or delete them): {orphans}"


def test_result_files_are_named_by_what_they_hold_not_by_commit():
    named = sorted(p.name for p in RESULTS_DIR.iterdir() if COMMIT_LIKE.search(p.stem.lower()))
    assert not named, f"result files named by a commit-like hex token: {named}"


def test_commands_on_the_results_page_name_existing_scripts_and_options():
    commands = benchmark_commands(PAGE.read_text())
    assert len(commands) >= 10, "expected the page's reproduce commands"
    common = (ROOT / "benchmarks" / "common.py").read_text()
    for script, flags in commands:
        path = ROOT / "benchmarks" / script
        assert path.is_file(), f"docs/RESULTS.md runs benchmarks/{script}, which does not exist"
        source = path.read_text()
        unknown = [f for f in flags if f'"{f}"' not in source and f'"{f}"' not in common]
        assert not unknown, (
            f"docs/RESULTS.md passes benchmarks/{script} options it does not define: {unknown}"
        )


def test_links_on_the_results_page_stay_inside_the_repository():
    for target in LINK.findall(PAGE.read_text()):
        assert "://" not in target, f"docs/RESULTS.md links outside the repository: {target}"
        path = (PAGE.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"docs/RESULTS.md links outside the repository: {target}"
        assert path.exists(), f"docs/RESULTS.md links to {target}, which does not exist"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "`python benchmarks/attack_utd.py --ckpt a=b --only cost`",
            [("attack_utd.py", ["--ckpt", "--only"])],
        ),
        ("    .venv/bin/python benchmarks/x.py --a 1 \\\n        --b-c 2\n", [("x.py", ["--a", "--b-c"])]),
        ("```\npython3 benchmarks/y.py --k\n```", [("y.py", ["--k"])]),
        ("plain prose python benchmarks/z.py --no", []),
    ],
)
def test_benchmark_commands_are_read_from_code_only(text, expected):
    assert benchmark_commands(text) == expected


def test_commit_like_tokens_are_recognised():
    assert COMMIT_LIKE.search("admm_same_27cd692")
    assert COMMIT_LIKE.search("attack_utd_cost_hcn_compiled_check_b955849")
    assert not COMMIT_LIKE.search("attack_utd_cost_h200_b256_eager_vs_compiled")
    assert not COMMIT_LIKE.search("throughput_sgn_steps100_r5")
