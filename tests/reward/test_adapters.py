"""The verl and OpenRLHF adapters, loaded and called exactly the way those frameworks do it."""

import asyncio
import importlib.util
import sys
from functools import partial

import numpy as np
import pytest
import torch
from fakelabel import fake_label_rows

import mrgfast
import mrgfast.reward.openrlhf as openrlhf_mod
import mrgfast.reward.verl as verl_mod
from mrgfast.reward import extract_report, format_score, mrg_reward

REF_A = "Mild cardiomegaly. No effusion."
REF_B = "Right pleural effusion. No pneumothorax."
GOOD = "<think>wide heart, no fluid</think><report>Mild cardiomegaly. No effusion.</report>"
WRONG = "<think>fluid</think><report>Right pleural effusion.</report>"
NOTAGS = "Mild cardiomegaly."


def direct(gens, refs):
    g = fake_label_rows([extract_report(x) for x in gens])
    r = fake_label_rows(refs)
    return 0.75 * mrgfast.mccs_from_labels(g, r) + 0.25 * np.array([format_score(x) for x in gens])


# -- verl -----------------------------------------------------------------------------------------


def _call_with_kwargs(raw_fn, extra_kwargs, *args, **kwargs):
    # verl.trainer.ppo.reward._call_with_kwargs: config reward_kwargs take precedence
    return raw_fn(*args, **{**kwargs, **extra_kwargs})


def load_verl_reward(name, reward_kwargs=None):
    """verl.trainer.ppo.reward.get_custom_reward_fn: load the file by path as 'custom_module'."""
    spec = importlib.util.spec_from_file_location("custom_module", verl_mod.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_module"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("custom_module", None)
    return partial(_call_with_kwargs, getattr(module, name), dict(reward_kwargs or {}))


def test_verl_naive_manager_call(fake_labeler):
    compute_score = load_verl_reward("compute_score")
    items = [(GOOD, REF_A), (WRONG, REF_A), (NOTAGS, REF_A), (GOOD, REF_B)]
    # NaiveRewardManager: one keyword call per sample
    got = [
        compute_score(data_source="mimic_cxr", solution_str=s, ground_truth=g, extra_info={"index": i})
        for i, (s, g) in enumerate(items)
    ]
    assert all(isinstance(x, float) for x in got)
    assert np.allclose(got, direct([s for s, _ in items], [g for _, g in items]))


def test_verl_reward_kwargs_and_details(fake_labeler):
    compute_score = load_verl_reward("compute_score", {"details": True, "mccs_weight": 1.0, "format_weight": 0.0})
    out = compute_score(data_source="x", solution_str=WRONG, ground_truth=REF_A, extra_info=None)
    assert set(out) == {"score", "mccs", "format", "malformed"}
    assert out["score"] == pytest.approx(out["mccs"])
    assert out["format"] == 1.0 and out["malformed"] == 0.0


def test_verl_batch_manager_call(fake_labeler):
    compute_scores = load_verl_reward("compute_score_batch")
    sols = [GOOD, WRONG, NOTAGS, None, GOOD, WRONG]
    gts = [REF_A, REF_A, REF_A, REF_B, REF_B, REF_B]
    # BatchRewardManager.verify: non-tensor batch fields arrive as numpy object arrays
    scores = compute_scores(
        data_sources=np.array(["mimic"] * 6, dtype=object),
        solution_strs=sols,
        ground_truths=gts,
        extra_infos=np.array([{"index": i} for i in range(6)], dtype=object),
    )
    assert len(scores) == 6 and scores[3] == 0.0
    ok = [0, 1, 2, 4, 5]
    assert np.allclose(np.array(scores)[ok], direct([sols[i] for i in ok], [gts[i] for i in ok]))
    assert len(fake_labeler) == 1 and len(fake_labeler[0]) == 2 + 5  # two references labelled once each
    assert scores == pytest.approx(
        mrg_reward(prompts=None, completions=sols, report=gts)
    )  # same numbers as the TRL function


def test_verl_batch_details_and_alias(fake_labeler):
    f = load_verl_reward("compute_scores", {"details": True})
    out = f(data_sources=["a", "a"], solution_strs=[GOOD, None], ground_truths=[REF_A, REF_A], extra_infos=[None, None])
    assert [o["malformed"] for o in out] == [0.0, 1.0]
    assert out[1]["score"] == 0.0


def test_verl_bad_ground_truth_names_it():
    with pytest.raises(TypeError, match=r"ground_truth must be the reference report.*reward_model.ground_truth"):
        verl_mod.compute_score("x", GOOD, None)
    with pytest.raises(TypeError, match=r"ground_truths\[1\]"):
        verl_mod.compute_score_batch(["x", "x"], [GOOD, GOOD], [REF_A, 3], [None, None])
    with pytest.raises(ValueError, match="2 solution_strs but 1 ground_truths"):
        verl_mod.compute_score_batch(["x", "x"], [GOOD, GOOD], [REF_A], [None, None])
    # a nested ground truth dict is accepted
    assert verl_mod.compute_score("x", GOOD, {"ground_truth": REF_A}) == verl_mod.compute_score("x", GOOD, REF_A)


# -- OpenRLHF ---------------------------------------------------------------------------------------


def load_openrlhf_reward():
    """openrlhf RolloutAndRewardWorker: spec_from_file_location('reward_func', --remote_rm_url)."""
    spec = importlib.util.spec_from_file_location("reward_func", openrlhf_mod.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


PROMPT = "<|im_start|>user\nDescribe the film. Answer as <think>...</think><report>...</report><|im_end|>\n<|im_start|>assistant\n"


def test_openrlhf_rollout_worker_call(fake_labeler):
    reward_func = load_openrlhf_reward()
    responses = [GOOD, WRONG + "<|im_end|>", NOTAGS, GOOD]
    labels = [REF_A, REF_A, REF_A, REF_B]
    queries = [PROMPT + r for r in responses]

    async def worker(batch_size):
        # RolloutAndRewardWorker._get_rewards_via_func: chunks run in threads
        tasks = [
            asyncio.to_thread(
                reward_func,
                queries[i : i + batch_size],
                [PROMPT] * len(queries[i : i + batch_size]),
                labels[i : i + batch_size],
            )
            for i in range(0, len(queries), batch_size)
        ]
        return await asyncio.gather(*tasks)

    want = direct([GOOD, WRONG, NOTAGS, GOOD], labels)
    for bs in (1, 4):
        infos = asyncio.run(worker(bs))
        rewards = torch.cat([info["rewards"] for info in infos])
        assert rewards.dtype == torch.float32
        assert np.allclose(rewards.numpy(), want, atol=1e-6)
        for info in infos:
            assert set(info) == {"rewards", "scores", "extra_logs"}
            assert set(info["extra_logs"]) == {"mccs", "format", "malformed"}
            # the worker's own post-processing of a single-sample result
            if bs == 1:
                scores = info.get("scores") or info.get("rewards")
                assert torch.equal(scores, info["rewards"])
                extra = info.get("extra_logs") or {}
                assert extra["format"].shape == (1,)


def test_openrlhf_prompt_not_a_prefix_and_malformed(fake_labeler):
    reward_func = load_openrlhf_reward()
    # the query's prompt part differs from the prompt (decoding, expanded placeholders): the
    # assistant-turn opener still says where the response starts
    query = PROMPT.replace("Describe the film.", "Describe  the <|image_pad|><|image_pad|> film.") + GOOD
    out = reward_func([query, None], [PROMPT, PROMPT], [REF_A, REF_A])
    assert out["rewards"][0].item() == pytest.approx(direct([GOOD], [REF_A])[0])
    assert out["rewards"][1].item() == 0.0
    assert out["extra_logs"]["malformed"].tolist() == [0.0, 1.0]


def test_openrlhf_env_configuration(fake_labeler, monkeypatch):
    reward_func = load_openrlhf_reward()
    monkeypatch.setenv("MRGFAST_MCCS_WEIGHT", "1")
    monkeypatch.setenv("MRGFAST_FORMAT_WEIGHT", "0")
    out = reward_func([PROMPT + WRONG], [PROMPT], [REF_A])
    assert out["rewards"].tolist() == pytest.approx(out["extra_logs"]["mccs"].tolist())
    monkeypatch.setenv("MRGFAST_MARGIN", "abc")
    with pytest.raises(ValueError, match="MRGFAST_MARGIN"):
        reward_func([PROMPT + WRONG], [PROMPT], [REF_A])


def test_openrlhf_label_errors():
    reward_func = load_openrlhf_reward()
    with pytest.raises(ValueError, match=r"--data\.label_key"):
        reward_func([PROMPT + GOOD], [PROMPT], None)
    with pytest.raises(TypeError, match=r"labels\[0\] is int"):
        reward_func([PROMPT + GOOD], [PROMPT], [3])
    with pytest.raises(ValueError, match="1 queries but 2 labels"):
        reward_func([PROMPT + GOOD], [PROMPT], [REF_A, REF_B])


def test_openrlhf_response_of():
    assert openrlhf_mod.response_of("P: x" + "resp<|im_end|>", "P: x") == "resp"
    with pytest.raises(ValueError, match="cannot tell where the response starts"):
        openrlhf_mod.response_of("no prompt match", "zzz")
    assert openrlhf_mod.response_of("abc</s><|endoftext|>  ", None) == "abc"


def test_openrlhf_response_markers():
    r = openrlhf_mod.response_of
    # the k-th opener of the query, k = openers in the prompt (a system turn may hold one too)
    prompt = "<|im_start|>system\nx<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    query = prompt.replace("q", "q <|image_pad|><|image_pad|>") + "resp<|im_end|><|endoftext|>"
    assert r(query, prompt) == "resp"
    # text the template puts after the opener is prompt, not response
    assert r(
        "<｜User｜>q<｜Assistant｜><think>\nwhy</think>x<｜end▁of▁sentence｜>", "<｜User｜>q<｜Assistant｜><think>\n"
    ) == ("why</think>x")
    # a marker of another template, through the settings
    assert (
        r(
            "<|user|>\nq<|end|>\n<|assistant|>\nresp<|end|>",
            "<|user|>\nq<|end|>\n<|assistant|>\n",
            response_marker="<|assistant|>\n",
        )
        == "resp"
    )
    with pytest.raises(ValueError, match="fewer times"):
        r("<|im_start|>user\nq", "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n")


def test_openrlhf_reward_file_settings(tmp_path, fake_labeler):
    path = openrlhf_mod.write_reward_file(tmp_path / "r.py", mccs_weight=1.0, format_weight=0.0, threads=3)
    spec = importlib.util.spec_from_file_location("reward_func", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.reward_func.settings.threads == 3
    out = module.reward_func([PROMPT + WRONG], [PROMPT], [REF_A])
    assert out["rewards"].tolist() == pytest.approx(out["extra_logs"]["mccs"].tolist())
    with pytest.raises(ValueError, match=r"\.py"):
        openrlhf_mod.write_reward_file(tmp_path / "r.txt")
    with pytest.raises(ValueError, match="threads"):
        openrlhf_mod.write_reward_file(tmp_path / "r2.py", threads=0)
    assert not (tmp_path / "r2.py").exists()
