"""Plant each bug of tests/bugs/bugs.py in a temporary copy of the repository and check that the tests catch it.

    python tests/bugs/run.py                 every bug (minutes: run it before resolving an issue that touches an algorithm)
    python tests/bugs/run.py --only ID ...   some of them
    python tests/bugs/run.py --list          the list, with the tests and the symptom of each bug
    python tests/bugs/run.py --plant ID DIR  a copy of the repository in DIR with that one bug planted (exercises)

For each bug: copy the code and its tests to a temporary folder (the working tree is only read, never
changed), apply the patch there, run the tests the entry names with `python -m pytest -x -q -p no:cacheprovider`
in that copy (PYTHONPATH points at the copy, so the copy's minialign is the one imported, not the installed
editable one: checked for every copy), and, if they all pass, the whole default suite. One line per bug says
which test caught it, MISSED, or PATCH STALE (the code moved: update the snippet in tests/bugs/bugs.py); the last
line is `N caught, M missed`. The exit status is 1 when any bug is missed or stale.

First the named tests run once on an unpatched copy: a test that already fails without any bug catches
nothing, so it is reported and deselected from the bug runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from tqdm.auto import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What the tests need; runs/, caches and build outputs stay behind.
COPIED = ["minialign", "tests", "lessons", "data", "train.py", "pyproject.toml", "README.md"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "cache", "runs")
# tests/test_bug_list.py checks the list against the working tree, not the code's behaviour: never run it here
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE",
          "--ignore=tests/test_bug_list.py"]
NAMED_TIMEOUT, SUITE_TIMEOUT = 900, 2400   # seconds; a bug that hangs the tests counts as caught (by the timeout)


class StalePatch(Exception):
    """An `old` snippet of a patch is not in its file exactly once."""


def load_bugs() -> list[dict]:
    spec = importlib.util.spec_from_file_location("minialign_bug_list", os.path.join(ROOT, "tests", "bugs", "bugs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BUGS


# ----------------------------------------------------------------------------------------------------------------
# A copy of the repository, a patch, a pytest run
# ----------------------------------------------------------------------------------------------------------------
def make_copy(dest: str | None = None) -> str:
    """A copy of what the tests need, in `dest` (default: a new temporary folder); checks that its minialign is the
    one a run there imports."""
    dest = dest or tempfile.mkdtemp(prefix="minialign-bug-")
    os.makedirs(dest, exist_ok=True)
    for name in COPIED:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), ignore=IGNORED)
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(dest, name))
    # Probed from tests/, as a lesson or train.py subprocess would import it: there the current folder does not
    # hold minialign, so only PYTHONPATH keeps the editable install (the working tree) from answering.
    origin = subprocess.run([sys.executable, "-c", "import minialign; print(minialign.__file__)"],
                            cwd=os.path.join(dest, "tests"), env=env_for(dest), capture_output=True,
                            text=True).stdout.strip()
    if not os.path.realpath(origin).startswith(os.path.realpath(dest) + os.sep):
        shutil.rmtree(dest, ignore_errors=True)
        raise RuntimeError(f"the copy in {dest} imports minialign from {origin!r}, not from the copy: the bug "
                           f"would be planted in code the tests never run")
    return dest


def env_for(copy: str) -> dict:
    """The environment of a run in `copy`: its folder first on PYTHONPATH (before the editable install)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([copy] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def apply_patch(copy: str, entry: dict) -> None:
    """Apply the entry's (old, new) replacements to its file in `copy`; StalePatch if one does not apply."""
    path = os.path.join(copy, entry["file"])
    if not os.path.exists(path):
        raise StalePatch(f"{entry['file']} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for old, new in entry["patch"]:
        n = text.count(old)
        if n != 1:
            raise StalePatch(f"patch no longer applies: {entry['file']} contains the old snippet {n} times "
                             f"(must be exactly once): {old.splitlines()[0].strip()!r}")
        text = text.replace(old, new)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def run_pytest(copy: str, nodes: list[str], deselect: set[str], timeout: int) -> tuple[str, str | None]:
    """pytest in `copy` on `nodes` (the default suite when empty). Returns (outcome, first failing test):
    outcome 'passed', 'failed', 'timeout' or 'error' (pytest itself could not run: usage error, no tests)."""
    cmd = PYTEST + [a for node in sorted(deselect) for a in ("--deselect", node)] + nodes
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env_for(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"timeout after {timeout}s"
    if proc.returncode == 0:
        return "passed", None
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    if proc.returncode in (1, 2) and failed:      # 2: interrupted, e.g. the patched code fails to import
        return "failed", failed[0]
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
    return "error", f"pytest exit {proc.returncode}: {tail}"


# ----------------------------------------------------------------------------------------------------------------
# The baseline and one bug
# ----------------------------------------------------------------------------------------------------------------
class Baseline:
    """An unpatched copy: which tests fail without any bug (those catch nothing and are deselected)."""

    def __init__(self):
        self.copy = make_copy()
        self.failing: set[str] = set()
        self.checked: dict[str, bool] = {}

    def check_named(self, bugs: list[dict]) -> None:
        nodes = sorted({n for b in bugs for n in b["tests"]})
        for _ in range(len(nodes)):                 # -x stops at the first failure: deselect it, run the rest
            outcome, test = run_pytest(self.copy, nodes, self.failing, NAMED_TIMEOUT)
            if outcome == "passed":
                return
            if outcome != "failed" or test in self.failing:
                raise RuntimeError(f"the named tests cannot run on the unpatched code: {test}")
            self.failing.add(test)

    def fails_clean(self, test: str) -> bool:
        """Does `test` fail on the unpatched code too? (cached)"""
        if test not in self.checked:
            self.checked[test] = run_pytest(self.copy, [test], set(), SUITE_TIMEOUT)[0] != "passed"
            if self.checked[test]:
                self.failing.add(test)
        return self.checked[test]

    def close(self):
        shutil.rmtree(self.copy, ignore_errors=True)


def run_bug(entry: dict, baseline: Baseline, suite: bool, keep: bool) -> tuple[str, str]:
    """Plant one bug in a fresh copy: ('caught' | 'missed' | 'stale' | 'error', detail)."""
    copy = make_copy()
    try:
        try:
            apply_patch(copy, entry)
        except StalePatch as e:
            return "stale", str(e)
        named = [n for n in entry["tests"] if n not in baseline.failing]
        if named:
            outcome, test = run_pytest(copy, named, baseline.failing, NAMED_TIMEOUT)
            if outcome in ("failed", "timeout"):
                return "caught", test
            if outcome == "error":
                return "error", test
        if not suite:
            return "missed", "the named tests pass (default suite not run: --no-suite)"
        while True:                                # the default suite, minus tests that fail without the bug
            outcome, test = run_pytest(copy, [], baseline.failing, SUITE_TIMEOUT)
            if outcome == "passed":
                return "missed", "the named tests and the default suite all pass"
            if outcome == "error":
                return "error", test
            if outcome == "timeout" or not baseline.fails_clean(test):
                return "caught", f"{test} (default suite, not a named test: add it to the entry)"
    finally:
        if keep:
            tqdm.write(f"  kept {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------
def print_list(bugs: list[dict]) -> None:
    for b in bugs:
        print(f"{b['id']}  [{b['area']}, {b['file']}]\n    {b['symptom']}")
        for t in b["tests"]:
            print(f"    caught by {t}")


def plant(ap, bugs: list[dict], bug_id: str, dest: str) -> int:
    """A student's copy with one bug in it (the working tree stays as it is)."""
    entry = next((b for b in bugs if b["id"] == bug_id), None)
    if entry is None:
        ap.error(f"unknown bug id {bug_id!r}; `python tests/bugs/run.py --list` shows them")
    if os.path.exists(dest):
        ap.error(f"{dest} exists; --plant writes a new folder")
    apply_patch(make_copy(dest), entry)
    print(f"{dest}: the repository with one bug planted. Work there with `export PYTHONPATH={os.path.abspath(dest)}` "
          f"(or `pip install -e .` in it): lessons and train.py would otherwise import the installed minialign")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="ID", help="run only these bugs")
    ap.add_argument("--list", action="store_true", help="print the bugs and their tests, run nothing")
    ap.add_argument("--no-suite", action="store_true", help="do not fall back to the default suite when the named "
                                                             "tests miss a bug (faster, for editing the list)")
    ap.add_argument("--keep", action="store_true", help="keep each patched copy (its path is printed)")
    ap.add_argument("--plant", nargs=2, metavar=("ID", "DIR"), help="copy the repository to DIR (a new folder) with "
                                                                    "bug ID planted, and run nothing")
    args = ap.parse_args(argv)
    bugs = load_bugs()
    if args.plant:
        return plant(ap, bugs, *args.plant)
    if args.only:
        unknown = sorted(set(args.only) - {b["id"] for b in bugs})
        if unknown:
            ap.error(f"unknown bug id(s) {unknown}; `python tests/bugs/run.py --list` shows them")
        bugs = [b for b in bugs if b["id"] in args.only]
    if args.list:
        print_list(bugs)
        return 0

    start = time.perf_counter()
    baseline = Baseline()
    counts = {"caught": 0, "missed": 0, "stale": 0, "error": 0}
    try:
        baseline.check_named(bugs)
        for test in sorted(baseline.failing):
            print(f"BASELINE FAIL  {test} fails without any bug: deselected, it catches nothing")
        width = max(len(b["id"]) for b in bugs)
        bar = tqdm(bugs, desc="bugs", unit="bug")
        for entry in bar:
            bar.set_postfix_str(entry["id"])
            t0 = time.perf_counter()
            status, detail = run_bug(entry, baseline, suite=not args.no_suite, keep=args.keep)
            counts[status] += 1
            label = {"caught": "caught", "missed": "MISSED", "stale": "PATCH STALE", "error": "RUNNER ERROR"}[status]
            how = f"by {detail}" if status == "caught" else detail
            tqdm.write(f"{label:<12} {entry['id']:<{width}}  {how}  ({time.perf_counter() - t0:.0f}s)")
        bar.close()
    finally:
        baseline.close()
    minutes, seconds = divmod(int(time.perf_counter() - start), 60)
    print(f"wall time {minutes}m{seconds:02d}s")
    extra = "".join(f", {counts[k]} {k}" for k in ("stale", "error") if counts[k])
    print(f"{counts['caught']} caught, {counts['missed']} missed{extra}")
    return 0 if counts["missed"] == counts["stale"] == counts["error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
