"""Loaders for real data files, beside the embedded world: text, Alpaca, preferences.

- load_text(path): plain UTF-8 text for pretraining.
- load_alpaca(path): instruction data, a JSON list or JSON Lines of records
  {"instruction": str, "input": str (optional), "output": str}, as Examples.
- load_preferences(path): JSON Lines (or a JSON list) of {"prompt", "chosen", "rejected"} or
  {"prompt", "responses": [best, ..., worst]}, as Rankings (a pair is a ranking of two).

Bad input raises DataError, whose message names the file, the line and the field, says what was
wrong and what a good record looks like. Unknown extra fields are ignored.
"""

import json
from pathlib import Path

from .world.preferences import Ranking
from .world.tasks import Example

ALPACA_HINT = 'an Alpaca record is {"instruction": "...", "input": "... (optional)", "output": "..."}'
PREFERENCE_HINT = ('a preference record is {"prompt": "...", "chosen": "...", "rejected": "..."} '
                   'or {"prompt": "...", "responses": ["best", "...", "worst"]}')


class DataError(ValueError):
    """A data file is malformed. `path`, `line` (1-based, or None) and `field` say where."""

    def __init__(self, path, line, field, problem: str, hint: str = ""):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f", line {line}" if line is not None else "")
        where += f", field '{field}'" if field is not None else ""
        super().__init__(f"{where}: {problem}" + (f" ({hint})" if hint else ""))


def load_text(path) -> str:
    """The whole file as text; DataError if it is missing, empty or not UTF-8."""
    text = _read(path)
    if not text.strip():
        raise DataError(path, 1, None, "the file is empty", "pretraining needs plain UTF-8 text")
    return text


def load_alpaca(path) -> list:
    """Alpaca-style instruction data as Examples (family "alpaca"; prompt = instruction + input)."""
    examples = []
    for line, record in _records(path, ALPACA_HINT):
        instruction = _string(record, "instruction", path, line, ALPACA_HINT)
        extra = _string(record, "input", path, line, ALPACA_HINT, required=False)
        output = _string(record, "output", path, line, ALPACA_HINT)
        prompt = f"{instruction}\n{extra}" if extra.strip() else instruction
        examples.append(Example(family="alpaca", category="custom", template_id=0, split="train",
                                prompt=prompt, response=output, answers=[],
                                meta={"source": str(path), "line": line}))
    return examples


def load_preferences(path) -> list:
    """Preference data as Rankings (best response first); gold rewards are unknown (None).

    A record whose responses are all the same text (chosen == rejected) is a tie that teaches nothing:
    it is dropped and counted; a file of nothing but ties is refused.
    """
    rankings, ties = [], 0
    records = _records(path, PREFERENCE_HINT)
    for line, record in records:
        prompt = _string(record, "prompt", path, line, PREFERENCE_HINT)
        if "responses" in record:
            responses = record["responses"]
            if not isinstance(responses, list) or len(responses) < 2:
                raise DataError(path, line, "responses", "must be a list of at least 2 strings, "
                                "best first", PREFERENCE_HINT)
            for i, response in enumerate(responses):
                if not isinstance(response, str) or not response.strip():
                    raise DataError(path, line, f"responses[{i}]", "must be a non-empty string, got "
                                    + _describe(response), PREFERENCE_HINT)
        else:
            responses = [_string(record, "chosen", path, line, PREFERENCE_HINT),
                         _string(record, "rejected", path, line, PREFERENCE_HINT)]
        if len(set(responses)) == 1:
            ties += 1
            continue
        rankings.append(Ranking(prompt=prompt, responses=list(responses), family="file"))
    if not rankings:
        raise DataError(path, None, None, f"no usable preference record: all {ties} records are ties "
                        f"(chosen identical to rejected), which teach nothing", PREFERENCE_HINT)
    if ties:
        print(f"{path}: {ties} of {len(records)} records dropped as ties (chosen identical to rejected)")
    return rankings


# --- helpers ----------------------------------------------------------------------------------------
def _read(path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "no such file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte {err.start})",
                        "save the file as UTF-8") from None


def _records(path, hint: str):
    """(line number, dict) for each record of a JSON list or a JSON Lines file."""
    text = _read(path)
    if not text.strip():
        raise DataError(path, 1, None, "the file is empty", hint)
    stripped = text.lstrip()
    pairs = list(_json_list(path, text) if stripped.startswith("[") else _json_lines(path, text))
    if not pairs:
        raise DataError(path, 1, None, "the file has no records", hint)
    for line, record in pairs:
        if not isinstance(record, dict):
            raise DataError(path, line, None, f"expected a JSON object, got {_describe(record)}", hint)
    return pairs


def _json_lines(path, text: str):
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            try:
                yield number, json.loads(raw)
            except json.JSONDecodeError as err:
                raise DataError(path, number, None, f"malformed JSON ({err.msg}, column {err.colno})",
                                "each line must be one JSON object") from None


def _json_list(path, text: str):
    """Decode a JSON list element by element, so each record knows the line it starts on."""
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text):
            raise DataError(path, text.count("\n") + 1, None, "malformed JSON (the list is not closed)")
        if text[index] == "]":
            return
        try:
            record, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, None, f"malformed JSON ({err.msg}, column {err.colno})") \
                from None
        yield text.count("\n", 0, index) + 1, record
        index = end


def _string(record: dict, name: str, path, line: int, hint: str, required: bool = True) -> str:
    if name not in record:
        if required:
            raise DataError(path, line, name, "missing", hint)
        return ""
    value = record[name]
    if not isinstance(value, str):
        raise DataError(path, line, name, f"must be a string, got {_describe(value)}", hint)
    if required and not value.strip():
        raise DataError(path, line, name, "is empty", hint)
    return value


def _describe(value) -> str:
    kind = {dict: "an object", list: "a list", int: "a number", float: "a number", bool: "true/false",
            type(None): "null", str: "a string"}.get(type(value), type(value).__name__)
    return f"{kind} ({json.dumps(value)[:40]})" if value is not None else kind
