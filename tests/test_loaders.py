"""Loaders: the shipped example files load, and bad input names the file, the line and the field."""

from pathlib import Path

import pytest

from minialign.loaders import DataError, load_alpaca, load_preferences, load_text

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"


def test_example_files_load():
    assert "lives in" in load_text(EXAMPLES / "pretrain.txt")
    for name in ("alpaca.jsonl", "alpaca.json"):
        examples = load_alpaca(EXAMPLES / name)
        assert len(examples) >= 10
        assert all(e.prompt and e.response for e in examples)
    with_input = [e for e in load_alpaca(EXAMPLES / "alpaca.jsonl") if e.prompt.startswith("Translate")]
    assert with_input[0].prompt == "Translate to French.\nthe small dog"
    pairs = load_preferences(EXAMPLES / "preferences.jsonl")
    rankings = load_preferences(EXAMPLES / "rankings.jsonl")
    assert all(len(r.responses) == 2 for r in pairs)
    assert all(len(r.responses) >= 3 for r in rankings)
    assert len(rankings[0].pairs()) == 6 and rankings[0].pairs()[0].gold_chosen is None


def test_json_list_records_know_their_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "Hi", "output": "Hello."},\n  {"instruction": "Yo"}\n]\n')
    with pytest.raises(DataError) as err:
        load_alpaca(path)
    assert str(path) in str(err.value) and "line 3" in str(err.value) and "'output'" in str(err.value)
    assert (err.value.line, err.value.field) == (3, "output")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, line, field, words", [
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', 2, None, "malformed JSON"),
    ('{"instruction": "a", "output": "b"}\n\n{"input": "x", "output": "y"}\n', 3, "instruction", "missing"),
    ('{"instruction": "a", "output": 7}\n', 1, "output", "must be a string"),
    ('{"instruction": "a", "input": ["x"], "output": "b"}\n', 1, "input", "must be a string"),
    ('["instruction", "output"]\n', 1, None, "expected a JSON object"),
    ("", 1, None, "empty"),
])
def test_alpaca_errors_name_file_line_and_field(tmp_path, text, line, field, words):
    path = _write(tmp_path, "bad.jsonl", text)
    with pytest.raises(DataError) as err:
        load_alpaca(path)
    message = str(err.value)
    assert str(path) in message and f"line {line}" in message and words in message
    if field is not None:
        assert f"field '{field}'" in message


@pytest.mark.parametrize("text, line, field, words", [
    ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"}\n', 2,
     "rejected", "missing"),
    ('{"prompt": 3, "chosen": "a", "rejected": "b"}\n', 1, "prompt", "must be a string"),
    ('{"prompt": "p", "responses": ["only one"]}\n', 1, "responses", "at least 2"),
    ('{"prompt": "p", "responses": ["a", 5]}\n', 1, "responses[1]", "non-empty string"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b"\n', 1, None, "malformed JSON"),
    ("\n\n", 1, None, "empty"),
])
def test_preference_errors_name_file_line_and_field(tmp_path, text, line, field, words):
    path = _write(tmp_path, "bad.jsonl", text)
    with pytest.raises(DataError) as err:
        load_preferences(path)
    message = str(err.value)
    assert str(path) in message and f"line {line}" in message and words in message
    if field is not None:
        assert f"field '{field}'" in message


def test_text_errors(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_text(_write(tmp_path, "empty.txt", "  \n"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\nnaïve\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 2.*UTF-8"):
        load_text(bad)
    with pytest.raises(DataError, match="no such file"):
        load_text(tmp_path / "missing.txt")
