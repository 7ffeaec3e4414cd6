"""The words of the world: every word the corpus, the tasks and the flawed answers can contain.

The oracle's fluency check calls any other word a non-word (broken text, a half-word like
"Oakt"). Instead of listing the words by hand (and forgetting some), we collect every string
constant of the world's modules: the lexicon tables, the task templates and Natural Instructions
texts, and the string literals inside the generator functions (from their code objects). Every
word a generator can write comes from one of those constants or from the lexicon.
"""

import functools
import types

from . import (corpus, demonstrators, facts, family, flaws, lexicon, natural_instructions, tasks,
               tasks_classify, tasks_extract, tasks_generate, tasks_math, tasks_qa, tasks_rewrite,
               tasks_safety)
from .text import words

_MODULES = (corpus, demonstrators, facts, family, flaws, lexicon, natural_instructions, tasks,
            tasks_classify, tasks_extract, tasks_generate, tasks_math, tasks_qa, tasks_rewrite,
            tasks_safety)


def _strings(obj, out: list, seen: set):
    """Append every string reachable from `obj` (containers, dataclasses, code objects)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _strings(key, out, seen)
            _strings(value, out, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            _strings(item, out, seen)
    elif isinstance(obj, types.FunctionType):
        _strings(obj.__code__, out, seen)
    elif isinstance(obj, types.CodeType):
        _strings(obj.co_consts, out, seen)
    elif hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type):
        for name in obj.__dataclass_fields__:
            _strings(getattr(obj, name), out, seen)
    elif isinstance(obj, functools.partial):
        _strings(obj.func, out, seen)
    elif hasattr(obj, "__wrapped__"):  # a cached function
        _strings(obj.__wrapped__, out, seen)


@functools.lru_cache(maxsize=1)
def known_words() -> frozenset:
    """Lower-case words of the world (digits are always fine and are not listed)."""
    out, seen = [], set()
    for module in _MODULES:
        for name, value in vars(module).items():
            if not name.startswith("__"):
                _strings(value, out, seen)
    return frozenset(w for s in out for w in words(s) if not w.isdigit())
