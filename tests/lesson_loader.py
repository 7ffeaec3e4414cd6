"""Import a lesson script as a module, for tests of its functions (lesson files are scripts, not a package)."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_lesson(name: str):
    """lessons/<name>.py (e.g. "08_ppo") as a fresh module object, registered as `lesson_<name>`."""
    spec = importlib.util.spec_from_file_location("lesson_" + name, os.path.join(ROOT, "lessons", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module       # dataclasses and inspect.getsource look their module up here
    spec.loader.exec_module(module)
    return module
