"""Evaluation: the sequence KL estimate, win rates with ties counting half, and sampled KL against a
log-prob loop over each unpadded sample."""

import pytest
import torch

from minialign.chat import end_id, prompt_ids
from minialign.evaluation import compare, evaluate_policy, sample_and_score, sequence_kl, win_rate
from minialign.model import GPT, GPTConfig
from minialign.tokenizer import Tokenizer

TOK = Tokenizer([])
CFG = GPTConfig(vocab_size=TOK.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16)


def test_sequence_kl_is_the_summed_token_k1():
    logp = torch.tensor([[-1.0, -2.0, 0.0, -0.5], [-0.25, -3.0, -1.0, 0.0]])
    logp_ref = torch.tensor([[-1.5, -1.0, -9.0, -0.5], [-0.75, -2.0, -2.0, -7.0]])
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 0]])
    want = [(-1.0 + 1.5) + (-2.0 + 1.0) + (-0.5 + 0.5),
            (-0.25 + 0.75) + (-3.0 + 2.0) + (-1.0 + 2.0)]
    got = sequence_kl(logp, logp_ref, mask)
    assert got.tolist() == pytest.approx(want)
    assert want[0] < 0                                    # a single sample's k1 can be negative
    assert sequence_kl(logp * mask, logp_ref * mask).tolist() == pytest.approx(want)


def test_win_rate_counts_ties_as_half():
    a = [3.0, 1.0, 2.0, 0.5, 0.0, 5.0]
    b = [1.0, 1.0, 4.0, 0.5, -1.0, 2.0]
    r = win_rate(a, b, n_boot=500)
    assert (r.wins, r.ties, r.losses, r.n) == (3, 2, 1, 6)
    assert r.win_rate == pytest.approx((3 + 0.5 * 2) / 6)
    assert r.ci_low <= r.win_rate <= r.ci_high
    allwin = win_rate([1, 2, 3], [0, 0, 0])
    assert (allwin.win_rate, allwin.ci_low, allwin.ci_high) == (1.0, 1.0, 1.0)
    assert win_rate([1, 1], [1, 1]).win_rate == 0.5
    with pytest.raises(ValueError):
        win_rate([1, 2], [1])


def test_bootstrap_over_groups_resamples_whole_prompts():
    # two prompts, each with all-win or all-loss samples: a bootstrap over prompts sees only
    # 0, 0.5 or 1, never the in-between values a sample-level bootstrap would produce.
    r = win_rate([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], groups=[0, 0, 0, 1, 1, 1], n_boot=400)
    assert r.win_rate == 0.5 and r.ci_low == 0.0 and r.ci_high == 1.0


def model(seed):
    torch.manual_seed(seed)
    return GPT(CFG).eval()


PROMPTS = ["hi", "tell me a story", "2+2?"]


def length_judge(prompt, response):
    return float(len(response)), {"length": float(len(response))}


def test_sampled_kl_equals_a_loop_over_each_unpadded_sample():
    pi, ref = model(0), model(1)
    s = sample_and_score(pi, ref, TOK, PROMPTS, judge=length_judge, n_samples=2,
                         max_new_tokens=12, seed=3, batch_size=4)
    assert s.prompt_index == [0, 0, 1, 1, 2, 2]
    # re-sample the same responses (same seed) to read their ids
    from minialign.generate import generate
    gen_ids = []
    g = torch.Generator().manual_seed(3)
    jobs = [p for p in PROMPTS for _ in range(2)]
    for start in (0, 4):
        chunk = [prompt_ids(TOK, p) for p in jobs[start:start + 4]]
        gen_ids += generate(pi, chunk, max_new_tokens=12, stop_ids=[end_id(TOK)],
                            pad_id=TOK.pad_id, generator=g).response_ids
    for k, (p, resp) in enumerate(zip(jobs, gen_ids)):
        ids = prompt_ids(TOK, p) + resp
        total = 0.0
        with torch.no_grad():
            lp = torch.log_softmax(pi.logits(pi(torch.tensor([ids])))[0].double(), -1)
            lr = torch.log_softmax(ref.logits(ref(torch.tensor([ids])))[0].double(), -1)
        for j in range(len(ids) - len(resp), len(ids)):
            total += (lp[j - 1, ids[j]] - lr[j - 1, ids[j]]).item()
        assert s.kl[k] == pytest.approx(total, abs=1e-4)
        assert s.lengths[k] == len(resp)


def test_evaluate_policy_kl_zero_against_itself_and_win_rate_of_paired_samples():
    pi = model(0)
    e = evaluate_policy(pi, pi, TOK, PROMPTS, judge=length_judge, n_samples=2, max_new_tokens=10)
    assert e["kl"] == pytest.approx(0.0, abs=1e-6)
    assert e["gold_reward"] == pytest.approx(sum(e["scores"]) / len(e["scores"]))
    assert e["components"]["length"] == pytest.approx(e["gold_reward"])
    same = evaluate_policy(pi, None, TOK, PROMPTS, judge=length_judge, n_samples=2, max_new_tokens=10)
    assert same["scores"] == e["scores"]                   # same seed: the same samples
    assert compare(e, same)["win_rate"] == 0.5             # all ties


def test_summary_diversity_on_a_hand_built_example():
    from minialign.evaluation import Samples, summarize
    s = Samples(prompt_index=[0, 1, 2, 3], responses=["A cat sat.", "A cat sat. ", "a dog sat.", "Hi"],
                ended=[True] * 4, lengths=[4, 4, 4, 2], gold=[0.5] * 4, components=[{}] * 4)
    m = summarize(s)
    # the trailing space does not make "A cat sat. " another answer: 3 of 4 distinct
    assert m["distinct_responses"] == pytest.approx(3 / 4)
    # bigrams: (a cat) (cat sat) twice, (a dog) (dog sat), "Hi" has none: 4 unique of 6
    assert m["distinct_2"] == pytest.approx(4 / 6)
    collapsed = summarize(Samples(prompt_index=[0, 1, 2], responses=["Hi"] * 3, ended=[True] * 3, lengths=[2] * 3,
                                  gold=[0.5] * 3, components=[{}] * 3))
    assert collapsed["distinct_responses"] == pytest.approx(1 / 3) and collapsed["distinct_2"] is None


def test_final_table_shows_the_diversity_columns():
    from minialign.report import final_table
    row = {"gold_reward": 0.5, "gold_reward_se": 0.01, "components": {"ends": 1.0}, "kl": 0.0,
           "win_rate_vs_sft": {"win_rate": 0.5, "ci_low": 0.5, "ci_high": 0.5}, "response_tokens": 4.0,
           "distinct_responses": 0.25, "distinct_2": 0.125}
    table = final_table({"policies": {"SFT": row, "old run": {k: v for k, v in row.items() if "distinct" not in k}}})
    lines = table.splitlines()
    assert "| distinct answers | distinct-2 | tokens |" in lines[0]
    assert lines[2].endswith("| 0.50 [0.50, 0.50] | 0.250 | 0.125 | 4.0 |")
    assert lines[3].endswith("| 0.50 [0.50, 0.50] | n/a | n/a | 4.0 |")          # metrics written before the columns


def test_flaw_rates_count_each_flaw_and_any_over_the_named_ones():
    from minialign.evaluation import flaw_rates
    from minialign.world import response_flaws
    prompts = ["In which town does Ana live?"] * 4
    responses = ["Ana lives in Hillside.", "I am not sure about this. Ana lives in Hillside.",
                 "Ana lives in Hillside. You are stupid.", "Everyone knows this. Ana lives in Hillside."]
    found = [response_flaws(p, r) for p, r in zip(prompts, responses)]
    got = flaw_rates(prompts, responses)
    for name in found[0]:
        assert got[name] == sum(f[name] for f in found) / 4
    assert got["any"] == sum(any(f.values()) for f in found) / 4
    some = flaw_rates(prompts, responses, names=("rude",))
    assert set(some) == {"rude", "any"} and some["any"] == some["rude"] == sum(f["rude"] for f in found) / 4
    assert found[2]["rude"] and not found[0]["rude"]          # the insult is seen, the clean answer is not


def test_clear_sign_calls_a_change_only_beyond_two_standard_errors():
    from minialign.evaluation import clear_sign, paired_mean_difference
    assert clear_sign({"mean": 0.21, "se": 0.1}) == 1 and clear_sign({"mean": -0.21, "se": 0.1}) == -1
    assert clear_sign({"mean": 0.19, "se": 0.1}) == 0 and clear_sign({"mean": -0.2, "se": 0.1}) == 0
    one = paired_mean_difference([3.0], [1.0])              # one item: a mean, but no spread to call a sign
    assert one == {"mean": 2.0, "se": float("inf"), "n": 1} and clear_sign(one) == 0
