"""Fine-grained rewards: segment ends T_j from generated ids, the combined per-token reward that reaches the PPO
update (segment rewards x weights + the sequence reward on the end token - beta KL), the segment RM read-out,
the detoxification rewards, and a train_ppo run with the fine-grained reward_fn. Expected values are written
out by hand or computed here the obvious way (full logits, one prefix at a time)."""

import copy
import math

import pytest
from lesson_loader import load_lesson
import torch
import torch.nn as nn

from minialign import ppo
from minialign.evaluation import distinct_n
from minialign.finegrained import (FineGrainedConfig, FineGrainedReward, SegmentRewardModel, ToxicityReward,
                                   combine_rewards, label_response, place_segment_rewards,
                                   segment_response, segment_reward, split_subsentences, toxicity_rewards)
from minialign.model import GPT, GPTConfig
from minialign.ppo import PPOConfig, Rollout, ValueModel
from minialign.tokenizer import Tokenizer
from minialign.world import toxicity

# A tokenizer whose tokens we know by heart: the 256 bytes, then these merges, then the specials.
#   256 = " a"   257 = " am"   258 = ". " (a token that crosses a sentence boundary)   259 = '!"'
MERGES = [(32, ord("a")), (256, ord("m")), (ord("."), 32), (ord("!"), ord('"'))]
AM, DOT_SPACE, BANG_QUOTE = 257, 258, 259


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(MERGES)


def b(s):
    """Byte-token ids of a plain ASCII string (one token per character)."""
    return list(s.encode())


def end(tok):
    return tok.special["<|end|>"]


# ----------------------------------------------------------------------------------------------------------------
# 1. Segment ends T_j, from the generated ids
def test_segment_ends_worked_out_by_hand(tok):
    # tokens: 0 "I" | 1 " am" | 2 " " | 3 "o" | 4 "k" | 5 ". " | 6 "H" | 7 "e" | 8 "." | 9 <|end|>
    ids = b("I") + [AM] + b(" ok") + [DOT_SPACE] + b("He.") + [end(tok)]
    text, segs = segment_response(tok, ids)
    assert text == "I am ok. He."
    assert [text[s.start:s.end] for s in segs] == ["I am ok.", "He."]
    assert [s.token_end for s in segs] == [5, 8]      # the "." of sentence 1 sits inside the ". " token

    # a closing quote belongs to its sentence: '!"' is one token (3 here)
    ids = b("Go") + b(" now") + [BANG_QUOTE] + b(" Ok.") + [end(tok)]
    #        0 1     2 3 4 5      6              7 8 9 10
    text, segs = segment_response(tok, ids)
    assert [text[s.start:s.end] for s in segs] == ['Go now!"', "Ok."]
    assert [s.token_end for s in segs] == [6, 10]


def test_no_final_punctuation_and_a_multi_token_last_word(tok):
    # "Ok. The mattress" cut off by the length budget (no <|end|>): the last sentence has no end mark and its
    # last word is 8 byte tokens; T_2 is the token of its final "s".
    ids = b("Ok.") + b(" The") + b(" mattress")
    #        0 1 2    3 4 5 6    7 8 ... 15
    text, segs = segment_response(tok, ids)
    assert [text[s.start:s.end] for s in segs] == ["Ok.", "The mattress"]
    assert [s.token_end for s in segs] == [2, 15]
    # clipped to the last valid token when fewer tokens are valid (e.g. a caller's mask)
    _, segs = segment_response(tok, ids, n_valid=10)
    assert [s.token_end for s in segs] == [2, 9]
    # the same response ended by <|end|>: the sentence still ends on its last word's token, not on <|end|>
    _, segs = segment_response(tok, ids + [end(tok)])
    assert [s.token_end for s in segs] == [2, 15]


def test_a_character_split_across_tokens_belongs_to_the_token_that_completes_it(tok):
    # "Ok. Café": "é" is the two bytes c3 a9, generated as two byte tokens (7 and 8)
    ids = b("Ok.") + b(" Caf") + [0xC3, 0xA9] + [tok.eot_id]
    text, segs = segment_response(tok, ids)
    assert text == "Ok. Café"
    assert [s.token_end for s in segs] == [2, 8]


def test_subsentences_worked_out_by_hand():
    t = "When the dog ran away, the little boy cried for a long time, and then he went home; it was late."
    assert [t[s:e] for s, e in split_subsentences(t)] == [
        "When the dog ran away,", "the little boy cried for a long time,", "and then he went home; it was late."]
    t = "Yes, it is. No, it is not, ok."                   # pieces under 5 words merge
    assert [t[s:e] for s, e in split_subsentences(t)] == ["Yes, it is.", "No, it is not, ok."]


# ----------------------------------------------------------------------------------------------------------------
# 2. Per-token rewards
def test_place_segment_rewards_sums_and_clips():
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.float32)
    got = place_segment_rewards([[1, 3], [0, 4, 1]], [[0.5, -1.0], [2.0, 3.0, -0.5]], mask)
    want = torch.tensor([[0, 0.5, 0, -1.0, 0], [2.0, 3.0 - 0.5, 0, 0, 0]])  # row 1: T=4 clipped to the last token 1
    assert torch.equal(got, want)


def test_combined_reward_weights_and_the_sequence_reward_once_on_the_end_token():
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    parts = {"tox": ([[2, 4], [2]], [[1.0, -1.0], [1.0]]), "rel": ([[4], [0, 2]], [[-1.0], [1.0, 1.0]])}
    got = combine_rewards(parts, {"tox": 0.5, "rel": 0.3}, mask, torch.tensor([2.0, -1.0]), 0.25)
    want = torch.zeros(2, 6)
    want[0, 2] = 0.5 * 1.0
    want[0, 4] = 0.5 * -1.0 + 0.3 * -1.0 + 0.25 * 2.0     # a sentence ending on the last token: its rewards + seq once
    want[1, 0] = 0.3 * 1.0
    want[1, 2] = 0.5 * 1.0 + 0.3 * 1.0 + 0.25 * -1.0
    assert torch.allclose(got, want, atol=1e-7)


def test_segment_reward_forms():
    logits = torch.tensor([2.0, -1.0, 0.5])                    # logit of P(no error)
    assert segment_reward(logits, "penalty").tolist() == [0.0, -1.0, 0.0]
    assert segment_reward(logits, "sign").tolist() == [1.0, -1.0, 1.0]
    want = [2 / (1 + math.exp(-x)) - 1 for x in (2.0, -1.0, 0.5)]
    assert segment_reward(logits, "prob").tolist() == pytest.approx(want)


class StubSegmentRM(nn.Module):
    """Classifier stub: logit +1 ("fine") unless the token at the segment end is `bad_token`."""

    def __init__(self, bad_token):
        super().__init__()
        self.bad = bad_token

    def forward(self, ids, attention_mask, rows, cols):
        return torch.where(ids[rows, cols] == self.bad, -1.0, 1.0)


class StubSequenceRM(nn.Module):
    """Sequence RM stub: 0.1 x the number of real tokens of the (right-padded) prompt + response."""

    def forward(self, ids, attention_mask):
        return 0.1 * attention_mask.sum(1).float()


def hand_rollout(tok, prompts, responses):
    """A Rollout laid out as generate() does: prompts left-padded to P, responses right-padded."""
    P = max(map(len, prompts))
    N = max(map(len, responses))
    B = len(prompts)
    tokens = torch.full((B, P + N), tok.pad_id)
    attn, resp = torch.zeros(B, P + N, dtype=torch.long), torch.zeros(B, P + N, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        tokens[i, P - len(p):P] = torch.tensor(p)
        tokens[i, P:P + len(r)] = torch.tensor(r)
        attn[i, P - len(p):P + len(r)] = 1
        resp[i, P:P + len(r)] = 1
    ended = torch.tensor([r[-1] == end(tok) for r in responses])
    return Rollout(tokens=tokens, attention_mask=attn, response_mask=resp, prompt_len=P,
                   prompt_ids=[list(p) for p in prompts], response_ids=[list(r) for r in responses], ended=ended,
                   mask=resp[:, P:].float())


def tiny_gpt(vocab, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=64, n_layer=1, n_head=2, n_embd=32))


def test_the_reward_that_reaches_the_ppo_update_is_the_slides_r_t(tok, monkeypatch):
    """r_t = sum_k sum_j 1(t = T_j^k) w_k R_k(x, y, j) + [t = end] w_seq R_seq - beta (log pi_theta - log pi_init),
    captured where ppo.ppo_iteration hands it to ppo.ppo_update; first minibatch ratio exactly 1."""
    u, a = tok.special["<|user|>"], tok.special["<|assistant|>"]
    prompts = [[u] + b("Hi") + [end(tok), a], [u] + b("Tell me") + [end(tok), a]]
    responses = [b("I") + [AM] + b(" ok") + [DOT_SPACE] + b("He.") + [end(tok)],    # T = 5, 8; ended
                 b("Go.") + b(" No")]                                                # T = 2, 5; not ended
    rollout = hand_rollout(tok, prompts, responses)
    monkeypatch.setattr(ppo, "sample_rollout", lambda *args, **kw: copy.deepcopy(rollout))
    captured = {}
    real_update = ppo.ppo_update

    def spy(policy, value_model, r, rewards, cfg, optimizer, generator, loss_of=None):
        captured["rewards"] = rewards.clone()
        out = real_update(policy, value_model, r, rewards, cfg, optimizer, generator, loss_of=loss_of)
        captured["stats"] = out
        return out

    monkeypatch.setattr(ppo, "ppo_update", spy)
    policy = tiny_gpt(tok.vocab_size, 1)
    ref = tiny_gpt(tok.vocab_size, 2)                      # a different pi_init, so the KL is not zero
    value = ValueModel(tiny_gpt(tok.vocab_size, 3))
    cfg = PPOConfig(batch_size=2, n_minibatches=2, ppo_epochs=1, temperature=0.7, beta=0.2, max_new_tokens=12)
    ppo.prepare_models(policy, ref, None, value, torch.device("cpu"))
    weights = {"tox": 0.5, "rel": 0.3}
    holistic = ppo.rm_reward_fn(StubSequenceRM(), cfg, tok.pad_id)      # the holistic PPO's reward, unnormalised
    reward_fn = FineGrainedReward(tok, {"tox": StubSegmentRM(ord(".")), "rel": StubSegmentRM(ord("o"))}, weights,
                                  sequence_reward=holistic, w_sequence=0.25, reward_form="sign")
    # by hand. Segment-end tokens: row 0 "." (in ". ") at 5 and "." at 8; row 1 "." at 2 and "o" at 5.
    # tox stub: -1 where the end token is the byte "." (row 0 T=8, row 1 T=2), else +1 (row 0 T=5 is ". ").
    # rel stub: -1 where the end token is "o" (row 1 T=5), else +1.
    seq0 = 0.1 * (len(prompts[0]) + len(responses[0]))    # ended: the stub's score
    want = torch.zeros(2, 10)
    want[0, 5] = 0.5 * 1 + 0.3 * 1
    want[0, 8] = 0.5 * -1 + 0.3 * 1
    want[0, 9] = 0.25 * seq0                              # the sequence reward on <|end|>, once
    want[1, 2] = 0.5 * -1 + 0.3 * 1
    want[1, 5] = 0.5 * 1 + 0.3 * -1 + 0.25 * -1.0         # not ended: PPO's missing-end penalty replaces the score
    with torch.no_grad():           # - beta * k1, from full logits at temperature T, before the policy is updated
        P = rollout.prompt_len
        for m, sign in ((policy, -1.0), (ref, 1.0)):
            logsm = torch.log_softmax(m.logits(m(rollout.tokens, attention_mask=rollout.attention_mask)).double()
                                      / cfg.temperature, -1)
            for row, resp in enumerate(responses):
                for i in range(len(resp)):
                    want[row, i] += sign * cfg.beta * logsm[row, P - 1 + i, resp[i]].item()
    opt = ppo.make_optimizer(policy, value, cfg)
    ppo.ppo_iteration(policy, ref, value, reward_fn, prompts, cfg, cfg.beta, opt, end_id=end(tok), pad_id=tok.pad_id,
                      generator=torch.Generator().manual_seed(0))
    assert torch.allclose(captured["rewards"], want, atol=1e-5), (captured["rewards"], want)
    stats = captured["stats"]
    assert stats["first_ratio_maxdev"] < 1e-6 and stats["first_approxkl"] < 1e-12 and stats["first_clipfrac"] == 0


# ----------------------------------------------------------------------------------------------------------------
# 3. Segment reward models
def test_segment_rm_reads_each_segment_at_its_last_token_in_one_forward(tok):
    model = SegmentRewardModel(tiny_gpt(tok.vocab_size, 4)).eval()
    ids = torch.tensor([[tok.pad_id, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17]])   # row 0 left-padded
    attn = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [1] * 7])
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([3, 6, 2])
    with torch.no_grad():
        got = model(ids, attn, rows, cols)
        for s, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):   # the prefix alone, read at its end
            prefix = ids[r, :c + 1][attn[r, :c + 1].bool()][None]
            h = model.trunk(prefix)[0, -1]
            assert got[s].item() == pytest.approx(model.head(h).item(), abs=1e-5)


def test_raw_text_labels_land_on_the_segment_end_tokens_after_the_prompt():
    """label_text_response (a base model's continuation): ids = prompt ids + response ids as generated, each
    sentence's column is P + T_j, and the labels are the oracle's sentence labels."""
    from minialign.finegrained import label_text_response
    from minialign.world import label_sentences
    tok = Tokenizer([])                                            # byte tokens: T_j is a character index
    prompt_ids = b("Ben said")
    response = b(" Ben ran. The sun is hot. Ben") + [tok.eot_id]
    question = "Continue the story: Ben and Mia played with a ball."
    item = label_text_response(tok, prompt_ids, response, question, ["relevance"], FineGrainedConfig())
    P = len(prompt_ids)
    assert item.ids == prompt_ids + response
    assert item.cols["relevance"] == [P + 8, P + 24, P + 28]     # ".", ".", and the cut-off last word's "n"
    want = [int(not lab.irrelevant) for lab in label_sentences(question, " Ben ran. The sun is hot. Ben")]
    assert item.labels["relevance"] == want == [1, 0, 1]


def test_oracle_labels_land_on_the_segment_end_tokens():
    from minialign.tokenizer import train_bpe
    tok = train_bpe("Mia has a red ball. You are so stupid. The answer is four. " * 30, vocab_size=300, progress=False)
    item = label_response(tok, "What color is the ball of Mia?", "You are so stupid. The ball is red.",
                          ["toxicity"], FineGrainedConfig())
    assert item.labels["toxicity"] == [0, 1]
    assert [tok.decode([item.ids[c]]).endswith(".") for c in item.cols["toxicity"]] == [True, True]
    text = tok.decode(item.ids[item.cols["toxicity"][0] + 1:])
    assert text.startswith(" The ball")           # the first sentence ends right before " The"


# ----------------------------------------------------------------------------------------------------------------
# 4. Detoxification rewards (slide "Example: Detoxification")
def test_slide_detox_example_with_its_numbers():
    text = "I am such an idiot. She is so smart!"
    fake = {"": 0.0, "I am such an idiot.": 0.72, text: 0.60}.get
    _, segs = segment_response(Tokenizer([]), list(text.encode()))
    fg = toxicity_rewards(text, segs, "finegrained", tox=fake)
    assert [t for t, _ in fg] == [18, 35]
    assert [r for _, r in fg] == pytest.approx([0.00 - 0.72, 0.72 - 0.60])      # Tox(empty) = 0
    assert toxicity_rewards(text, segs, "holistic", tox=fake) == [(-1, pytest.approx(1 - 0.60))]


def test_toxicity_reward_fn_on_a_rollout(tok):
    responses = [b("You are dumb.") + b(" Go home now, Ben.") + [tok.eot_id], b("Nice day") + [tok.eot_id]]
    r = hand_rollout(tok, [b("Ben said"), b("Mia said")], responses)
    fg, info = ToxicityReward(tok, "finegrained")(r)
    hol, _ = ToxicityReward(tok, "holistic")(r)
    t1, t12 = toxicity("You are dumb."), toxicity("You are dumb. Go home now, Ben.")
    want_fg, want_hol = torch.zeros(2, 32), torch.zeros(2, 32)
    want_fg[0, 12], want_fg[0, 30] = -(t1 - 0.0), -(t12 - t1)        # the "." of each sentence (byte tokens)
    want_fg[1, 7] = -0.0                                            # "Nice day" has no toxicity
    want_hol[0, 31], want_hol[1, 8] = 1 - t12, 1.0                  # on the last token (<|endoftext|>)
    assert t1 > t12 > 0
    assert torch.allclose(fg, want_fg) and torch.allclose(hol, want_hol)
    assert fg.sum(1).tolist() == pytest.approx([-t12, 0.0])         # the deltas telescope to -Tox(y)
    assert info["toxicity"].tolist() == pytest.approx([t12, 0.0])


def test_distinct_n_by_hand():
    assert distinct_n(["a b a b", "a b c"], 2) == pytest.approx(3 / 5)   # ab ba ab | ab bc -> {ab, ba, bc}
    assert distinct_n(["a b c", "a b c"], 3) == pytest.approx(1 / 2)
    assert math.isnan(distinct_n(["a"], 2))


# ----------------------------------------------------------------------------------------------------------------
# 5. The same train_ppo, with the fine-grained reward_fn
def test_train_ppo_runs_with_the_fine_grained_reward(tmp_path):
    tok = Tokenizer([])
    policy = tiny_gpt(tok.vocab_size, 5)
    ref = copy.deepcopy(policy)
    from minialign.reward import RewardModel
    rm = RewardModel(tiny_gpt(tok.vocab_size, 6))
    rms = {"toxicity": SegmentRewardModel(tiny_gpt(tok.vocab_size, 7)),
           "relevance": SegmentRewardModel(tiny_gpt(tok.vocab_size, 8))}
    cfg = PPOConfig(iterations=2, batch_size=4, n_minibatches=2, ppo_epochs=1, max_new_tokens=8, temperature=1.0,
                    n_samples_shown=1)
    reward_fn = FineGrainedReward(tok, rms, {"toxicity": 0.5, "relevance": 0.3},
                                  sequence_reward=ppo.rm_reward_fn(rm, cfg, tok.pad_id), w_sequence=0.3)
    gold = lambda p, r: float(len(r) > 0)
    metrics = ppo.train_ppo(policy, ref, None, ValueModel.from_reward_model(rm), tok, ["a. b.", "c d."], cfg,
                            str(tmp_path), "cpu", reward_fn=reward_fn, gold_fn=gold)
    h = metrics["history"]
    assert len(h["iteration"]) == 2 and max(h["first_ratio_maxdev"]) < 1e-6
    assert "toxicity_reward" in h and "sequence_score" in h
    assert (tmp_path / "ckpt.pt").exists()


# ----------------------------------------------------------------------------------------------------------------
# 5. Lesson 09's customization reward and its trend verdict


class OffTopicAfterTheFirst(nn.Module):
    """A stand-in relevance RM: logit +1 (fine) at the first segment end of each row, -1 (off topic) after it."""

    def forward(self, ids, attention_mask, rows, cols):
        first = torch.ones_like(rows, dtype=torch.bool)
        first[1:] = rows[1:] != rows[:-1]
        return torch.where(first, 1.0, -1.0)


def test_story_reward_places_each_part_by_hand():
    """-w_rel at each off-topic sentence end, -dTox at each sentence end, W_COMPLETE x completeness on the
    last token, each once; the opening's people and things come from the prompt ids."""
    from minialign.world import story_completeness
    lesson = load_lesson("09_fine_grained")
    tok = Tokenizer([])                                                  # byte tokens: T_j = character index
    opening = "Ben took the ball from Mia."
    first, second = " Mia was sad.", " Zoe is a dumb cat."
    response = b(first + second) + [tok.eot_id]
    r = hand_rollout(tok, [b(opening)], [response])
    w_rel = 0.4
    rewards, info = lesson.StoryReward(tok, OffTopicAfterTheFirst(), w_rel)(r)
    t1, t2 = len(first) - 1, len(first + second) - 1                       # the two "." tokens
    tox1, tox12 = toxicity(first.strip()), toxicity((first + second).strip())
    want = torch.zeros(1, len(response))
    want[0, t1] += -(tox1 - 0.0) * lesson.W_TOXICITY                     # sentence 1: fine for the RM
    want[0, t2] += -w_rel - (tox12 - tox1) * lesson.W_TOXICITY           # sentence 2: off topic for the RM
    want[0, -1] += lesson.W_COMPLETE * story_completeness(opening, first + second)
    assert tox12 > tox1 == 0.0
    assert story_completeness(opening, first + second) == pytest.approx(1 / 3)   # mia of ben, ball, mia
    assert torch.allclose(rewards, want)
    assert info["irrelevant_rm"].tolist() == [0.5] and info["sentences"].tolist() == [2.0]


def test_clear_trend_needs_monotone_change_beyond_two_standard_errors():
    clear_trend = load_lesson("09_fine_grained").clear_trend
    assert clear_trend([16.7, 18.8, 21.9], [0.6, 0.6, 0.4]) == 1          # rises: larger weight, shorter
    assert clear_trend([21.9, 18.8, 16.7], [0.4, 0.6, 0.6]) == -1
    assert clear_trend([16.7, 17.0, 17.2], [0.6, 0.6, 0.6]) == 0          # 0.5 apart, SE of the gap 0.85
    assert clear_trend([10.0, 25.0, 20.0], [0.5, 0.5, 0.5]) == 0          # not monotone
