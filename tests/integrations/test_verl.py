"""mrgfast's verl reward file run by verl's own code (verl 0.9.1 from PyPI, installed --no-deps).

verl's Hydra configuration (``verl/trainer/config/ppo_trainer.yaml``) is composed with the README's
overrides; ``get_custom_reward_fn`` loads ``mrgfast/reward/verl.py`` by path exactly as
``main_ppo`` does; the reward-loop worker of the default configuration and the naive, batch, dapo
and prime managers score a ``DataProto`` built with a tokenizer trained on the spot.

Stubs: none. Ray is imported but never started (the reward-loop worker is constructed directly,
not as a Ray actor, the way ``RewardLoopManager`` would build it remotely).
"""

import os
from pathlib import Path

import numpy as np
import pytest

verl = pytest.importorskip("verl", reason="the integrations extra (pip install -e .[integrations])")
pytest.importorskip("hydra")
import torch
from conftest import GOOD_A, GOOD_B, LEFT_B, NOTAGS, REF_A, REF_B, UNSIDED_B, WRONG_A, expected_scores
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer
from verl import DataProto
from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager

import mrgfast
import mrgfast.reward.verl as mrg_verl
from mrgfast.reward import extract_report

CONFIG_DIR = str(Path(verl.__file__).parent / "trainer" / "config")
MRG = mrg_verl.__file__
# The README's verl recipe (verl >= 0.9): these overrides, nothing else.
README_OVERRIDES = [
    f"reward.custom_reward_function.path={MRG}",
    "reward.custom_reward_function.name=compute_score",
]
README_OPTIONS = ["+reward.custom_reward_function.reward_kwargs.margin=0.5"]

RESPONSES = [GOOD_A, WRONG_A, NOTAGS, GOOD_B]
REFERENCES = [REF_A, REF_A, REF_A, REF_B]


def verl_config(overrides, tokenizer_dir):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(
            config_name="ppo_trainer", overrides=[*overrides, f"actor_rollout_ref.model.path={tokenizer_dir}"]
        )


def rollout_batch(tokenizer, responses=RESPONSES, references=REFERENCES):
    """The DataProto verl's rollout hands the reward: left-padded prompts, right-padded responses."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Describe the chest film."}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    resp_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    p_len, r_len = len(prompt_ids) + 2, max(map(len, resp_ids)) + 3
    pad = tokenizer.pad_token_id
    n = len(responses)
    prompts = torch.full((n, p_len), pad)
    resps = torch.full((n, r_len), pad)
    mask = torch.zeros((n, p_len + r_len), dtype=torch.long)
    for i, r in enumerate(resp_ids):
        prompts[i, p_len - len(prompt_ids) :] = torch.tensor(prompt_ids)
        resps[i, : len(r)] = torch.tensor(r)
        mask[i, p_len - len(prompt_ids) : p_len + len(r)] = 1
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": resps,
            "input_ids": torch.cat([prompts, resps], dim=1),
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array(["mimic_cxr"] * n, dtype=object),
            "reward_model": np.array([{"ground_truth": g, "style": "rule"} for g in references], dtype=object),
            "extra_info": np.array([{"index": i} for i in range(n)], dtype=object),
        },
    )


def last_token_scores(reward_tensor, data):
    valid = data.batch["attention_mask"][:, data.batch["prompts"].shape[1] :].sum(-1)
    return [float(reward_tensor[i, valid[i] - 1]) for i in range(len(valid))]


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def test_readme_overrides_load_mrgfast_through_get_custom_reward_fn(tokenizer_dir):
    cfg = verl_config(README_OVERRIDES + README_OPTIONS, tokenizer_dir)
    fn = get_custom_reward_fn(cfg)
    assert fn is not None, "the README's overrides must reach verl's reward.custom_reward_function"
    got = fn(data_source="mimic_cxr", solution_str=WRONG_A, ground_truth=REF_A, extra_info={})
    assert got == pytest.approx(expected_scores([WRONG_A], [REF_A], margin=0.5)[0])
    # the pre-0.9 keys are still in verl 0.9.1's schema but main_ppo no longer reads them
    old = verl_config(
        [f"custom_reward_function.path={MRG}", "custom_reward_function.name=compute_score"], tokenizer_dir
    )
    assert get_custom_reward_fn(old) is None


def test_reward_loop_of_the_default_configuration(tokenizer_dir, tokenizer):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    cfg = verl_config(README_OVERRIDES, tokenizer_dir)
    assert cfg.reward.reward_manager.name == "naive"  # the default
    worker = RewardLoopWorker(cfg)
    data = rollout_batch(tokenizer)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    got = [o["reward_score"] for o in outputs]
    assert got == pytest.approx(expected_scores(RESPONSES, REFERENCES), abs=1e-6)
    assert got[0] == pytest.approx(1.0)
    rm_scores = worker.reward_manager.assemble_rm_scores(data, got)
    assert last_token_scores(rm_scores, data) == pytest.approx(got)


def test_reward_loop_dapo_manager_with_details(tokenizer_dir, tokenizer):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    cfg = verl_config(
        [
            *README_OVERRIDES,
            "reward.reward_manager.name=dapo",
            "+reward.custom_reward_function.reward_kwargs.details=true",
        ],
        tokenizer_dir,
    )
    worker = RewardLoopWorker(cfg)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(rollout_batch(tokenizer)))
    got = [o["reward_score"] for o in outputs]
    assert got == pytest.approx(expected_scores(RESPONSES, REFERENCES), abs=1e-6)
    assert [o["reward_extra_info"]["format"] for o in outputs] == [1.0, 1.0, 0.0, 1.0]


SIDED_RESPONSES = [GOOD_B, LEFT_B, UNSIDED_B, GOOD_A]
SIDED_REFERENCES = [REF_B, REF_B, REF_B, REF_A]
SIDES_OPTION = "+reward.custom_reward_function.reward_kwargs.sides=true"


def test_reward_loop_with_the_mccs_plus_switch(tokenizer_dir, tokenizer):
    """``reward_kwargs.sides=true`` through verl's Hydra config and reward loop: MCCS+ in the reward."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    cfg = verl_config(
        [*README_OVERRIDES, SIDES_OPTION, "+reward.custom_reward_function.reward_kwargs.details=true"], tokenizer_dir
    )
    assert cfg.reward.custom_reward_function.reward_kwargs.sides is True
    worker = RewardLoopWorker(cfg)
    data = rollout_batch(tokenizer, SIDED_RESPONSES, SIDED_REFERENCES)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    got = [o["reward_score"] for o in outputs]
    want = expected_scores(SIDED_RESPONSES, SIDED_REFERENCES, sides=True)
    assert got == pytest.approx(want, abs=1e-6)
    assert got != pytest.approx(expected_scores(SIDED_RESPONSES, SIDED_REFERENCES), abs=1e-6)
    assert got[0] == pytest.approx(1.0) and got[1] < got[2] < got[0]  # wrong side < no side < same side
    mccs = [o["reward_extra_info"]["mccs"] for o in outputs]
    assert mccs == pytest.approx(
        list(mrgfast.mccs([extract_report(r) for r in SIDED_RESPONSES], SIDED_REFERENCES, sides=True)), abs=1e-9
    )


@pytest.mark.parametrize("manager", ["naive", "batch"])
def test_legacy_managers_with_the_mccs_plus_switch(manager, tokenizer_dir, tokenizer):
    from verl.workers.reward_manager import get_reward_manager_cls

    name = "compute_score_batch" if manager == "batch" else "compute_score"
    cfg = verl_config(
        [f"reward.custom_reward_function.path={MRG}", f"reward.custom_reward_function.name={name}", SIDES_OPTION],
        tokenizer_dir,
    )
    rm = get_reward_manager_cls(manager)(
        tokenizer=tokenizer, num_examine=0, compute_score=get_custom_reward_fn(cfg), reward_fn_key="data_source"
    )
    data = rollout_batch(tokenizer, SIDED_RESPONSES, SIDED_REFERENCES)
    got = last_token_scores(rm(data, return_dict=True)["reward_tensor"], data)
    assert got == pytest.approx(expected_scores(SIDED_RESPONSES, SIDED_REFERENCES, sides=True), abs=1e-6), manager


def test_a_bad_sides_value_names_reward_kwargs(tokenizer_dir):
    cfg = verl_config([*README_OVERRIDES, "+reward.custom_reward_function.reward_kwargs.sides=maybe"], tokenizer_dir)
    fn = get_custom_reward_fn(cfg)
    with pytest.raises(TypeError, match="reward_kwargs: sides must be True or False"):
        fn(data_source="x", solution_str=GOOD_B, ground_truth=REF_B)
    with pytest.raises(ValueError, match="side_weight"):
        mrg_verl.compute_score("x", GOOD_B, REF_B, sides=True, side_weight=1.5)


def test_reward_loop_refuses_the_batch_manager(tokenizer_dir):
    """verl >= 0.9 has no batch manager: the README must not send users there."""
    cfg = verl_config([*README_OVERRIDES, "reward.reward_manager.name=batch"], tokenizer_dir)
    with pytest.raises(ValueError, match="Unknown reward manager: batch"):
        load_reward_manager(cfg, None)


@pytest.mark.parametrize("manager", ["naive", "batch", "dapo", "prime"])
def test_legacy_reward_managers(manager, tokenizer_dir, tokenizer):
    """verl's pre-reward-loop managers (still shipped in 0.9.1; what verl <= 0.8 runs)."""
    from verl.workers.reward_manager import get_reward_manager_cls

    name = "compute_score_batch" if manager == "batch" else "compute_score"
    options = ["+reward.custom_reward_function.reward_kwargs.details=true"] if manager == "prime" else []
    cfg = verl_config(
        [f"reward.custom_reward_function.path={MRG}", f"reward.custom_reward_function.name={name}", *options],
        tokenizer_dir,
    )
    fn = get_custom_reward_fn(cfg)
    cls = get_reward_manager_cls(manager)
    rm = cls(tokenizer=tokenizer, num_examine=0, compute_score=fn, reward_fn_key="data_source")
    data = rollout_batch(tokenizer)
    out = rm(data, return_dict=True)
    got = last_token_scores(out["reward_tensor"], data)
    assert got == pytest.approx(expected_scores(RESPONSES, REFERENCES), abs=1e-6), manager
    if manager == "prime":
        assert data.batch["acc"].tolist() == pytest.approx(got)


def test_loaded_by_path_functions_pickle(tokenizer_dir):
    """prime runs the function in a process pool: what verl loads must pickle."""
    import pickle

    cfg = verl_config(README_OVERRIDES, tokenizer_dir)
    fn = get_custom_reward_fn(cfg)
    again = pickle.loads(pickle.dumps(fn))
    assert again(data_source="x", solution_str=GOOD_A, ground_truth=REF_A) == pytest.approx(1.0)
    assert os.path.samefile(MRG, mrg_verl.__file__)


def test_readme_has_these_overrides():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert " ".join(README_OVERRIDES).replace(MRG, "$MRG") in readme
    for option in README_OPTIONS:
        assert option in readme
