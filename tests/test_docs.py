"""The repository stands on its own: no link or path in its documents, code and configs points outside it,
every project document is cited by a path that exists, and docs/METHOD.md names every hyper-parameter of
``configs/attack/*.yaml`` and every section the code cites."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
METHOD = REPO / "docs" / "METHOD.md"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# the code and configs a user reads; benchmarks/results/ is left out: it holds the recorded outputs of past
# runs (their resolved configs among them), data rather than links
CODE = [
    *sorted((REPO / "lightning_skel").rglob("*.py")),
    *sorted((REPO / "configs").rglob("*.yaml")),
    *sorted(p for p in (REPO / "benchmarks").iterdir() if p.is_file()),
    REPO / "train.py",
    REPO / "attack.py",
]
# The one path outside the repository that code and configs may name: the default of `paths.data_dir`
# (configs/paths/default.yaml), where the recordings beside a checkout are looked for. It is a data location a
# user overrides (paths.data_dir=..., LSKEL_DATA_DIR), not a link to read.
DATA_LOCATIONS = {"../shared/data"}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](target)
UP_PATH = re.compile(r"(?<![\w.])(?:\.\./)+[\w./-]*")  # ../x, ../../x/y.md
ABSOLUTE_WORK = re.compile(r"(?<![\w.])/work/")  # this workspace's absolute paths
# Project documents are named in capitals (README.md, docs/METHOD.md, ...); lower-case .md names in the code
# are the outputs it writes (report.md, summary.md), which exist only in a run's folder.
PROJECT_DOC = re.compile(r"[\w./-]*\b[A-Z][A-Z_]*\.md\b")
SECTION_CITE = re.compile(r"METHOD(?:\.md)?(?:'s)? section (\d+)")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def inside(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO)


def external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target))  # https:, mailto:, ...


def without_links(text: str) -> str:
    """``text`` with every markdown link target removed (their text kept), so that what remains are the
    paths written as plain text."""
    return LINK.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + ")", text)


def test_the_scanned_files_exist():
    """The lists this module scans are what they claim (a renamed folder would empty them silently)."""
    assert (REPO / "README.md") in DOCS and len(DOCS) >= 3
    assert all(p.is_file() for p in DOCS + CODE)
    assert {p.suffix for p in CODE} >= {".py", ".yaml"}


@pytest.mark.parametrize("path", DOCS + CODE, ids=rel)
def test_nothing_points_at_the_science_brief_outside_the_repository(path):
    """docs/METHOD.md is the method; a copy beside the checkout (``../shared/docs``) is not part of it."""
    text = path.read_text()
    assert "shared/docs" not in text, f"{rel(path)} mentions shared/docs: cite docs/METHOD.md instead"
    assert not ABSOLUTE_WORK.search(text), f"{rel(path)} names an absolute /work/ path of one machine"


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_relative_link_of_the_documents_resolves_to_a_file_in_the_repository(path):
    for target in LINK.findall(path.read_text()):
        if external(target) or target.startswith("#"):
            continue
        dest = path.parent / target.split("#")[0]
        assert inside(dest), f"{rel(path)}: link {target!r} points outside the repository"
        assert dest.exists(), f"{rel(path)}: link {target!r} points at a file that does not exist"


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_no_path_written_in_the_documents_points_outside_the_repository(path):
    """Plain-text paths such as ``../shared/data`` too. A reader may take one from the document's folder or
    from the repository root (docs/RESULTS.md writes ``benchmarks/results/...``), so it must stay inside
    from both."""
    for token in UP_PATH.findall(without_links(path.read_text())):
        token = token.rstrip(".,;:")
        for base in (path.parent, REPO):
            assert inside(base / token), f"{rel(path)}: {token!r} points outside the repository"


@pytest.mark.parametrize("path", CODE, ids=rel)
def test_no_path_in_code_or_configs_points_outside_the_repository(path):
    """Paths in code and configs are relative to the repository root, the folder commands run from
    (configs/paths/default.yaml); only the default data location may lie beside the checkout."""
    for token in UP_PATH.findall(path.read_text()):
        token = token.rstrip(".,;:")
        if token in DATA_LOCATIONS:
            continue
        assert inside(REPO / token), f"{rel(path)}: {token!r} points outside the repository"


@pytest.mark.parametrize("path", DOCS + CODE, ids=rel)
def test_project_documents_are_cited_by_a_path_that_exists(path):
    """``METHOD.md section 3`` in a comment is a citation a reader must be able to follow from the
    repository root: ``docs/METHOD.md``. Markdown link targets are checked, from the document's folder,
    by the link test above."""
    text = without_links(path.read_text())
    for token in sorted(set(PROJECT_DOC.findall(text))):
        assert inside(REPO / token) and (REPO / token).is_file(), (
            f"{rel(path)} cites {token!r}, which is not a file of the repository (from its root)"
        )


def method_sections() -> set[str]:
    return set(re.findall(r"^## (\d+)\. ", METHOD.read_text(), flags=re.M))


def test_method_has_the_sections_the_code_cites():
    """Code, configs and documents cite "docs/METHOD.md section N": every N must be a section of it."""
    assert METHOD.is_file(), "docs/METHOD.md is missing"
    sections = method_sections()
    assert {str(i) for i in range(1, 8)} <= sections, f"docs/METHOD.md has sections {sorted(sections)}"
    for path in DOCS + CODE:
        for n in SECTION_CITE.findall(path.read_text()):
            assert n in sections, f"{rel(path)} cites METHOD section {n}, which docs/METHOD.md does not have"


# Keys of a config file that are not hyper-parameters: Hydra's `defaults` list only says which file a config
# starts from (admm_strict.yaml: from admm.yaml, whose keys are checked in their own right).
NOT_HYPERPARAMETERS = {"defaults"}


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """The leaf key paths of a config, nested dicts joined with dots (``weights.bone``)."""
    out = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if not prefix and key in NOT_HYPERPARAMETERS:
            continue
        out.extend(leaf_keys(value, f"{path}.") if isinstance(value, dict) and value else [path])
    return out


ATTACK_CONFIGS = sorted((REPO / "configs" / "attack").glob("*.yaml"))


def test_attack_configs_are_found():
    assert {p.stem for p in ATTACK_CONFIGS} >= {"admm", "admm_strict", "smart", "pgd", "ifgsm", "cw"}
    assert "weights.bone" in leaf_keys(yaml.safe_load((REPO / "configs/attack/admm.yaml").read_text()))


@pytest.mark.parametrize("path", ATTACK_CONFIGS, ids=lambda p: p.name)
def test_method_names_every_key_of_every_attack_config(path):
    """Each leaf key (``lr``, ``tau.speed``) is written in backticks in docs/METHOD.md, alone or as an
    override (`` `attack.tau.speed=0` ``, `` `patience: 1` ``), where its meaning and unit are stated."""
    assert METHOD.is_file(), "docs/METHOD.md is missing"
    doc = METHOD.read_text()
    missing = [
        key
        for key in leaf_keys(yaml.safe_load(path.read_text()))
        if not re.search(rf"`(?:attack\.)?{re.escape(key)}[`=: ]", doc)
    ]
    assert not missing, f"docs/METHOD.md does not name these keys of {rel(path)}: {missing}"
