"""The chat template: how a (prompt, response) pair becomes token ids, and which ids are trained.

    <|system|> {system} <|end|>          (only when a system message is given)
    <|user|> {prompt} <|end|>
    <|assistant|> {response} <|end|>

Each part is tokenized on its own and the ids are concatenated, never the joined string: BPE can
merge characters across a seam, and then "the prompt's tokens" would not be a prefix of "the
prompt + response tokens" (docs/dpo.md, pitfall 4). The special tokens come from the tokenizer's
special ids, so text typed by a user can never forge them (the tokenizer encodes "<|end|>" inside
plain text as ordinary bytes).

The loss mask is built here, in the one place that renders: 1 on the response tokens and on the
closing <|end|> (the model must learn to stop, or PPO's rollouts never end), 0 on the system and
user turns and the "<|assistant|>" header.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Rendered:
    """A rendered conversation: ids (L,) and loss_mask (L,) with 1 on trained (response) tokens."""

    ids: list[int]
    loss_mask: list[int]

    @property
    def prompt_len(self) -> int:
        """Number of leading tokens that are prompt (not trained)."""
        return self.loss_mask.index(1) if 1 in self.loss_mask else len(self.ids)


def end_id(tok) -> int:
    """The id that closes every turn; the assistant's <|end|> is where generation stops."""
    return tok.special["<|end|>"]


def prompt_ids(tok, prompt: str, system: str | None = None) -> list[int]:
    """Ids of everything the model sees before it answers, ending with the assistant header."""
    s = tok.special
    ids: list[int] = []
    if system:
        ids += [s["<|system|>"]] + tok.encode(system) + [s["<|end|>"]]
    ids += [s["<|user|>"]] + tok.encode(prompt) + [s["<|end|>"]]
    ids += [s["<|assistant|>"]]
    return ids


def response_ids(tok, response: str, *, add_end: bool = True) -> list[int]:
    """Ids of the assistant's answer, closed by <|end|> unless `add_end` is False."""
    return tok.encode(response) + ([end_id(tok)] if add_end else [])


def render(tok, prompt: str, response: str, system: str | None = None) -> Rendered:
    """The full conversation and its loss mask (prompt part 0, response part and <|end|> 1)."""
    p = prompt_ids(tok, prompt, system)
    r = response_ids(tok, response)
    return Rendered(ids=p + r, loss_mask=[0] * len(p) + [1] * len(r))


def parse_response(tok, ids: list[int]) -> tuple[str, bool]:
    """Decode generated ids up to the first <|end|>: (text, ended properly)."""
    e = end_id(tok)
    if e in ids:
        return tok.decode(ids[:ids.index(e)]), True
    stops = {tok.eot_id}
    ids = [i for i in ids if i not in stops]
    return tok.decode(ids), False


def response_text_ids(tok, response_ids: list[int]) -> list[int]:
    """The ids that make up the response's text: everything before the first <|end|> / <|endoftext|>."""
    stops = {end_id(tok), tok.eot_id}
    for i, t in enumerate(response_ids):
        if t in stops:
            return list(response_ids[:i])
    return list(response_ids)
