"""The bug list (tests/bugs/bugs.py) stays current: every patch still applies to the code exactly once, every test it
names exists, and the ids are unique. Running the bugs themselves is `python tests/bugs/run.py` (minutes, not here)."""

import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_bugs() -> list[dict]:
    spec = importlib.util.spec_from_file_location("minialign_bug_list", os.path.join(ROOT, "tests", "bugs", "bugs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BUGS


BUGS = load_bugs()


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def test_ids_are_unique_and_the_list_is_long_enough():
    ids = [b["id"] for b in BUGS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len(ids) >= 35
    for b in BUGS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", b["id"]), b["id"]
        assert b["symptom"].strip() and b["tests"] and b["patch"], b["id"]


@pytest.mark.parametrize("entry", BUGS, ids=[b["id"] for b in BUGS])
def test_patch_applies_exactly_once(entry):
    text = read(entry["file"])
    for old, new in entry["patch"]:
        n = text.count(old)
        assert n == 1, (f"{entry['id']}: patch no longer applies to {entry['file']}: the old snippet occurs {n} "
                        f"times (must be exactly once); update it in tests/bugs/bugs.py:\n{old}")
        assert new != old
        text = text.replace(old, new)


@pytest.mark.parametrize("entry", BUGS, ids=[b["id"] for b in BUGS])
def test_named_tests_exist(entry):
    for node in entry["tests"]:
        path, _, name = node.partition("::")
        assert name and os.path.exists(os.path.join(ROOT, path)), f"{entry['id']}: no test file for {node}"
        function = name.split("[")[0]
        source = read(path)
        assert re.search(rf"^def {re.escape(function)}\(", source, re.M), f"{entry['id']}: no test {node}"
        # the default suite deselects slow tests (pyproject addopts), so a named test must not be one
        assert not re.search(rf"@pytest\.mark\.slow\s*\ndef {re.escape(function)}\(", source), \
            f"{entry['id']}: {node} is marked slow; name a fast test"
