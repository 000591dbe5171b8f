"""Micro-batch sizing (``mrgfast.train.micro_batch``): the plan folds accumulation steps into the micro-batch only
where the estimate fits and the loss cannot change, and TRL trains the same step either way.

The last test runs one real optimizer step of ``MrgGRPOTrainer`` (TRL's loop) with the configured split
(4 completions x 2 accumulation steps) and with the plan's (8 x 1): same generation, same LoRA update (SGD, fp32,
rtol 1e-4 / atol 1e-7), for each loss that :data:`SPLIT_INVARIANT_LOSSES` names.
"""

from __future__ import annotations

import logging

import pytest
import torch

from mrgfast.train import micro_batch as mb


def _plan(**kw):
    args = dict(per_device=16, grad_accum=4, steps_per_generation=4, loss_type="dapo")
    args.update(kw)
    return mb.plan(**args)


def test_plan_folds_accumulation_steps_that_fit():
    p = _plan(available_bytes=100 * 2**30, bytes_per_row=2**30)  # 100 rows fit: the whole step (64) in one
    assert (p.per_device_train_batch_size, p.gradient_accumulation_steps, p.steps_per_generation, p.factor) == (
        64,
        1,
        1,
        4,
    )
    p = _plan(available_bytes=40 * 2**30, bytes_per_row=2**30)  # 40 rows: 32 (k = 2), not 48 (3 does not divide 4)
    assert (p.per_device_train_batch_size, p.gradient_accumulation_steps, p.steps_per_generation) == (32, 2, 2)
    p = _plan(grad_accum=4, steps_per_generation=2, available_bytes=100 * 2**30, bytes_per_row=2**30)
    assert (p.per_device_train_batch_size, p.gradient_accumulation_steps, p.steps_per_generation) == (32, 2, 1)


def test_plan_keeps_the_configured_split():
    p = _plan(loss_type="bnpo", available_bytes=100 * 2**30, bytes_per_row=2**30)
    assert p.factor == 1 and "bnpo" in p.why
    p = _plan(available_bytes=8 * 2**30, bytes_per_row=2**30)  # even 16 rows do not fit: say so, keep
    assert p.factor == 1 and p.per_device_train_batch_size == 16 and "over the" in p.why
    p = _plan(grad_accum=3, steps_per_generation=4, available_bytes=100 * 2**30, bytes_per_row=2**30)
    assert p.factor == 1 and "nothing to fold" in p.why


def test_activation_estimate_and_lora_count(tiny_model_dir):
    from peft import get_peft_model

    from mrgfast.models.loading import load_model, lora_config

    model = load_model(tiny_model_dir)
    cfg = model.config.get_text_config()
    h, i, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    assert mb.activation_bytes_per_token(model, dtype_bytes=2, gradient_checkpointing=True) == 2 * (
        n * h + 6 * h + 4 * i
    )
    assert mb.activation_bytes_per_token(model, dtype_bytes=2, gradient_checkpointing=False) == 2 * n * (10 * h + 5 * i)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lc = lora_config(8, 16, 0.0, targets, False, model)
    want = mb.lora_trainable_params(model, lc.target_modules, 8)
    got = sum(p.numel() for p in get_peft_model(model, lc).parameters() if p.requires_grad)
    assert want == got  # the optimizer-state term counts exactly what PEFT will train


def test_cpu_keeps_the_configured_values(tmp_path, synth_dir, tiny_model_dir, small, caplog):
    from mrgfast.train.config import build_config

    cfg = build_config("tiny", None, small(tmp_path, synth_dir, tiny_model_dir))
    before = (cfg.grpo.per_device_train_batch_size, cfg.grpo.gradient_accumulation_steps)
    with caplog.at_level(logging.INFO, logger="mrgfast.train"):
        assert mb.auto_size(cfg, None, None, None) is None
    assert (cfg.grpo.per_device_train_batch_size, cfg.grpo.gradient_accumulation_steps) == before
    assert "no GPU" in caplog.text


def test_auto_size_on_a_device_uses_the_estimate(tmp_path, synth_dir, tiny_model_dir, small, monkeypatch):
    """The estimate's inputs on a (simulated) 141 GiB device: free memory, the longest prompt, the model's shape."""
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.config import build_config

    g = {"per_device_train_batch_size": "4", "gradient_accumulation_steps": "4", "num_generations": "4"}
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, tiny_model_dir, grpo=g))
    assert cfg.grpo.steps_per_generation == 4 and cfg.grpo.loss_type in mb.SPLIT_INVARIANT_LOSSES
    studies = read_annotation(synth_dir / "annotation.json", splits=("train",), kind="synthetic")["train"]
    ds = to_dataset(studies, with_completion=False)
    model, processor = load_model(tiny_model_dir), load_processor(tiny_model_dir)
    gen_batch = cfg.grpo.generation_batch_size
    monkeypatch.setattr(mb, "device_memory", lambda: (130 * 2**30, 141 * 2**30))
    p = mb.auto_size(cfg, model, processor, ds)
    assert p.factor == 4 and cfg.grpo.per_device_train_batch_size == 16
    assert cfg.grpo.gradient_accumulation_steps == 1 and cfg.grpo.steps_per_generation == 1
    assert cfg.grpo.generation_batch_size == gen_batch
    longest, image_tokens = mb.prompt_tokens(processor, ds)
    assert image_tokens > 0 and p.estimate["row_tokens"] == longest + cfg.grpo.max_completion_length
    # a device whose free memory holds 6 rows beyond the fixed terms: 8 (k = 2) does not fit, the split stays
    e, gib = p.estimate, 2**30
    total = 141 * gib
    fixed = (e["weights_gib"] + e["optimizer_gib"]) * gib + mb.RESERVE_BYTES + mb.RESERVE_SHARE * total
    free = int(fixed + 6 * e["row_gib"] * gib / mb.USE_SHARE)
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, tiny_model_dir, grpo=g))
    monkeypatch.setattr(mb, "device_memory", lambda: (free, total))
    p = mb.auto_size(cfg, model, processor, ds)
    assert p.factor == 1 and cfg.grpo.per_device_train_batch_size == 4
    assert 5.5 < p.estimate["available_gib"] / e["row_gib"] < 6.5


@pytest.mark.parametrize("loss_type", mb.SPLIT_INVARIANT_LOSSES)
def test_folded_split_trains_the_same_step(tmp_path, synth_dir, tiny_model_dir, small, loss_type):
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.config import build_config
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    studies = read_annotation(synth_dir / "annotation.json", splits=("train",), kind="synthetic")["train"]
    weights = {}
    for split in ("configured", "folded"):
        g = {
            "max_steps": "1",
            "per_device_train_batch_size": "4",
            "gradient_accumulation_steps": "2",
            "num_generations": "4",
            "max_completion_length": "6",
            "loss_type": loss_type,
            "beta": "0.04",
            "learning_rate": "1.0",
            "optim": "sgd",  # the update is the gradient itself (Adam's would amplify float noise near zero)
            "lr_scheduler_type": "constant",
            "warmup_steps": "0",
            "save_strategy": "no",
        }
        cfg = build_config("tiny", None, small(tmp_path / split, synth_dir, tiny_model_dir, grpo=g, lora_dropout="0.0"))
        if split == "folded":
            mb.apply(
                cfg.grpo,
                mb.plan(
                    per_device=4,
                    grad_accum=2,
                    steps_per_generation=2,
                    loss_type=loss_type,
                    available_bytes=10**12,
                    bytes_per_row=1,
                ),
            )
            assert (cfg.grpo.per_device_train_batch_size, cfg.grpo.gradient_accumulation_steps) == (8, 1)
        model = load_model(tiny_model_dir)
        trainer = MrgGRPOTrainer(
            model=model,
            reward_funcs=build_rewards(cfg),
            args=cfg.grpo,
            train_dataset=to_dataset(studies, with_completion=False),
            processing_class=load_processor(tiny_model_dir),
            peft_config=_peft(cfg, model),
            use_fused_loss=True,
        )
        with torch.no_grad():  # B = 0 would leave policy == reference and zero advantages nothing to move
            for name, p in trainer.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
        start = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
        trainer.train()
        weights[split] = {n: p.detach() - start[n] for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert max(float(u.abs().max()) for u in weights["configured"].values()) > 1e-4, "the step moved nothing"
    for n, update in weights["configured"].items():
        torch.testing.assert_close(weights["folded"][n], update, rtol=1e-4, atol=1e-7)
