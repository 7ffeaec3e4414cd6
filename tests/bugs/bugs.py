"""The classic bugs of LLM post-training, each planted by a small patch and caught by a named test.

Every entry is one bug that users of RLHF libraries actually hit, written as a patch to this repository:

    id        short, unique name ("area-what-goes-wrong")
    area      sft, reward, ppo, grpo, finegrained, dpo, generation, kernel, checkpoint, tokenizer, oracle
    file      the file the patch edits, relative to the repository root
    patch     [(old, new), ...]: exact string replacements, applied in order; each `old` must occur exactly
              once in the file at that point, otherwise the patch is stale (the code moved: update the snippet)
    tests     pytest node ids that must fail once the bug is planted (the runner runs them first)
    symptom   what a student would see in training if the bug slipped through

`python tests/bugs/run.py` plants each bug in a temporary copy and checks that the named tests catch it (then that
nothing else in the default suite passes it silently); `tests/test_bug_list.py` checks on every CI run that
each patch still applies. The list doubles as "find the bug" exercises: see tests/bugs/README.md.
"""

BUGS: list[dict] = []


def bug(id: str, area: str, file: str, patch: list[tuple[str, str]], tests: list[str], symptom: str) -> None:
    BUGS.append(dict(id=id, area=area, file=file, patch=list(patch), tests=list(tests), symptom=symptom))


PPO = "minialign/ppo.py"
T_PPO = "tests/test_ppo.py::"
T_WIRING = "tests/test_ppo_wiring.py::"

# ---------------------------------------------------------------------------------------------------------------
# PPO: what ppo_update and train_ppo feed the formulas (the wiring)
# ---------------------------------------------------------------------------------------------------------------
bug("ppo-advantages-whitened-over-padding", "ppo", PPO,
    [("advantages = whiten(advantages, mask, unbiased=cfg.unbiased_variance) * mask",
      "advantages = whiten(advantages, torch.ones_like(mask), unbiased=cfg.unbiased_variance) * mask")],
    [T_WIRING + "test_first_minibatch_sees_masked_whitened_gae_and_unwhitened_returns"],
    "The zeros of the pads enter the mean and variance, so short responses get a constant advantage offset: "
    "PPO quietly prefers long (or short) answers whatever the reward says.")

bug("ppo-after-end-gae-drops-the-score-slot", "ppo", PPO,
    [("compute_gae(rewards, rollout.values, vmask, cfg.gamma, cfg.lam)",
      "compute_gae(rewards, rollout.values, mask, cfg.gamma, cfg.lam)")],
    [T_WIRING + "test_after_end_update_runs_trl_gae_over_the_score_slot"],
    "With score_position='after_end' the score sits one slot after <|end|>, outside the response mask, so GAE "
    "never sees it: the proxy reward stays flat and only the KL term trains the policy.")

bug("ppo-after-end-value-zeroed-at-the-score-slot", "ppo", PPO,
    [("r.prompt_len) * vmask", "r.prompt_len) * r.mask")],
    [T_WIRING + "test_after_end_iteration_keeps_the_value_of_the_score_slot_like_trl"],
    "With score_position='after_end' the score is bootstrapped against V = 0 at its slot instead of the value "
    "of the finished response (TRL keeps it), so the value model cannot learn to predict the score there and "
    "advantages carry the whole score as noise.")

bug("ppo-resume-resets-adaptive-beta", "ppo", PPO,
    [('KLController(state["beta"], ', "KLController(cfg.beta, ")],
    [T_WIRING + "test_resume_keeps_the_adaptive_beta"],
    "Every resumed run restarts the adaptive controller at the initial beta: the KL curve jumps at each "
    "restart and an interrupted run no longer matches an uninterrupted one.")

bug("ppo-checkpoint-saves-the-initial-beta", "ppo", PPO,
    [('state["beta"] = kl_ctl.update(stats["kl"], cfg.batch_size)', 'kl_ctl.update(stats["kl"], cfg.batch_size)')],
    [T_WIRING + "test_resume_keeps_the_adaptive_beta"],
    "The checkpoint stores the beta the run started with, not the adapted one: every resume silently undoes "
    "the controller's work and the run depends on where it was interrupted.")

bug("ppo-epochs-ignored", "ppo", PPO,
    [("for _ in range(cfg.ppo_epochs):", "for _ in range(1):")],
    [T_WIRING + "test_each_epoch_runs_every_minibatch_once"],
    "Each rollout is used for one pass instead of ppo_epochs: learning is several times slower per sample "
    "and clipfrac stays near 0, which looks like a healthy run.")

bug("ppo-returns-from-whitened-advantages", "ppo", PPO,
    [("advantages = whiten(advantages, mask, unbiased=cfg.unbiased_variance) * mask",
      "advantages = whiten(advantages, mask, unbiased=cfg.unbiased_variance) * mask\n"
      "        returns = (advantages + rollout.values) * vmask")],
    [T_WIRING + "test_first_minibatch_sees_masked_whitened_gae_and_unwhitened_returns"],
    "The value targets lose the reward's scale and sign (whitened advantages have mean 0), so the value "
    "model never learns what a good response is worth and explained variance stays near 0.")

bug("ppo-reward-whitening-shifts-the-mean", "ppo", PPO,
    [("whiten(rewards, vmask, shift_mean=False,", "whiten(rewards, vmask, shift_mean=True,")],
    [T_WIRING + "test_reward_whitening_scales_but_keeps_the_mean"],
    "With whiten_rewards=True a batch of uniformly bad answers gets rewards of mean 0: the sign of the reward "
    "is lost and the policy stops being pushed away from what everyone scores low.")

bug("ppo-lr-anneal-inverted", "ppo", PPO,
    [("linear_decay(it, cfg.iterations, cfg.lr) if cfg.anneal_lr", "cfg.lr * (it + 1) / cfg.iterations if cfg.anneal_lr")],
    [T_WIRING + "test_learning_rate_anneals_linearly_to_zero"],
    "The learning rate grows to its peak at the last iteration instead of decaying: early iterations barely "
    "move, the last ones take the largest steps and the KL shoots up at the end of training.")

bug("ppo-value-head-not-rescaled", "ppo", PPO,
    [('value_model.rescale_(*state["score_norm"])', "pass")],
    [T_WIRING + "test_value_head_follows_the_score_normalisation"],
    "The value model copied from the reward model predicts raw scores while the rewards are normalised: the "
    "first advantages are dominated by that offset and the value loss starts huge.")

bug("ppo-reference-logprobs-from-the-policy", "ppo", PPO,
    [("r.ref_logprobs = response_logprobs(ref, ", "r.ref_logprobs = response_logprobs(policy, ")],
    [T_WIRING + "test_per_token_rewards_are_minus_beta_k1_against_the_reference"],
    "The KL to the reference is exactly 0 at every iteration, so nothing keeps the policy near the SFT model: "
    "the proxy reward climbs while the text degenerates (reward hacking).")

bug("ppo-kl-sign-flipped", "ppo", PPO,
    [("rewards = task_rewards.to(kl.device) - beta * kl", "rewards = task_rewards.to(kl.device) + beta * kl")],
    [T_WIRING + "test_per_token_rewards_are_minus_beta_k1_against_the_reference"],
    "The KL term becomes a bonus for moving away from the reference: the KL grows without bound and the "
    "policy drifts into gibberish that is far from pi_ref.")

bug("ppo-rollouts-sample-top-k", "ppo", PPO,
    [("top_k=0, top_p=1.0, generator=generator, rows=rows)", "top_k=10, top_p=1.0, generator=generator, rows=rows)")],
    [T_WIRING + "test_rollouts_use_pure_sampling_at_the_ppo_temperature"],
    "Truncated sampling draws tokens the policy gives low probability to, so the per-token KL goes negative "
    "and the policy can earn reward by pushing log-probs below the reference.")

# ---------------------------------------------------------------------------------------------------------------
# PPO: the textbook formulas
# ---------------------------------------------------------------------------------------------------------------
bug("ppo-score-on-the-last-column", "ppo", PPO,
    [('if position == "end":\n        idx = seq_len',
      'if position == "end":\n        idx = torch.full_like(seq_len, N - 1)')],
    [T_PPO + "test_per_token_rewards_equal_a_hand_built_vector",
     T_PPO + "test_rm_reward_fn_reads_the_last_real_token_and_normalises"],
    "Short responses get their score on a pad after <|end|>, outside the mask, so only responses that fill "
    "the whole budget are ever rewarded: lengths drift to the maximum.")

bug("ppo-gae-bootstraps-past-the-end", "ppo", PPO,
    [("rewards, values = rewards * mask, values * mask", "rewards, values = rewards * mask, values")],
    [T_PPO + "test_gae_equals_a_backwards_loop_per_response"],
    "The last real token bootstraps from the value of a pad after the episode ended, adding noise (and a "
    "bias towards whatever the value head says about pads) to every advantage.")

bug("ppo-old-logprobs-without-temperature", "ppo", PPO,
    [("r.prompt_len, cfg.temperature, return_entropy=True)", "r.prompt_len, 1.0, return_entropy=True)")],
    [T_PPO + "test_rollout_logprobs_use_temperature_and_positions",
     T_PPO + "test_first_minibatch_ratio_is_one_and_approxkl_zero"],
    "The old log-probs are at T=1 while the update's are at T=0.7: the ratio is far from 1 on the first "
    "minibatch, clipfrac is high from the start and the KL estimate is biased.")

bug("ppo-no-ratio-clip", "ppo", PPO,
    [("pg2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)", "pg2 = -advantages * ratio")],
    [T_PPO + "test_clipped_policy_and_value_losses_equal_hand_computations"],
    "Without the clip several epochs over one rollout take unbounded steps: approxkl spikes and the policy "
    "collapses onto a few high-advantage tokens.")

bug("ppo-kl-controller-inverted", "ppo", PPO,
    [("self.beta = self.beta * (1.0 + e * n_steps / self.horizon)",
      "self.beta = self.beta * (1.0 - e * n_steps / self.horizon)")],
    [T_PPO + "test_adaptive_kl_controller_follows_its_formula"],
    "beta shrinks when the KL is above target and grows when below, so the KL runs away from the target in "
    "whichever direction it starts.")

bug("ppo-value-loss-unclipped", "ppo", PPO,
    [("v_clip = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)",
      "v_clip = values")],
    [T_PPO + "test_clipped_policy_and_value_losses_equal_hand_computations"],
    "The value model may move arbitrarily far per epoch on one rollout; the value loss oscillates and noisy "
    "values feed noisy advantages.")

bug("ppo-missing-end-not-penalised", "ppo", PPO,
    [("return torch.where(ended, scores, torch.full_like(scores, -penalty))", "return scores")],
    [T_PPO + "test_missing_end_modes_and_k3", T_PPO + "test_per_token_rewards_equal_a_hand_built_vector",
     T_PPO + "test_rm_reward_fn_reads_the_last_real_token_and_normalises"],
    "Responses cut at max_new_tokens keep the reward model's score, so the policy learns to ramble to the "
    "length limit (reward hacking through length).")

bug("ppo-dropout-left-on", "ppo", PPO,
    [("disable_dropout(policy).to(device).eval()", "policy.to(device).train()")],
    [T_PPO + "test_first_minibatch_ratio_is_one_and_approxkl_zero"],
    "With dropout active the training forward differs from the rollout's: the ratio is not 1 on the first "
    "minibatch and the KL is noisy from iteration 0.")

bug("ppo-values-read-one-column-late", "ppo", PPO,
    [("value_model(tokens, attention_mask)[:, prompt_len - 1:-1]",
      "value_model(tokens, attention_mask)[:, prompt_len:]")],
    [T_WIRING + "test_first_minibatch_sees_masked_whitened_gae_and_unwhitened_returns"],
    "V(s_t) is read after token t instead of before it, so each value has already seen the action it should "
    "judge: advantages shrink towards 0 and learning stalls.")

bug("ppo-logprobs-read-one-column-late", "ppo", PPO,
    [("sl = slice(prompt_len - 1, -1)", "sl = slice(prompt_len, None)")],
    [T_PPO + "test_rollout_logprobs_use_temperature_and_positions"],
    "Every response token is credited with the log-prob of the next one: the update raises the probability "
    "of the wrong tokens and the KL is computed on shifted pairs.")

bug("ppo-ratio-inverted", "ppo", PPO,
    [("log_ratio = logprobs - old_logprobs", "log_ratio = old_logprobs - logprobs")],
    [T_PPO + "test_clipped_policy_and_value_losses_equal_hand_computations"],
    "The surrogate's gradient points the wrong way: tokens with positive advantage become less likely and "
    "the proxy reward falls.")

bug("ppo-reference-not-frozen", "ppo", PPO,
    [("freeze(ref).to(device)", "disable_dropout(ref).to(device)")],
    [T_WIRING + "test_reference_is_frozen_and_untouched"],
    "The reference keeps requires_grad: any forward of it outside no_grad builds a graph (memory for a second "
    "model), and an optimizer over its parameters would drag pi_ref along so the KL measures nothing.")

# ---------------------------------------------------------------------------------------------------------------
# SFT, the chat template and batching
# ---------------------------------------------------------------------------------------------------------------
bug("sft-prompt-in-the-loss", "sft", "minialign/sft.py",
    [("[r.loss_mask for r in rendered], pad_id)", "[[1] * len(r.ids) for r in rendered], pad_id)")],
    ["tests/test_sft.py::test_mask_is_applied_prompt_and_padding_targets_do_not_count",
     "tests/test_sft.py::test_mask_is_applied_no_gradient_reaches_untrained_positions"],
    "The model is trained to write the user's turn too: the loss looks lower, but answers start by "
    "repeating or inventing prompts.")

bug("sft-end-token-not-trained", "sft", "minialign/chat.py",
    [("loss_mask=[0] * len(p) + [1] * len(r))", "loss_mask=[0] * len(p) + [1] * (len(r) - 1) + [0])")],
    ["tests/test_sft.py::test_end_token_is_trained", "tests/test_chat_batching.py::test_render_layout_and_loss_mask"],
    "The model never learns to emit <|end|>: every answer runs to max_new_tokens, and PPO's missing-end "
    "penalty hits every rollout.")

bug("sft-targets-not-shifted", "sft", "minialign/batching.py",
    [("loss_mask[:, 1:].bool(), ids[:, 1:],", "loss_mask[:, 1:].bool(), ids[:, :-1],")],
    ["tests/test_chat_batching.py::test_shift_targets_by_hand"],
    "Each position is trained to copy its own input token: the loss drops to near 0 within a few steps and "
    "generation repeats the last token forever.")

bug("sft-ignored-targets-become-token-0", "sft", "minialign/batching.py",
    [("torch.full_like(ids[:, 1:], IGNORE_INDEX))", "torch.zeros_like(ids[:, 1:]))")],
    ["tests/test_chat_batching.py::test_shift_targets_by_hand"],
    "Prompt and pad positions are trained towards token 0 instead of being ignored: the loss is dominated by "
    "pads and the model starts emitting that token.")

bug("resume-drops-optimizer-state", "checkpoint", "minialign/training.py",
    [('self.optimizer.load_state_dict(saved["optimizer"])', "pass")],
    ["tests/test_sft.py::test_interrupted_and_resumed_sft_ends_with_the_same_weights"],
    "A resumed run restarts Adam from zero moments: the loss spikes after every restart and the result "
    "depends on how often the job was interrupted.")

# ---------------------------------------------------------------------------------------------------------------
# Reward model
# ---------------------------------------------------------------------------------------------------------------
REWARD = "minialign/reward.py"
bug("rm-bradley-terry-swapped", "reward", REWARD,
    [("per_pair = -F.logsigmoid(r_w - r_l - margin)", "per_pair = -F.logsigmoid(r_l - r_w - margin)")],
    ["tests/test_reward.py::test_loss_equals_hand_computation_with_per_prompt_weights"],
    "The reward model learns to prefer the rejected answers: held-out accuracy falls below 50% and PPO then "
    "optimises towards the worst responses.")

bug("rm-score-read-at-a-pad", "reward", REWARD,
    [("return torch.where(attention_mask.bool(), cols, torch.full_like(cols, -1)).max(dim=1).values",
      "return attention_mask.sum(1) - 1")],
    ["tests/test_reward.py::test_last_token_index_right_left_and_both_sides_padding",
     "tests/test_reward.py::test_score_is_read_at_last_real_token_for_right_and_left_padding"],
    "With left padding the score is read inside the sequence (or at a pad) instead of at <|end|>: the reward "
    "ignores the end of every answer and accuracy stays near chance.")

bug("rm-k-wise-weights-dropped", "reward", REWARD,
    [("n_groups = sum(1 for g in groups if g.pairs)", "n_groups = sum(len(g.pairs) for g in groups)"),
     ("weight.append(1.0 / (len(g.pairs) * n_groups))", "weight.append(1.0 / n_groups)")],
    ["tests/test_reward.py::test_loss_equals_hand_computation_with_per_prompt_weights"],
    "Prompts ranked with more responses (K=9 gives 36 pairs, K=2 gives 1) dominate the loss, so the reward "
    "model overfits the heavily ranked prompts (InstructGPT's reason for the 1/C(K,2) weight).")

bug("rm-ties-kept-as-preferences", "reward", "minialign/preferences.py",
    [("if frozenset((order[i], order[j])) not in tied and responses[order[i]] != responses[order[j]]]",
      "if responses[order[i]] != responses[order[j]]]")],
    ["tests/test_reward.py::test_ranking_gives_all_pairs_in_rank_order_and_drops_ties"],
    "Tied responses become arbitrary 'wins' in list order, so the reward model learns the labelers' "
    "listing order as if it were quality.")

# ---------------------------------------------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------------------------------------------
DPO = "minialign/dpo.py"
bug("dpo-averages-instead-of-summing", "dpo", DPO,
    [("logps = sequence_logprob_sums(model, batch)", "logps = sequence_logprob_sums(model, batch, average=True)")],
    ["tests/test_dpo.py::test_summed_logps_cover_exactly_the_response_and_the_end_token"],
    "Per-token averages shrink the log-ratios by the response length, so the effective beta is much "
    "smaller than configured and long answers barely move (a silent deviation from the paper).")

bug("dpo-beta-outside-the-sigmoid", "dpo", DPO,
    [("-(1 - label_smoothing) * F.logsigmoid(beta * h)\n                  - label_smoothing * F.logsigmoid(-beta * h))",
      "-(1 - label_smoothing) * beta * F.logsigmoid(h)\n"
      "                  - label_smoothing * beta * F.logsigmoid(-h))")],
    ["tests/test_dpo.py::test_dpo_loss_and_implicit_rewards_by_hand"],
    "beta scales the loss instead of the log-ratio: it acts as a learning rate, not as a KL strength, and "
    "the policy runs far from the reference whatever beta is.")

bug("dpo-chosen-and-rejected-swapped", "dpo", DPO,
    [("return logps[:B], logps[B:], lengths[:B], lengths[B:]",
      "return logps[B:], logps[:B], lengths[B:], lengths[:B]")],
    ["tests/test_dpo.py::test_summed_logps_cover_exactly_the_response_and_the_end_token"],
    "DPO raises the probability of the rejected answers: the reward margin grows on the logs while the gold "
    "reward falls.")

bug("dpo-ipo-target-off-by-two", "dpo", DPO,
    [("losses = (h - 1 / (2 * beta)) ** 2", "losses = (h - 1 / beta) ** 2")],
    ["tests/test_dpo.py::test_conservative_dpo_ipo_reference_free_length_normalized_by_hand"],
    "IPO regresses the log-ratio gap to twice its target, so a configured tau acts like tau/2 and the policy "
    "moves twice as far from the reference as intended.")

bug("dpo-reference-is-the-live-policy", "dpo", DPO,
    [("rw, rl = ref_lp[idx, 0].to(device), ref_lp[idx, 1].to(device)", "rw, rl = pw.detach(), pl.detach()")],
    ["tests/test_dpo.py::test_a_few_steps_raise_the_margin_and_the_reference_is_used_once"],
    "The 'reference' follows the policy, so the loss stays at log 2 and the implicit rewards at 0 while the "
    "policy drifts with no KL anchor at all.")

# ---------------------------------------------------------------------------------------------------------------
# Generation and the model
# ---------------------------------------------------------------------------------------------------------------
bug("generation-kv-cache-positions-ignore-left-padding", "generation", "minialign/model.py",
    [("if attention_mask is not None:\n                position_ids = positions_from_mask",
      "if attention_mask is not None and cache is None:\n                position_ids = positions_from_mask")],
    ["tests/test_generate.py::test_each_padded_row_equals_the_prompt_alone",
     "tests/test_generate.py::test_kv_cache_equals_full_recomputation_greedy"],
    "With the cache, positions count the left pads, so a short prompt in a batch is answered differently "
    "than alone and rollout log-probs disagree with the training forward (ratio != 1).")

bug("generation-pads-attended", "generation", "minialign/model.py",
    [("allowed = (allowed & keys_real) | (k_pos == q_pos)[None, None]",
      "allowed = allowed | (k_pos == q_pos)[None, None]")],
    ["tests/test_model.py::test_padded_row_equals_row_alone",
     "tests/test_generate.py::test_each_padded_row_equals_the_prompt_alone"],
    "Real tokens attend to the left pads, so the same prompt gets different answers depending on the other "
    "prompts in its batch, and PPO's KL is noisy.")

bug("generation-stopped-rows-restart", "generation", "minialign/generate.py",
    [("ended = ended | torch.isin(tok, stop)", "ended = torch.isin(tok, stop)")],
    ["tests/test_generate.py::test_rows_stop_at_the_stop_token_and_masks_describe_the_layout"],
    "A row that emitted <|end|> starts generating again on the next step: responses run on past their end "
    "and the reward model scores text the policy had finished.")

bug("generation-temperature-ignored", "generation", "minialign/generate.py",
    [("filter_logits(logits.float() / temperature, top_k, top_p)", "filter_logits(logits.float(), top_k, top_p)")],
    ["tests/test_generate_wiring.py::test_sampling_draws_from_softmax_of_logits_over_temperature"],
    "Rollouts are sampled at T=1 while every log-prob is computed at T=0.7: the samples are not from the "
    "policy being trained, and the KL and ratios are biased.")

bug("generation-top-p-drops-the-crossing-token", "generation", "minialign/generate.py",
    [("drop_sorted = (probs.cumsum(-1) - probs) >= top_p", "drop_sorted = probs.cumsum(-1) > top_p")],
    ["tests/test_generate.py::test_top_k_and_top_p_filters"],
    "Nucleus sampling keeps one token too few (sometimes only the argmax), so samples are less diverse than "
    "configured.")

# ---------------------------------------------------------------------------------------------------------------
# The log-prob kernel
# ---------------------------------------------------------------------------------------------------------------
KERNEL = "minialign/logprobs.py"
bug("kernel-backward-recomputes-logits-without-temperature", "kernel", KERNEL,
    [("z = _logits_tile(h[r0:r1], w, inv_tau, buf)  # recompute",
      "z = _logits_tile(h[r0:r1], w, 1.0, buf)  # recompute")],
    ["tests/test_logprobs.py::test_gradcheck_temperature_ignore_entropy"],
    "The forward is right but the backward uses softmax(z) instead of softmax(z / T): every PPO gradient at "
    "T != 1 is wrong while the logged log-probs look fine.")

bug("kernel-backward-misses-one-over-temperature", "kernel", KERNEL,
    [("_upstream(g_logp, rows, inv_tau, acc), _upstream(g_ent, rows, inv_tau, acc)",
      "_upstream(g_logp, rows, 1.0, acc), _upstream(g_ent, rows, 1.0, acc)")],
    ["tests/test_logprobs.py::test_gradcheck_temperature_ignore_entropy"],
    "Gradients at temperature T are T times too large (the chain rule's 1/T is missing): PPO at T=0.7 takes "
    "steps of the wrong size.")

bug("kernel-ignored-tokens-get-gradient", "kernel", KERNEL,
    [("g = None if g_logp is None else g_logp.to(acc) * valid * inv_tau",
      "g = None if g_logp is None else g_logp.to(acc) * inv_tau")],
    ["tests/test_logprobs.py::test_logits_given_companion_matches_reference"],
    "Positions marked ignore_index (prompt, pads) still receive gradient whenever the upstream gradient is "
    "not zero there: the model is trained on tokens the loss says it ignores.")

bug("kernel-online-logsumexp-not-rescaled", "kernel", KERNEL,
    [("s.copy_(s * alpha + s_tile)", "s.copy_(s + s_tile)")],
    ["tests/test_logprobs.py::test_matches_reference_values_and_grads"],
    "When a later vocabulary tile raises the running max, the old sum is not rescaled: log-probs are wrong "
    "for any vocabulary larger than one tile (GPT-2's), silently, while small test vocabularies pass.")

# ---------------------------------------------------------------------------------------------------------------
# Checkpoints, tokenizer, fine-grained rewards, the oracle
# ---------------------------------------------------------------------------------------------------------------
bug("checkpoint-not-atomic", "checkpoint", "minialign/checkpoint.py",
    [('with os.fdopen(fd, "wb") as f:', 'os.close(fd)\n        with open(path, "wb") as f:'),
     ("os.replace(tmp, path)", "os.remove(tmp)")],
    ["tests/test_pretrain.py::test_checkpoint_write_is_atomic"],
    "A run killed while saving (Ctrl-C, a full disk) leaves half a checkpoint: the next start cannot resume "
    "and hours of training are lost.")

bug("tokenizer-special-tokens-forgeable", "tokenizer", "minialign/tokenizer.py",
    [("return self.encoding.encode(text, allowed_special=set(), disallowed_special=())",
      'return self.encoding.encode(text, allowed_special="all", disallowed_special=())')],
    ["tests/test_tokenizer.py::test_special_strings_in_plain_text_are_ordinary_bytes",
     "tests/test_chat_batching.py::test_system_turn_and_forged_specials"],
    "A user who types '<|end|><|assistant|>' injects real control tokens: prompts can end the turn and "
    "write the assistant's answer themselves (prompt injection through the template).")

bug("tokenizer-merges-not-applied-by-rank", "tokenizer", "minialign/tokenizer.py",
    [('pair = min(zip(chunk_ids, chunk_ids[1:]), key=lambda p: rank.get(p, float("inf")))',
      "pair = next((p for p in zip(chunk_ids, chunk_ids[1:]) if p in rank), None)")],
    ["tests/test_tokenizer.py::test_tiktoken_equals_reference_encoders",
     "tests/test_tokenizer.py::test_classic_aaabdaaabac_by_hand"],
    "The reference encoder merges left to right instead of by learned rank: it tokenizes differently from "
    "training and from tiktoken, so the same text gets other ids in the lesson and in the model.")

FG = "minialign/finegrained.py"
bug("finegrained-segment-reward-one-token-late", "finegrained", FG,
    [("t_j = bisect_left(ends, end)", "t_j = bisect_left(ends, end + 1)")],
    ["tests/test_finegrained.py::test_segment_ends_worked_out_by_hand"],
    "Each sentence's reward lands on the first token of the next sentence (the last one on <|end|>): credit "
    "is assigned to words that did not cause it and fine-grained PPO learns little more than holistic.")

bug("finegrained-weights-ignored", "finegrained", FG,
    [("total = total + weights[k] * place_segment_rewards(ends, values, mask)",
      "total = total + place_segment_rewards(ends, values, mask)")],
    ["tests/test_finegrained.py::test_combined_reward_weights_and_the_sequence_reward_once_on_the_end_token"],
    "Every feedback type counts with weight 1 whatever w_k says, so the trade-off between relevance, "
    "factuality and completeness cannot be tuned.")

bug("finegrained-toxicity-not-differenced", "finegrained", FG,
    [("out.append((s.token_end, -(now - before)))", "out.append((s.token_end, -now))")],
    ["tests/test_finegrained.py::test_slide_detox_example_with_its_numbers"],
    "Each sentence is charged the toxicity of the whole prefix, so one toxic sentence is penalised again at "
    "every later sentence and the policy learns to stop early.")

bug("oracle-relevance-dropped", "oracle", "minialign/world/oracle.py",
    [('c["relevant"] = (flags.count(False) / len(flags)) if flags else 0.0', "pass")],
    ["tests/test_world_oracle.py::test_off_topic_penalized"],
    "The gold reward no longer grades relevance, so every evaluation stops seeing off-topic answers and "
    "reward hacking by changing the subject goes unnoticed.")


# ---------------------------------------------------------------------------------------------------------------
# GRPO: group advantages and the loss of DeepSeekMath Eq. 3
# ---------------------------------------------------------------------------------------------------------------
GRPO = "minialign/grpo.py"
T_GRPO = "tests/test_grpo.py::"

bug("grpo-std-without-bessel", "grpo", GRPO,
    [("adv = adv / (rewards.std(1, keepdim=True) + eps)",
      "adv = adv / (rewards.std(1, keepdim=True, correction=0) + eps)")],
    [T_GRPO + "test_group_advantages_equal_a_loop_over_each_group"],
    "Advantages a few percent larger than TRL's and verl's for the same rewards: nothing visible in one run, "
    "but numbers no longer match the reference implementations.")

bug("grpo-equal-group-rounding-left-in", "grpo", GRPO,
    [("return torch.where(equal_groups(rewards)[:, None], torch.zeros_like(adv), adv)", "return adv")],
    [T_GRPO + "test_group_advantages_worked_by_hand"],
    "A group whose rewards are all equal but not exactly representable (eight rewards of 0.7) gets advantages "
    "of +-6e-4 from float rounding over std + 1e-4: groups that should be silent push the policy at random.")

bug("grpo-no-length-normalisation", "grpo", GRPO,
    [("return (total.sum(1) / mask.sum(1).clamp(min=1)).mean()", "return total.sum() / mask.sum().clamp(min=1)")],
    [T_GRPO + "test_grpo_loss_and_gradient_equal_a_loop_over_tokens", T_GRPO + "test_aggregations_by_hand"],
    "'sequence' silently becomes DAPO's token mean: long responses weigh more than Eq. 3 says, and a comparison "
    "of the aggregation flags compares two identical runs.")

bug("grpo-kl-k1-in-the-loss", "grpo", GRPO,
    [('k3 = kl_per_token(logprobs, ref_logprobs, mask, "k3")',
      'k3 = kl_per_token(logprobs, ref_logprobs, mask, "k1")')],
    [T_GRPO + "test_grpo_loss_and_gradient_equal_a_loop_over_tokens"],
    "The KL term is log pi_theta - log pi_ref, whose gradient is a constant push down on every sampled token: "
    "the policy loses probability on its own samples and entropy rises instead of staying near pi_ref.")

bug("grpo-clip-high-ignored", "grpo", GRPO,
    [("torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)", "torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_low)")],
    [T_GRPO + "test_clip_higher_lets_a_rewarded_ratio_grow_further"],
    "DAPO's clip-higher flag changes nothing: the comparison of 0.2 vs 0.28 shows two identical curves.")

bug("grpo-old-logprobs-at-temperature-one", "grpo", GRPO,
    [("r.prompt_len, cfg.temperature, return_entropy=True)", "r.prompt_len, 1.0, return_entropy=True)")],
    [T_GRPO + "test_first_minibatch_ratio_is_one"],
    "pi_old is scored at T = 1 while the update scores pi_theta at T: the ratio is not 1 even before the first "
    "step, so clipping fires at random from the start.")

bug("grpo-equal-groups-never-dropped", "grpo", GRPO,
    [("keep = ~equal.repeat_interleave(G) if cfg.drop_equal_groups else",
      "keep = ~equal.repeat_interleave(G) if False else")],
    [T_GRPO + "test_drop_equal_groups_trains_only_on_mixed_groups"],
    "--drop-equal-groups is accepted and logged but every group is still trained on: DAPO's dynamic sampling "
    "looks like it does nothing.")

bug("reasoning-checker-forgives-leading-zeros", "oracle", "minialign/world/reasoning.py",
    [("return extract_answer(response) == answer", "return (extract_answer(response) or '').lstrip('0') == answer")],
    ["tests/test_world_reasoning.py::test_checker_on_tricky_answers"],
    "'The answer is 0432.' scores as right: GRPO can be paid for answers that are not the exact answer, and "
    "held-out accuracy is overstated.")

bug("grpo-gain-se-unpaired", "grpo", "minialign/evaluation.py",
    [("return mean_and_se([cb / n_b - ca / n_a for ca, cb in zip(counts_a, counts_b)])",
      "return (mean_and_se([cb / n_b for cb in counts_b])[0] - mean_and_se([ca / n_a for ca in counts_a])[0],\n"
      "            float(np.hypot(mean_and_se([cb / n_b for cb in counts_b])[1], "
      "mean_and_se([ca / n_a for ca in counts_a])[1])))")],
    [T_GRPO + "test_paired_difference_is_the_mean_and_se_of_per_problem_differences"],
    "The pass@1 gain of GRPO over its start gets the standard error of two independent samples: the problems' "
    "own difficulty, shared by both models, counts as noise and a real gain looks insignificant.")

bug("lesson12-time-to-think-counts-the-hard-band", "grpo", "lessons/12_reasoning_rl.py",
    [("idx = [i for i, s in enumerate(answer[\"problem_splits\"]) if s == split]",
      "idx = list(range(len(answer[\"problem_splits\"])))")],
    ["tests/test_lessons_reasoning.py::test_verdict_time_to_think_both_ways"],
    "The worked-vs-answer difference mixes the held-out test pool with the hard band while the accuracies it is "
    "printed beside are the test pool's: the difference and its standard error describe other problems.")

# ---------------------------------------------------------------------------------------------------------------
# Scale-out: PPO and GRPO under torchrun
# ---------------------------------------------------------------------------------------------------------------
T_DDP = "tests/test_distributed.py::"

bug("ddp-sampling-own-noise", "generation", "minialign/generate.py",
    [("return (probs / q[rows.start:rows.stop]).argmax(-1)", "return (probs / q[:probs.size(0)]).argmax(-1)")],
    ["tests/test_generate.py::test_sampling_draws_what_torch_multinomial_draws_and_a_row_slice_what_its_rows_draw",
     T_DDP + "test_two_processes_equal_one_process_on_the_same_global_batch"],
    "Each rank samples its share of the prompts with the first rows' noise: rank 1 draws what rank 0 draws for "
    "other prompts, the samples are not those of one process, and with equal prompts two ranks draw the same "
    "responses: a batch of N times fewer independent samples.")

bug("ddp-ppo-share-weights-dropped", "ppo", PPO,
    [("loss = w * pg_loss + cfg.vf_coef * w_v * vf_loss", "loss = pg_loss + cfg.vf_coef * vf_loss")],
    [T_DDP + "test_two_processes_equal_one_process_on_the_same_global_batch"],
    "Under torchrun each rank's mean over its share of a minibatch counts as much as another rank's larger "
    "share: the tokens of the smaller share weigh more, and the update is not the one of one process.")

bug("ddp-grpo-share-weight-dropped", "grpo", GRPO,
    [("optimizer_step(optimizer, w * loss,", "optimizer_step(optimizer, loss,")],
    [T_DDP + "test_two_processes_equal_one_process_on_the_same_global_batch"],
    "Under torchrun each rank's token mean over its share of a GRPO minibatch counts as much as the others': "
    "with token-level aggregation the tokens of the shorter share weigh more than one process weighs them.")

bug("lesson12-speed-verdict-ignores-noise", "grpo", "lessons/12_reasoning_rl.py",
    [('out["per_sample"], out["per_sample_difference"] = words[clear_sign(sample_diff)], sample_diff',
      'out["per_sample"], out["per_sample_difference"] = words[int(np.sign(sample_diff["mean"]))], sample_diff')],
    ["tests/test_lessons_reasoning.py::test_verdict_speed_both_ways"],
    "Part (d) calls GRPO better or worse than PPO per sample on the sign of the mean difference alone: a few "
    "points of noise over 80 problems become a verdict.")
