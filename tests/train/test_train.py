"""SFT + GRPO on the tiny model at small sizes; resume; LoRA-only training; NaN stop; fused-loss switch."""

from __future__ import annotations

import json

import pytest
import torch

from mrgfast.train.config import build_config
from mrgfast.train.run import run


def _read_jsonl(p):
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def test_sft_then_grpo_end_to_end(tmp_path, synth_dir, tiny_model_dir, capsys, small):
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, tiny_model_dir))
    assert run(cfg) == 0
    out = tmp_path / "run"
    state = json.loads((out / "state.json").read_text())
    assert state["completed"] == ["sft", "grpo"]
    for tag in ("sft", "grpo"):
        ev = state["evals"][tag]
        assert ev["n"] == 4 and 0.0 <= ev["mccs_mean"] <= 1.0 and 0.0 <= ev["ce_f1_micro"] <= 1.0
        assert 0.0 <= ev["mccs_plus_mean"] <= 1.0 and ev["ce_f1_micro_sides"] <= ev["ce_f1_micro"]
        assert len(_read_jsonl(out / "eval" / f"predictions_{tag}.jsonl")) == 4
    rows = _read_jsonl(out / "metrics.jsonl")
    grpo = [r for r in rows if r["stage"] == "grpo" and "reward" in r]
    assert [r["step"] for r in grpo] == [1, 2]
    assert {"rewards/mccs_reward/mean", "rewards/format_reward/mean", "kl"} <= set(grpo[0])
    assert (out / "grpo_curves.png").stat().st_size > 1000
    assert (out / "sft" / "final" / "config.json").is_file() and (out / "grpo" / "final").is_dir()
    printed = capsys.readouterr().out
    assert "CE-F1" in printed and "MCCS" in printed
    # a second run into the same folder must be explicit
    from mrgfast.train.run import RunError

    with pytest.raises(RunError, match="--resume"):
        run(cfg)


class _Crash(Exception):
    pass


def test_grpo_resume_continues_step_and_data_position(tmp_path, synth_dir, tiny_model_dir, monkeypatch, small):
    """An interrupted GRPO run resumed from its checkpoint ends like an uninterrupted one."""
    from transformers import TrainerCallback

    import mrgfast.train.run as runmod

    common = dict(
        stages="grpo",
        evaluate="false",
        plot="false",
        grpo={
            "max_steps": "4",
            "save_steps": "2",
            "per_device_train_batch_size": "4",
            "num_generations": "4",
            "max_completion_length": "8",
        },
    )
    # A: uninterrupted
    a = build_config("tiny", None, small(tmp_path / "a", synth_dir, tiny_model_dir, **common))
    assert run(a) == 0
    # B: crashes after the checkpoint at step 2 (like kill -9), then --resume
    b = build_config("tiny", None, small(tmp_path / "b", synth_dir, tiny_model_dir, **common))

    class CrashAt3(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 3:
                raise _Crash

    orig = runmod._callbacks
    monkeypatch.setattr(runmod, "_callbacks", lambda cfg, stage: [*orig(cfg, stage), CrashAt3()])
    with pytest.raises(_Crash):
        run(b)
    monkeypatch.setattr(runmod, "_callbacks", orig)
    gdir = tmp_path / "b" / "run" / "grpo"
    assert sorted(p.name for p in gdir.glob("checkpoint-*")) == ["checkpoint-2"]
    assert run(b, resume="latest") == 0

    def trainer_state(root):
        return json.loads((root / "run" / "grpo" / "checkpoint-4" / "trainer_state.json").read_text())

    assert trainer_state(tmp_path / "a")["global_step"] == trainer_state(tmp_path / "b")["global_step"] == 4
    order_a = _read_jsonl(tmp_path / "a" / "run" / "grpo" / "data_order.jsonl")
    order_b = _read_jsonl(gdir / "data_order.jsonl")
    # the resumed run re-reads from step 2 on: same studies at the same steps as the uninterrupted run
    resumed = {r["step"]: r["ids"] for r in order_b if r["step"] >= 2}
    assert resumed == {r["step"]: r["ids"] for r in order_a if r["step"] >= 2}
    # and the adapter weights agree (optimizer, scheduler and RNG restored)
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "a" / "run" / "grpo" / "checkpoint-4" / "adapter_model.safetensors")
    wb = load_file(gdir / "checkpoint-4" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def _grpo_trainer(tmp_path, synth_dir, model_dir, small, **grpo):
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    g = {"max_steps": "1", "per_device_train_batch_size": "4", "num_generations": "4", "max_completion_length": "8"}
    g.update(grpo)
    use_fused = g.pop("_fused", False)
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, model_dir, grpo=g))
    studies = read_annotation(synth_dir / "annotation.json", splits=("train",), kind="synthetic")["train"]
    model = load_model(model_dir)
    processor = load_processor(model_dir)
    trainer = MrgGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(cfg),
        args=cfg.grpo,
        train_dataset=to_dataset(studies, with_completion=False),
        processing_class=processor,
        peft_config=_peft(cfg, model),
        use_fused_loss=use_fused,
    )
    return trainer


def test_lora_trains_only_adapter_weights(tmp_path, synth_dir, tiny_model_dir, small):
    trainer = _grpo_trainer(tmp_path, synth_dir, tiny_model_dir, small)
    model = trainer.model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)  # vision tower untouched by default
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # force a non-zero advantage so LoRA-B moves away from zero
    orig = trainer._generate_and_score_completions

    def with_advantages(inputs):
        out = orig(inputs)
        out["advantages"] = torch.linspace(-1, 1, out["advantages"].numel())
        return out

    trainer._generate_and_score_completions = with_advantages
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all("lora_" in n for n in changed)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, synth_dir, tiny_model_dir, small):
    from mrgfast.train.trainers import NonFiniteLossError

    trainer = _grpo_trainer(tmp_path, synth_dir, tiny_model_dir, small)
    orig = trainer._compute_loss
    trainer._compute_loss = lambda model, inputs: orig(model, inputs) * float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss.*No checkpoint was saved yet"):
        trainer.train()
    assert trainer.state.global_step == 0


def _reference_grpo_loss(
    hidden,
    weight,
    completion_ids,
    completion_mask,
    advantages,
    *,
    bias=None,
    old_logps=None,
    ref_logps=None,
    beta=0.0,
    epsilon_low=0.2,
    epsilon_high=0.2,
    delta=None,
    temperature=1.0,
    loss_type="dapo",
    importance_sampling_level="token",
    num_items_in_batch=None,
    max_completion_length=None,
):
    """The documented contract of mrgfast.kernels.grpo_loss, in plain torch (token level, k3 KL)."""
    logits = (hidden.float() @ weight.float().T) / temperature
    logps = torch.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    old = logps.detach() if old_logps is None else old_logps
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    coef_1 = torch.exp(logps - old)
    coef_2 = coef_1.clamp(1 - epsilon_low, 1 + epsilon_high)
    if delta is not None:
        coef_1 = coef_1.clamp(max=delta)
    loss_tok = -torch.min(coef_1 * adv, coef_2 * adv)
    kl = None
    if beta != 0.0:
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        loss_tok = loss_tok + beta * kl
    m = completion_mask.float()
    if loss_type == "grpo":
        loss = ((loss_tok * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
    elif loss_type == "bnpo":
        loss = (loss_tok * m).sum() / m.sum().clamp(min=1)
    elif loss_type == "dr_grpo":
        loss = (loss_tok * m).sum() / (loss_tok.size(0) * (max_completion_length or loss_tok.size(1)))
    else:
        loss = (loss_tok * m).sum() / (m.sum() if num_items_in_batch is None else num_items_in_batch)
    metrics = {"mean_kl": None if kl is None else ((kl * m).sum() / m.sum()).detach()}
    return loss, logps.detach(), metrics


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
@pytest.mark.parametrize("impl", ["reference", "kernel"])
def test_fused_loss_switch_matches_trl(tmp_path, synth_dir, tiny_model_dir, monkeypatch, loss_type, impl, small):
    import mrgfast.train.trainers as tr

    if impl == "kernel":
        if not tr.fused_loss_available():
            pytest.skip("mrgfast.kernels.grpo_loss not importable in this build")
    else:
        import sys
        import types

        fake = types.ModuleType("mrgfast.kernels")
        fake.grpo_loss = _reference_grpo_loss
        fake.SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")  # the stand-in exports the real contract
        monkeypatch.setitem(sys.modules, "mrgfast.kernels", fake)
    trainer = _grpo_trainer(tmp_path, synth_dir, tiny_model_dir, small, loss_type=loss_type, beta="0.05", _fused=True)
    assert trainer.use_fused_loss
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by the train loop
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    inputs = trainer._prepare_inputs(batch)
    g = torch.Generator().manual_seed(0)
    inputs["advantages"] = torch.randn(inputs["advantages"].shape, generator=g)
    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def loss_and_grads(fused):
        trainer.use_fused_loss = fused
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        return loss.detach(), [p.grad.detach().clone() for p in params]

    ref_loss, ref_grads = loss_and_grads(False)
    fused_loss, fused_grads = loss_and_grads(True)
    torch.testing.assert_close(fused_loss, ref_loss, rtol=1e-4, atol=1e-6)
    for a, b in zip(fused_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_grpo_with_the_mccs_plus_switch(tmp_path, synth_dir, tiny_model_dir, monkeypatch, small):
    """``mrgfast train --mccs_sides true``: TRL's GRPOTrainer (MrgGRPOTrainer) calls the MCCS+ reward; every
    call returns mrgfast.mccs(..., sides=True) of the completions' reports, and the mean TRL logs per step is
    that of the call's scores."""
    import numpy as np

    import mrgfast
    import mrgfast.train.run as runmod
    from mrgfast.reward import extract_report

    calls = []

    class Recording:
        def __init__(self, reward):
            self.reward, self.__name__ = reward, reward.__name__

        def __call__(self, prompts=None, completions=None, completion_ids=None, **columns):
            out = self.reward(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
            calls.append(([c if isinstance(c, str) else c[-1]["content"] for c in completions], columns["report"], out))
            return out

    orig = runmod.build_rewards
    monkeypatch.setattr(runmod, "build_rewards", lambda cfg: [Recording(orig(cfg)[0]), *orig(cfg)[1:]])
    overrides = small(
        tmp_path, synth_dir, tiny_model_dir, stages="grpo", evaluate="false", plot="false", mccs_sides="true"
    )
    assert run(build_config("tiny", None, overrides)) == 0
    assert len(calls) == 2
    rows = [r for r in _read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["stage"] == "grpo" and "reward" in r]
    for (texts, refs, got), row in zip(calls, rows):
        want = mrgfast.mccs([extract_report(t) for t in texts], list(refs), sides=True)
        assert np.array_equal(np.asarray(got), want)
        assert row["rewards/mccs_plus_reward/mean"] == pytest.approx(float(want.mean()), rel=1e-5, abs=1e-6)
