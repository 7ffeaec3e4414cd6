"""minialign: LLM post-training (SFT, reward models, PPO, fine-grained rewards, DPO) from scratch.

One concept per file; start with `model.py`, `tokenizer.py` and `logprobs.py`, then the algorithm
files in the order of the lectures: `pretrain.py`, `sft.py`, `reward.py`, `ppo.py`,
`finegrained.py`, `dpo.py`.
"""

__version__ = "0.1.0"
