"""The attack path reads on one screen: every function of lightning_skel/attacks under 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ATTACKS = sorted((Path(__file__).resolve().parents[1] / "lightning_skel" / "attacks").glob("*.py"))
MAX_LINES = 59


@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_every_function_of_the_attack_path_is_under_60_lines(path):
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert not long, f"{path.name}: {long}"
