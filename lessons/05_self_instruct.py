"""Lesson 05: Self-Instruct -- the model writes its own instruction data from a few seed tasks.

Slides (deck 002): "Using LLMs to generate Instructions", "Self-Instruct Framework" (both),
"Self-Instruct Experiments", "Self-Instruct Evaluation" (Wang et al. 2023).

"Human-written instruction data is expensive. Idea: generate instructions using an off-the-shelf
LLM with human-written seed tasks." The framework, as this lesson runs it on the pretrained base
model of `<out>/pretrain` (never instruction-tuned, like the paper's GPT-3):
0. Seed pool: a few human-written tasks for a handful of families (here the world's reference
   answers play the humans), each an (instruction, input, output) triple.
1. Instruction generation (paper Table 5): the base model reads "Come up with a series of
   tasks:" and a numbered list of 8 instructions from the pool -- 6 seed instructions and 2
   generated ones, as in the paper -- and writes instruction number 9.
2. Filtering (paper section 2.4): drop instructions that are too short or long or malformed, and
   every instruction whose ROUGE-L with any instruction already in the pool is >= 0.7 ("filter
   out instructions similar with existing ones"), so the pool grows in *diversity*.
3. Instance generation (paper Table 8, input-first): the base model reads seed examples in the
   fixed "Instruction: ... / Input: ... / Output: ..." format, then the new instruction, and
   writes its input and its output. Invalid instances are dropped (empty output, output that
   repeats the input or the instruction, an output cut off at the length budget).
4. The survivors join the pool; back to 1 for a few iterations ("add newly generated tasks into
   the task pool for next iteration").
Then: fine-tune the base on the seeds alone vs on the seeds + the generated pool (same number of
optimizer steps), and grade everything with the world's oracle (`parse_prompt` + `gold_reward`,
the hidden "human") into the paper's quality classes:
  A  valid and acceptable (the oracle's correctness >= 0.9 and its total gold reward >= 0.9)
  B  acceptable with minor imperfections (correctness >= 0.5)
  C  responds to the instruction but has significant errors (correctness < 0.5)
  D  irrelevant or invalid (the oracle does not recognize the instruction as a task of the world,
     or the answer is empty or off topic -- a wrong answer of the right kind, another number or
     another town, is a C).
The generated *data* is graded that way (the paper's data-quality check: is the instruction a
valid task, is the output correct?), and so are the fine-tuned models' answers on held-out
prompts ("Self-Instruct Evaluation": the A/B/C/D bars per model).

What decides the outcome is whether the base model can write an acceptable input and output
from a few examples (the paper's GPT-3 175B can); the lesson measures each step with the oracle
and prints what this run shows, whichever way it goes (the two fine-tuned models are compared on
the same held-out prompts: the mean difference and its standard error over prompts). Nothing is
faked or corrected by the oracle.

Deviations from the paper: (a) the paper first asks the LM whether an instruction is a
classification task and then writes outputs first for those; we generate every instance input
first. (b) We write the field names ("Input:", "Output:") ourselves and let the model fill one
line per field (two generation calls): a tiny model cannot hold a multi-line format. (c) One
instance per instruction.

Outputs in <out>/lessons/05_self_instruct/: pool.png (pool growth and filter reasons per
iteration), quality.png (A/B/C/D of the generated data and of each model's answers),
rouge.png (ROUGE-L of each new instruction to its most similar seed, paper Figure 3),
generated.jsonl (every candidate with its filter verdict and grade), metrics.json.
Run time: under a minute on a 2-core CPU (measured on one core) once the stages exist.
Builds first, if missing: the tokenizer and the pretrained model (`train.py pretrain`, about 2.5
minutes on a 2-core CPU).

Things to try: --iterations 4 (a larger generated pool); --rouge-threshold 0.5 (a stricter novelty
filter: fewer, more diverse instructions); --temperature 0.7 (tamer generations).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from random import Random

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from minialign.config import (ConfigError, add_dataclass_args, autocast, cli_main,  # noqa: E402
                              from_args, write_json)
from minialign.generate import generate  # noqa: E402
from minialign.pipeline import add_run_args, ensure_pretrained, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.evaluation import generate_answers, mean_and_se, score_answer  # noqa: E402
from minialign.sft import SFTConfig, train_sft  # noqa: E402
from minialign.world import (get_family, gold_reward, instruction_data, parse_prompt,  # noqa: E402
                             task_families)
from minialign.world.text import words  # noqa: E402

NAME = "05_self_instruct"
SEED_FAMILIES = "sentiment,plural,add,capital_qa,extract_name,story"
CLASSES = ("A", "B", "C", "D")
CLASS_TEXT = {"A": "A: valid and acceptable", "B": "B: acceptable, minor imperfections",
              "C": "C: responds, significant errors", "D": "D: irrelevant or invalid"}
CLASS_COLORS = {"A": "#2a9d8f", "B": "#8ab17d", "C": "#e9c46a", "D": "#e76f51"}
NO_INPUT = "Null"   # the slide's "Input: Null" for tasks whose instruction says everything


# ----------------------------------------------------------------------------------------------
# ROUGE-L (Lin 2004), as Self-Instruct uses it to reject near-duplicate instructions
def rouge_tokens(text: str) -> list[str]:
    """Lower case, every run of characters other than a-z and 0-9 becomes a word boundary
    (the tokenizer of Google's rouge_score package, which the paper used, without stemming)."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two word lists (dynamic programming)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate, reference) -> float:
    """ROUGE-L F-measure: P = LCS / |candidate|, R = LCS / |reference|, F = 2PR / (P + R).

    Takes strings or already tokenized word lists; 0 when either side has no words.
    """
    c = rouge_tokens(candidate) if isinstance(candidate, str) else candidate
    r = rouge_tokens(reference) if isinstance(reference, str) else reference
    lcs = lcs_length(c, r) if c and r else 0
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


# ----------------------------------------------------------------------------------------------
# 0. Tasks and the seed pool
@dataclass
class Task:
    """One instruction-following task: (instruction, input, output), as in the paper's data."""

    instruction: str
    input: str          # "" when the instruction needs no input ("Input: Null")
    output: str
    origin: str         # "seed" or "generated"
    iteration: int = 0  # the iteration that generated it (0 for seeds)

    @property
    def prompt(self) -> str:
        """The user message the task stands for (what SFT trains on and the oracle parses)."""
        return self.instruction if not self.input else self.instruction + "\n" + self.input


def split_template(template: str):
    """(instruction template, input field) for "Instruction\\n{field}" templates, (template, None)
    for one-line ones, None for the others (input first, or several lines)."""
    if "\n" not in template:
        return template, None
    head, tail = template.split("\n", 1)
    field = re.fullmatch(r"\{(\w+)\}", tail)
    if field and "{" not in head:
        return head, field[1]
    return None


def seed_tasks(families: list[str], per_family: int, seed: int) -> list[Task]:
    """`per_family` human-written (here: the world's reference) tasks for each seed family, each
    with a different template, all from the training pool."""
    rng = Random(f"self-instruct-seeds|{seed}")
    tasks = []
    for name in families:
        family = get_family(name)
        usable = [i for i in family.seen_templates if split_template(family.templates[i])]
        for k in range(per_family):
            template_id = usable[k % len(usable)]
            fields = family.sample_in_pool(rng, "train")
            head, field = split_template(family.templates[template_id])
            instruction = head.format(**fields) if field is None else head
            tasks.append(Task(instruction=instruction, input=fields[field] if field else "",
                              output=family.solve(fields, rng).response, origin="seed"))
    return tasks


# ----------------------------------------------------------------------------------------------
# 1. Instruction generation, and 3. instance generation, by the base model
def sample(model, tok, prompts: list[str], settings, generator, max_new_tokens: int) -> list[str]:
    """Sample a continuation of each plain-text prompt; return its first line."""
    newline = tok.encode("\n")
    stop = [tok.eot_id] + (newline if len(newline) == 1 else [])
    out = []
    for start in range(0, len(prompts), settings.gen_batch_size):
        encoded = [tok.encode(p) for p in prompts[start:start + settings.gen_batch_size]]
        with autocast(model.output_weight.device):
            gen = generate(model, encoded, max_new_tokens=max_new_tokens, stop_ids=stop,
                           pad_id=tok.pad_id, temperature=settings.temperature, top_p=settings.top_p,
                           generator=generator)
        for ids, ended in zip(gen.response_ids, gen.ended.tolist()):
            text = tok.decode([t for t in ids if t != tok.eot_id])
            # a line that hit the token budget before its end is cut off: mark it
            out.append(text.split("\n")[0].strip() if ended or "\n" in text else None)
    return out


def instruction_prompt(instructions: list[str]) -> str:
    """Paper Table 5: "Come up with a series of tasks:" and a numbered list; the model adds one."""
    lines = ["Come up with a series of tasks:"]
    lines += [f"{i + 1}. {ins}" for i, ins in enumerate(instructions)]
    return "\n".join(lines) + f"\n{len(instructions) + 1}."


def instance_prompt(examples: list[Task], instruction: str) -> str:
    """Paper Table 8 (input first), in the fixed Instruction / Input / Output format."""
    blocks = [f"Instruction: {t.instruction}\nInput: {t.input or NO_INPUT}\nOutput: {t.output}"
              for t in examples]
    return "\n\n".join(blocks) + f"\n\nInstruction: {instruction}\nInput:"


def fit_prompt(build, examples: list, tok, budget: int) -> str:
    """`build(examples)` with as many of the in-context examples as fit in `budget` tokens.

    The paper's prompts assume GPT-3's 2048-token context; ours is `block_size`, and a long
    generated instruction (or a finer tokenizer) can push 8 examples past it. Dropping the
    last examples keeps the prompt's format, which is what the base model imitates."""
    for n in range(len(examples), 0, -1):
        prompt = build(examples[:n])
        if len(tok.encode(prompt)) <= budget:
            return prompt
    return prompt


def propose_instructions(model, tok, seeds, generated, settings, rng, generator) -> list:
    """Step 1: one new instruction per prompt; 6 seed + 2 generated in-context instructions."""
    prompts = []
    for _ in range(settings.per_iteration):
        n_gen = min(settings.generated_in_context, len(generated))
        shown = rng.sample([t.instruction for t in seeds], settings.in_context - n_gen)
        shown += rng.sample([t.instruction for t in generated], n_gen)
        rng.shuffle(shown)
        budget = model.config.block_size - settings.instruction_tokens
        prompts.append(fit_prompt(instruction_prompt, shown, tok, budget))
    return sample(model, tok, prompts, settings, generator, settings.instruction_tokens)


def write_instances(model, tok, instructions: list[str], seeds, settings, rng, generator) -> list:
    """Step 3: the model fills "Input:" (one line), then "Output:" (one line)."""
    # room for the input, then the output, each up to instance_tokens
    budget = model.config.block_size - 2 * settings.instance_tokens - 4
    prompts = [fit_prompt(lambda shown: instance_prompt(shown, ins),
                          rng.sample(seeds, settings.instance_examples), tok, budget)
               for ins in instructions]
    inputs = sample(model, tok, prompts, settings, generator, settings.instance_tokens)
    ok = [i for i, x in enumerate(inputs) if x is not None]
    outputs = [None] * len(instructions)
    second = sample(model, tok, [f"{prompts[i]} {inputs[i]}\nOutput:" for i in ok], settings,
                    generator, settings.instance_tokens)
    for i, out in zip(ok, second):
        outputs[i] = out
    return [(None if x is None else ("" if x.strip() == NO_INPUT else x), y)
            for x, y in zip(inputs, outputs)]


# ----------------------------------------------------------------------------------------------
# 2. and 3. The filters
def instruction_verdict(instruction, pool_tokens: list[list[str]], threshold: float):
    """None if the instruction may join the pool, else the reason it is dropped (and its max
    ROUGE-L to the pool)."""
    if instruction is None:
        return "instruction cut off", None
    n = len(instruction.split())
    if n < 3 or n > 40:
        return "too short or long", None
    if not instruction[0].isalpha() or re.search(r"(^|\s)\d+\.\s|Instruction:|Output:", instruction):
        return "malformed", None
    tokens = rouge_tokens(instruction)
    best = max((rouge_l(tokens, p) for p in pool_tokens), default=0.0)
    if best >= threshold:
        return "too similar (ROUGE-L)", best
    return None, best


def instance_verdict(task: Task):
    """None if the instance is valid, else the reason (the paper's heuristics)."""
    if task.input is None or task.output is None:
        return "instance cut off"
    if not words(task.output):
        return "empty output"
    out = " ".join(words(task.output))
    if out in (" ".join(words(task.input)), " ".join(words(task.instruction))):
        return "output repeats the input"
    if len(task.output.split()) > 40:
        return "output too long"
    return None


# ----------------------------------------------------------------------------------------------
# Grading by the oracle: the paper's A/B/C/D
def grade(prompt: str, response: str) -> str:
    """A/B/C/D of one (prompt, response) by the world's oracle (see the module docstring).

    An answer "responds" when the oracle finds it on topic, or when it is an answer of the right
    kind that is wrong (another town, another number, the other label): that is a C, not a D.
    """
    parsed = parse_prompt(prompt)
    if parsed is None or not words(response):
        return "D"
    gold = gold_reward(prompt, response)
    wrong_kind = bool(set(words(response)) & parsed.solution.competitors)
    if gold.components.get("relevant", 1.0) == 0.0 and not wrong_kind:
        return "D"
    correct = gold.components.get("correct", 0.0)
    if correct >= 0.9 and gold.total >= 0.9:
        return "A"
    return "B" if correct >= 0.5 else "C"


@functools.lru_cache(maxsize=None)
def _instruction_heads() -> dict:
    """Instructions of the world that take their input on the next line ("Is this review positive
    or negative?"): a valid task even before an input is attached. {instruction: family name}."""
    heads = {}
    for family in task_families():
        for template in family.templates:
            split = split_template(template)
            if split and split[1] is not None:
                heads[split[0]] = family.name
    return heads


def instruction_family(instruction):
    """The task family an instruction belongs to (with or without its input), or None."""
    if not instruction:
        return None
    parsed = parse_prompt(instruction)
    return parsed.family.name if parsed else _instruction_heads().get(instruction)


def valid_instruction(instruction) -> bool:
    """Does the instruction describe a task of the world (with or without its input)?"""
    return instruction_family(instruction) is not None


QUESTIONS = ("valid instruction", "appropriate input", "acceptable output", "all fields valid")


def data_quality(task: Task) -> dict:
    """The paper's data-quality questions (Table 2), answered by the oracle:
    does the instruction describe a valid task? is the input appropriate for it? is the output
    an acceptable response (class A or B)?"""
    instruction_ok = valid_instruction(task.instruction)
    input_ok = parse_prompt(task.prompt) is not None
    output_ok = grade(task.prompt, task.output) in ("A", "B")
    return {"valid instruction": instruction_ok, "appropriate input": input_ok,
            "acceptable output": output_ok, "all fields valid": instruction_ok and input_ok and output_ok}


def class_shares(classes: list[str]) -> dict:
    n = max(len(classes), 1)
    return {c: classes.count(c) / n for c in CLASSES}


# ----------------------------------------------------------------------------------------------
# The Self-Instruct loop
def self_instruct(base, tok, seeds: list[Task], settings, seed: int):
    """Run the iterations; return (generated pool, every candidate with its verdict, stats)."""
    rng = Random(f"self-instruct|{seed}")
    generator = torch.Generator().manual_seed(seed)
    generated, log, stats = [], [], []
    pool_tokens = [rouge_tokens(t.instruction) for t in seeds]
    seed_tokens = list(pool_tokens)
    bar = tqdm(range(1, settings.iterations + 1), desc="self-instruct", unit="iter")
    for it in bar:
        reasons: dict[str, int] = {}
        proposed = propose_instructions(base, tok, seeds, generated, settings, rng, generator)
        accepted = []
        for ins in proposed:                                  # 2. filter instructions
            reason, _ = instruction_verdict(ins, pool_tokens, settings.rouge_threshold)
            if reason is None:
                pool_tokens.append(rouge_tokens(ins))         # later candidates compare to it too
                accepted.append(ins)
            else:
                reasons[reason] = reasons.get(reason, 0) + 1
                log.append({"iteration": it, "instruction": ins, "verdict": reason})
        instances = write_instances(base, tok, accepted, seeds, settings, rng, generator)
        kept = 0
        for ins, (inp, out) in zip(accepted, instances):      # 3. filter instances, 4. add
            task = Task(ins, inp, out, origin="generated", iteration=it)
            reason = instance_verdict(task)
            entry = {"iteration": it, "instruction": ins, "input": inp, "output": out,
                     "verdict": reason or "kept",
                     "rouge_to_seeds": max(rouge_l(rouge_tokens(ins), s) for s in seed_tokens)}
            if reason is None:
                generated.append(task)
                parsed = parse_prompt(task.prompt)
                entry.update(grade=grade(task.prompt, task.output), quality=data_quality(task),
                             family=parsed.family.name if parsed else None)
                kept += 1
            else:
                reasons[reason] = reasons.get(reason, 0) + 1
            log.append(entry)
        stats.append({"iteration": it, "proposed": len(proposed), "kept": kept,
                      "pool_size": len(seeds) + len(generated), "dropped": reasons})
        bar.set_postfix(pool=len(seeds) + len(generated), kept=kept)
    bar.close()
    return generated, log, stats


# ----------------------------------------------------------------------------------------------
# Fine-tuning and evaluation
def fine_tune(base, tok, tasks: list[Task], cfg: SFTConfig, run, desc: str):
    model = copy.deepcopy(base)          # every arm starts from the same base weights
    torch.manual_seed(run.seed)
    model, _ = train_sft(model, tok, [(t.prompt, t.output) for t in tasks], cfg, device=run.device,
                         seed=run.seed, desc=desc)
    return model.eval()


def answer_and_grade(model, tok, examples, chat: bool, settings, device) -> dict:
    """Greedy answers to held-out prompts; task score, gold reward and A/B/C/D per group."""
    answers = generate_answers(model, tok, [ex.prompt for ex in examples], chat=chat,
                               max_new_tokens=settings.max_new_tokens, batch_size=128)
    groups: dict = {}
    for ex, ans in zip(examples, answers):
        row = score_answer(ex, ans["text"])
        row["class"] = grade(ex.prompt, ans["text"])
        groups.setdefault(ex.meta["group"], []).append(row)
        groups.setdefault("all", []).append(row)
    return {g: {"score": float(np.mean([r["score"] for r in rows])),
                "gold": float(np.mean([r["gold"] for r in rows])),
                "classes": class_shares([r["class"] for r in rows]), "n": len(rows),
                "golds": [r["gold"] for r in rows], "scores": [r["score"] for r in rows]}
            for g, rows in groups.items()}


# ----------------------------------------------------------------------------------------------
# Figures
def plot_pool(path: str, stats: list[dict], n_seeds: int) -> str:
    fig, axes = new_figure(ncols=2, width=5.6, height=3.8)
    ax = axes[0][0]
    its = [0] + [s["iteration"] for s in stats]
    ax.plot(its, [n_seeds] + [s["pool_size"] for s in stats], marker="o")
    ax.set(xlabel="iteration", ylabel="tasks in the pool", xticks=its,
           title="the task pool grows (seeds at iteration 0)")
    ax.grid(alpha=0.3)
    ax = axes[0][1]
    reasons = sorted({r for s in stats for r in s["dropped"]})
    x = np.arange(len(stats))
    bottom = np.zeros(len(stats))
    for k, reason in enumerate(["kept"] + reasons):
        vals = np.array([s["kept"] if reason == "kept" else s["dropped"].get(reason, 0)
                         for s in stats], dtype=float)
        ax.bar(x, vals, bottom=bottom, label=reason, color="C2" if reason == "kept" else f"C{k + 2}")
        bottom += vals
    ax.set_xticks(x, [str(s["iteration"]) for s in stats])
    ax.set(xlabel="iteration", ylabel="candidate instructions", title="what the filters dropped")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(fig, path)


def plot_quality(path: str, data_classes: dict, model_classes: dict, quality: dict,
                 proposed_valid: float) -> str:
    """Left: the paper's data-quality questions. Middle and right: stacked A/B/C/D bars of the
    data (seeds, generated) and of each model's answers on held-out prompts."""
    fig, axes = new_figure(ncols=3, width=4.8, height=4.4)
    ax = axes[0][0]
    names = ["valid instruction\n(all proposed)"] + [f"{k.replace(' ', chr(10), 1)}\n(kept)" for k in quality]
    vals = [proposed_valid] + list(quality.values())
    bars = ax.bar(range(len(vals)), vals, color=["C7"] + ["C0"] * len(quality))
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(vals)), names, fontsize=7)
    ax.set(ylim=(0, 1.05), xlabel="the paper's data-quality question", ylabel="share of the generated tasks",
           title="generated data: is each field valid?")
    for ax, (title, groups, who) in zip(axes[0][1:], (
            ("data, graded by the oracle", data_classes, "data set"),
            ("answers on held-out prompts", model_classes, "model"))):
        names = list(groups)
        left = np.zeros(len(names))
        for c in CLASSES:
            vals = np.array([groups[n][c] for n in names])
            ax.barh(names, vals, left=left, color=CLASS_COLORS[c], label=CLASS_TEXT[c])
            left += vals
        ax.set(xlim=(0, 1), xlabel="share in each quality class", ylabel=who, title=title)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    axes[0][2].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return save_figure(fig, path)


def plot_rouge(path: str, values: list[float], threshold: float) -> str:
    fig, axes = new_figure()
    ax = axes[0][0]
    ax.hist(values, bins=np.linspace(0, 1, 21), color="C0")
    ax.axvline(threshold, color="C3", ls="--", label=f"filter threshold {threshold}")
    ax.set(xlabel="ROUGE-L to the most similar seed instruction", ylabel="kept instructions",
           title="how new the generated instructions are")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
@dataclass
class LessonConfig:
    """Lesson 05's settings: the Self-Instruct loop, then the fine-tuning arms (the shared run flags
    --quick, --out, --device, --seed, --preset come from `pipeline.add_run_args`)."""

    # --- 0-4. the Self-Instruct loop -----------------------------------------------------------
    seed_families: str = SEED_FAMILIES
    """Task families of the seed tasks, comma-separated (names of world.task_families())."""
    seeds_per_family: int = 4
    """Seed tasks per family. Range: seeds_per_family >= 1."""
    iterations: int = 4
    """Self-Instruct rounds (--quick: 1). Range: iterations >= 1."""
    per_iteration: int = 128
    """Instructions proposed per round (--quick: 8). Range: per_iteration >= 1."""
    in_context: int = 8
    """Instructions shown in step 1 (paper: 8); at most the number of seed tasks.
    Range: in_context >= 1."""
    generated_in_context: int = 2
    """Of which generated ones, once there are some (paper: 2); at most --in-context.
    Range: generated_in_context >= 0."""
    instance_examples: int = 4
    """Seed examples shown in step 3; at most the number of seed tasks. Range: instance_examples >= 1."""
    temperature: float = 0.8
    """Sampling temperature of steps 1 and 3. Range: temperature >= 0 (0 = greedy decoding)."""
    top_p: float = 0.95
    """Nucleus sampling threshold. Range: 0 < top_p <= 1."""
    instruction_tokens: int = 32
    """Token budget of an instruction. Range: instruction_tokens >= 1."""
    instance_tokens: int = 32
    """Token budget of an input or output. Range: instance_tokens >= 1."""
    rouge_threshold: float = 0.7
    """ROUGE-L filter: an instruction at least this similar to one in the pool is dropped (paper:
    0.7; above 1 the filter never fires). Range: rouge_threshold > 0 (at 0 every instruction is dropped)."""
    gen_batch_size: int = 128
    """Prompts per generation batch. Range: gen_batch_size >= 1."""
    # --- fine-tuning and evaluation ------------------------------------------------------------
    steps: int = 100
    """SFT steps of each arm (--quick: 2). Range: steps >= 1."""
    batch_size: int = 16
    """SFT examples per step. Range: batch_size >= 1."""
    lr: float = 1e-3
    """SFT peak learning rate. Range: lr > 0."""
    eval_per_family: int = 10
    """Held-out prompts per family (--quick: 1). Range: eval_per_family >= 1."""
    max_new_tokens: int = 24
    """Answer budget in evaluation. Range: max_new_tokens >= 1."""

    def family_names(self) -> list[str]:
        return [f.strip() for f in self.seed_families.split(",") if f.strip()]

    def check(self) -> None:
        known = [f.name for f in task_families()]
        unknown = [f for f in self.family_names() if f not in known]
        if unknown or not self.family_names():
            what = f"unknown: {', '.join(unknown)}" if unknown else "no family named"
            raise ConfigError(f"--seed-families must be comma-separated task families of the world, got "
                              f"{self.seed_families!r} ({what}; known: {', '.join(known)})")
        n_seeds = self.seeds_per_family * len(self.family_names())
        for flag, value in (("--in-context", self.in_context),
                            ("--instance-examples", self.instance_examples)):
            if value > n_seeds:
                raise ConfigError(f"{flag} must be at most the number of seed tasks ({n_seeds} = "
                                  f"--seeds-per-family x seed families), got {value}")
        if self.generated_in_context > self.in_context:
            raise ConfigError(f"--generated-in-context must be at most --in-context "
                              f"({self.in_context}), got {self.generated_in_context}")


# --quick: the settings that change (from_args: defaults < QUICK < the flags given).
QUICK = dict(iterations=1, per_iteration=8, steps=2, eval_per_family=1)


def parse_args(argv=None) -> tuple:
    """(the run flags, the validated LessonConfig): a bad setting stops here, before any model loads."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(QUICK if args.quick else {}))


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", NAME)
    os.makedirs(out_dir, exist_ok=True)
    q = run.quick
    steps = settings.steps
    per_family = settings.eval_per_family
    t0 = time.perf_counter()
    print("Lesson 05 -- slides 002 'Using LLMs to generate Instructions', 'Self-Instruct "
          "Framework', 'Self-Instruct Evaluation'.")
    if q:
        print("(--quick: a seconds-long smoke run; the model is too small to show the effect)")
    base, tok = ensure_pretrained(run)

    # 0. the seed pool
    families = settings.family_names()
    seeds = seed_tasks(families, settings.seeds_per_family, run.seed)
    print(f"\n{len(seeds)} seed tasks ({settings.seeds_per_family} for each of {', '.join(families)}), "
          "e.g.:")
    for t in seeds[:: max(1, len(seeds) // 4)][:4]:
        print(f"  Instruction: {t.instruction!r}  Input: {t.input or NO_INPUT!r}  Output: {t.output!r}")

    # 1-4. the Self-Instruct loop on the base model
    generated, log, stats = self_instruct(base, tok, seeds, settings, run.seed)
    with open(os.path.join(out_dir, "generated.jsonl"), "w") as f:
        for e in log:
            f.write(json.dumps(e) + "\n")
    data = report_generation(seeds, generated, log, stats)

    # fine-tune: seeds alone vs seeds + generated, the same number of optimizer steps
    cfg = SFTConfig(steps=steps, batch_size=settings.batch_size, lr=settings.lr,
                    warmup_steps=min(10, steps), ni_fraction=0.0, eval_loss_every=0, ckpt_every=10**9)
    evals = compare_fine_tuning(base, tok, seeds, generated, families, cfg, per_family, settings, run)

    kept_log = [e for e in log if e["verdict"] == "kept"]
    figures = [plot_pool(os.path.join(out_dir, "pool.png"), stats, len(seeds)),
               plot_quality(os.path.join(out_dir, "quality.png"),
                            {"seed tasks": class_shares([grade(t.prompt, t.output) for t in seeds]),
                             "self-generated": data["classes"]},
                            {n: ev["all"]["classes"] for n, ev in evals.items()}, data["quality"],
                            data["proposed_valid_instruction"]),
               plot_rouge(os.path.join(out_dir, "rouge.png"), [e["rouge_to_seeds"] for e in kept_log],
                          settings.rouge_threshold)]
    write_json(os.path.join(out_dir, "metrics.json"), {
        "n_seeds": len(seeds), "seed_families": families, "iterations": stats, **data,
        "examples": kept_log[:20], "eval": evals, "sft_steps": steps,
        "seconds": round(time.perf_counter() - t0, 1)})
    explain(seeds, families, data, evals)
    print("Figures: " + ", ".join(figures))
    return 0


def report_generation(seeds, generated, log, stats) -> dict:
    """Print and return pool sizes, filter counts, the oracle's grades of the generated data."""
    kept_log = [e for e in log if e["verdict"] == "kept"]
    n_proposed = sum(s["proposed"] for s in stats)
    print(f"\nproposed {n_proposed} instructions in {len(stats)} rounds; kept {len(generated)} "
          f"({len(generated) / max(n_proposed, 1):.0%}); the pool grew {len(seeds)} -> "
          f"{len(seeds) + len(generated)}")
    for s in stats:
        print(f"  round {s['iteration']}: kept {s['kept']:3d} of {s['proposed']}, dropped "
              + ", ".join(f"{k} {v}" for k, v in sorted(s["dropped"].items())))
    classes = class_shares([e["grade"] for e in kept_log])
    quality = {q: float(np.mean([e["quality"][q] for e in kept_log])) if kept_log else 0.0
               for q in QUESTIONS}
    proposed_valid = float(np.mean([valid_instruction(e["instruction"]) for e in log
                                    if e["instruction"] is not None] or [0.0]))
    families = sorted({f for e in log if (f := instruction_family(e["instruction"]))})
    print(f"\nthe oracle on the proposed instructions: {proposed_valid:.0%} describe a valid task, "
          f"from {len(families)} task families: {', '.join(families)}")
    print("the oracle on the kept data (paper Table 2): "
          + ", ".join(f"{q} {v:.0%}" for q, v in quality.items()))
    print("quality classes of the kept data: " + ", ".join(f"{c} {classes[c]:.0%}" for c in CLASSES))
    for e in kept_log[:8]:
        print(f"  [{e['grade']}] Instruction: {e['instruction']!r}  Input: {e['input'] or NO_INPUT!r}"
              f"  Output: {e['output']!r}")
    return {"proposed": n_proposed, "kept": len(generated),
            "kept_fraction": len(generated) / max(n_proposed, 1),
            "pool_size": len(seeds) + len(generated), "proposed_valid_instruction": proposed_valid,
            "quality": quality, "classes": classes,
            "dropped": {r: sum(s["dropped"].get(r, 0) for s in stats)
                        for r in sorted({r for s in stats for r in s["dropped"]})},
            "generated_families": sorted({f for e in kept_log if (f := instruction_family(e["instruction"]))}),
            "proposed_families": sorted({f for e in log if (f := instruction_family(e["instruction"]))})}


def compare_fine_tuning(base, tok, seeds, generated, families, cfg, per_family, settings, run) -> dict:
    """Fine-tune on the seeds alone and on seeds + generated; grade answers to held-out prompts."""
    print(f"\nfine-tuning the base: {cfg.steps} steps of {cfg.batch_size} for each arm")
    arms = {"seeds only": fine_tune(base, tok, seeds, cfg, run, "seeds only"),
            "seeds + self-instruct": fine_tune(base, tok, seeds + generated, cfg, run,
                                               "seeds + self-instruct")}
    held = instruction_data(seed=run.seed, n_per_family=per_family, splits="test")
    for ex in held:
        ex.meta["group"] = "seed families" if ex.family in families else "other families"
    evals = {"base model (no SFT)": answer_and_grade(base, tok, held, False, settings, run.device)}
    for name, model in arms.items():
        evals[name] = answer_and_grade(model, tok, held, True, settings, run.device)
    print("\nheld-out prompts (new inputs; seed families and the other seen families):")
    for name, ev in evals.items():
        print(f"  {name:22s} " + "  ".join(
            f"{g}: score {ev[g]['score']:.2f} gold {ev[g]['gold']:.2f}"
            for g in ("seed families", "other families"))
            + "   classes " + " ".join(f"{c} {ev['all']['classes'][c]:.0%}" for c in CLASSES))
    return evals


def generation_verdict(n_seeds: int, families: list[str], data: dict) -> str:
    """Steps 1-4 in words: how many instructions, how valid, what the oracle says of the kept data."""
    q, c = data["quality"], data["classes"]
    beyond = sorted(set(data["proposed_families"]) - set(families))
    lines = [f"from {n_seeds} seed tasks the base model proposed {data['proposed']} instructions; "
             f"the oracle finds {data['proposed_valid_instruction']:.0%} of them to describe a "
             f"valid task of the world. The ROUGE-L filter and the validity checks kept "
             f"{data['kept_fraction']:.0%} of them, and the pool grew {n_seeds} -> {data['pool_size']} "
             f"tasks. The valid proposed instructions come from {len(data['proposed_families'])} task "
             f"families, {len(beyond)} of them beyond the {len(families)} seed families"
             + (" (the model writes tasks it saw listed in its corpus)." if beyond else ".")]
    lines.append(f"Of the {data['kept']} kept tasks, {q['valid instruction']:.0%} have a valid instruction, "
                 f"{q['appropriate input']:.0%} an appropriate input and {q['acceptable output']:.0%} "
                 f"an acceptable output; {q['all fields valid']:.0%} have all fields valid (the "
                 f"paper's GPT-3 data: 54%); classes A {c['A']:.0%}, B {c['B']:.0%}, C {c['C']:.0%}, "
                 f"D {c['D']:.0%}.")
    if q["all fields valid"] >= 0.4:
        lines.append("Like the paper's, most of the generated data is usable.")
    elif data["proposed_valid_instruction"] > q["acceptable output"] + 0.2:
        lines.append("Unlike the paper's, most of the generated data is not usable, and the step that "
                     "breaks is the instance: the base model proposes valid instructions more often "
                     "than it writes acceptable outputs for them.")
    else:
        lines.append("Unlike the paper's, most of the generated data is not usable: the instructions "
                     "are rarely valid tasks, and the outputs rarely acceptable.")
    return " ".join(lines)


def fine_tuning_change(evals: dict) -> dict:
    """Seeds + self-instruct minus seeds only, paired over the held-out prompts: gold reward and
    task score, mean difference and its standard error over prompts."""
    s, g = evals["seeds only"]["all"], evals["seeds + self-instruct"]["all"]
    out = {"n": len(s["golds"])}
    for key, rows in (("gold", "golds"), ("score", "scores")):
        out[key], out[f"{key}_se"] = mean_and_se([b - a for a, b in zip(s[rows], g[rows])])
        out[f"{key}_seeds"], out[f"{key}_generated"] = s[key], g[key]
    return out


def fine_tuning_verdict(ch: dict, acceptable_output: float) -> str:
    """The slide's 'Self-Instruct Evaluation' in words: does the generated data help fine-tuning?"""
    d, se = ch["gold"], ch["gold_se"]
    word = "helps" if d > 2 * se and d > 0 else "hurts" if d < -2 * se and d < 0 else \
        "makes no difference beyond two standard errors"
    text = (f"Fine-tuning on seeds + generated data instead of the seeds alone {word}: gold reward "
            f"{ch['gold_generated']:.2f} vs {ch['gold_seeds']:.2f} ({d:+.2f} +- {se:.2f} over "
            f"{ch['n']} held-out prompts), task score {ch['score_generated']:.2f} vs "
            f"{ch['score_seeds']:.2f} ({ch['score']:+.2f} +- {ch['score_se']:.2f}).")
    if word == "helps":
        return text + " As in the paper, the model's own data improves instruction following."
    reason = (" The generated outputs are rarely acceptable here: the paper's base model (GPT-3 175B) "
              "was a capable few-shot learner, this ~1M-parameter one is not -- the same lesson as "
              "'Impact of Base Model' in lesson 04." if acceptable_output < 0.3 else "")
    return text + " Unlike the paper, the self-generated data does not help here." + reason


def explain(seeds, families, data, evals) -> None:
    """What the numbers show, in words (read off the results, not assumed)."""
    print("\nWhat this shows: " + generation_verdict(len(seeds), families, data) + " "
          + fine_tuning_verdict(fine_tuning_change(evals), data["quality"]["acceptable output"]))


if __name__ == "__main__":
    sys.exit(cli_main(main))
