"""Reference and old-policy log-probs through mrgfast's head equal TRL's own (``_get_per_token_logps_and_entropies``).

The trainer is the real ``MrgGRPOTrainer`` on the tiny Qwen2.5-VL with LoRA (the reference pass runs with the
adapter disabled, as TRL does) and images; every no-grad log-prob pass of ``_prepare_inputs`` is re-run with
the switch off (TRL's chunked head) on the same inputs and compared. Nothing is stubbed.
"""

from __future__ import annotations

import pytest
import torch

from mrgfast.train.config import build_config


def _trainer(tmp_path, synth_dir, model_dir, small, **grpo):
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    g = {"max_steps": "1", "per_device_train_batch_size": "4", "num_generations": "4", "max_completion_length": "8"}
    g.update(grpo)
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, model_dir, grpo=g))
    studies = read_annotation(synth_dir / "annotation.json", splits=("train",), kind="synthetic")["train"]
    model = load_model(model_dir)
    return MrgGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(cfg),
        args=cfg.grpo,
        train_dataset=to_dataset(studies, with_completion=False),
        processing_class=load_processor(model_dir),
        peft_config=_peft(cfg, model),
        use_fused_loss=True,
    )


def _record_both_paths(trainer) -> list:
    """Make every no-grad log-prob pass of ``trainer`` also run TRL's own path; returns the list that collects
    ``(mrgfast's log-probs, TRL's log-probs)`` per pass (training keeps mrgfast's)."""
    passes = []
    real = trainer._get_per_token_logps_and_entropies

    def both(model, *a, **kw):
        out = real(model, *a, **kw)
        if not torch.is_grad_enabled():
            trainer.use_fused_logps = False
            try:
                passes.append((out[0], real(model, *a, **kw)[0]))
            finally:
                trainer.use_fused_logps = True
        return out

    trainer._get_per_token_logps_and_entropies = both
    return passes


@pytest.mark.parametrize("temperature", ["1.0", "0.7"])
def test_reference_and_old_logps_equal_trl(tmp_path, synth_dir, tiny_model_dir, small, monkeypatch, temperature):
    import mrgfast.kernels as K

    # num_iterations 2: generation and optimisation steps are misaligned, so TRL also computes old log-probs
    trainer = _trainer(
        tmp_path, synth_dir, tiny_model_dir, small, beta="0.05", num_iterations="2", temperature=temperature
    )
    assert trainer.use_fused_logps
    kernel_calls = []
    real_kernel = K.token_logps

    def counting_kernel(*a, **kw):
        kernel_calls.append(1)
        return real_kernel(*a, **kw)

    monkeypatch.setattr(K, "token_logps", counting_kernel)
    passes = _record_both_paths(trainer)
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    # LoRA starts at B = 0 (policy == reference): move the adapter so the two passes differ
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert len(passes) == 2, "expected an old-policy and a reference pass"
    assert kernel_calls, "the fused log-prob path was not taken"
    for ours, trl in passes:
        assert ours.shape == trl.shape and ours.dtype == trl.dtype
        torch.testing.assert_close(ours, trl, rtol=1e-5, atol=1e-5)
        assert (ours[trl == 0] == 0).all()  # masked positions: 0, as TRL
    old, ref = passes[0][0], passes[1][0]
    assert (old - ref).abs().max() > 1e-4  # the adapter moved: the two passes really are different models

    # what the loss sees are these passes' rows (TRL shuffles the generation batch before splitting it)
    def rows(t):
        return sorted(tuple(round(v, 5) for v in r.tolist()) for r in t)

    assert rows(inputs["old_per_token_logps"]) == rows(old)
    assert rows(inputs["ref_per_token_logps"]) == rows(ref)


def test_switch_off_and_unsupported_heads_use_trl(tmp_path, synth_dir, tiny_model_dir, small):
    from mrgfast.train import fused_logps

    trainer = _trainer(tmp_path, synth_dir, tiny_model_dir, small, beta="0.05")
    assert fused_logps.supported(trainer.model)
    assert not fused_logps.supported(trainer.model, cast_lm_head_to_fp32=True)
    base = fused_logps.base_model(trainer.model)
    base.config.get_text_config().final_logit_softcapping = 30.0
    try:
        assert not fused_logps.supported(trainer.model)
    finally:
        base.config.get_text_config().final_logit_softcapping = None
    head = base.get_output_embeddings().weight
    head.ds_id, head.ds_status = 0, "NOT_AVAILABLE"  # what DeepSpeed ZeRO-3 puts on a partitioned parameter
    try:
        assert not fused_logps.supported(trainer.model)  # a sharded head: TRL's path gathers it
    finally:
        del head.ds_id, head.ds_status
    assert fused_logps.supported(trainer.model)
    with pytest.raises(RuntimeError, match="no-grad"):
        fused_logps.TokenLogpsModel(trainer.model, 1.0)(labels=torch.zeros(1, 2, dtype=torch.long))


def test_padded_untied_head_built_by_the_cli_equals_trl(tmp_path, synth_dir, small):
    """``mrgfast model tiny --model-vocab-size N --untied-head``: a padded vocabulary and an own LM-head weight."""
    import json

    from transformers import AutoConfig

    from mrgfast.cli.main import main

    out = tmp_path / "padded"
    args = ["model", "tiny", "--out", str(out), "--hidden-size", "64", "--layers", "1", "--heads", "2"]
    args += ["--vision-hidden", "32", "--vision-depth", "1", "--vocab-size", "500", "--image-size", "56"]
    assert main([*args, "--model-vocab-size", "1000", "--untied-head"]) == 0
    meta = json.loads((out / "TINY.json").read_text())
    assert meta["model_vocab_size"] == 1000 and meta["vocab_size"] < 1000 and meta["tie_word_embeddings"] is False
    assert AutoConfig.from_pretrained(out).get_text_config().vocab_size == 1000
    assert main([*args, "--out", str(tmp_path / "bad"), "--model-vocab-size", "10"]) == 2

    trainer = _trainer(tmp_path, synth_dir, out, small, beta="0.05")
    base = trainer.model.get_base_model()
    head, emb = base.get_output_embeddings(), base.get_input_embeddings()
    assert head.weight.shape[0] == 1000 and head.weight.data_ptr() != emb.weight.data_ptr()
    passes = _record_both_paths(trainer)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert len(passes) == 1  # the reference pass (generation and optimisation aligned: no old log-probs)
    torch.testing.assert_close(passes[0][0], passes[0][1], rtol=1e-5, atol=1e-5)
