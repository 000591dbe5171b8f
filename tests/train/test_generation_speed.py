"""Generation levers: LoRA merged while generating, and the static-cache compiled decode (CPU).

* The merge restores the base weights bit for bit (fp32 and bf16), leaves the LoRA parameters, their gradients
  and the optimizer state untouched, and generates what the unmerged adapter generates: greedy tokens identical
  and scores within 1e-5 in fp32; logits within the stated bf16 tolerance.
* A static cache (and, forced on the CPU, the compiled decode step) gives the greedy completions of plain
  ``generate``.
* In ``MrgGRPOTrainer`` (TRL's own ``GRPOTrainer`` loop) the adapter is merged exactly while TRL generates and
  unmerged after; sharded, trainable or non-PEFT models are left alone with a log line.
"""

from __future__ import annotations

import logging

import pytest
import torch

from mrgfast.train import generation_speed as gs

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _lora(model, r=8, dropout=0.0, seed=0):
    from peft import LoraConfig, get_peft_model

    pm = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout, target_modules=TARGETS))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # B = 0 at init (merging would change nothing): give the adapter a real delta
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return pm


def _tiny_lm(dtype=torch.float32):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return Qwen2ForCausalLM(cfg).to(dtype)


def _base_weights(pm):
    return {n: p.detach().clone() for n, p in pm.named_parameters() if "base_layer" in n or ("lora_" not in n)}


def _lora_params(pm):
    return {n: p.detach().clone() for n, p in pm.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merge_restores_base_weights_bit_for_bit(dtype):
    pm = _lora(_tiny_lm(dtype))
    for p in pm.parameters():  # PEFT keeps trainable adapters in fp32 over a bf16 base, as in training
        if p.requires_grad:
            p.data = p.data.float()
    base, lora = _base_weights(pm), _lora_params(pm)
    merger = gs.LoraMergeForGeneration()
    ids = torch.randint(0, 256, (3, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = pm(input_ids=ids).logits.float()
    for cycle in range(5):
        with merger.merged(pm) as merged:
            assert merged
            layer = gs.lora_layers(pm)[0]
            assert layer.merged
            with torch.no_grad():
                got = pm(input_ids=ids).logits.float()
        assert not any(layer.merged for layer in gs.lora_layers(pm))
        for n, p in pm.named_parameters():
            ref = base.get(n, lora.get(n))
            assert torch.equal(p.detach(), ref), f"{n} changed after merge/unmerge cycle {cycle}"
        if dtype == torch.float32:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        else:
            # bf16: W + s·BA rounded once (merged) vs the base product plus the adapter product (unmerged); the
            # stated tolerance is 2 % of the logits' range
            tol = 0.02 * float(want.abs().max())
            assert float((got - want).abs().max()) <= tol


def test_plain_peft_unmerge_does_not_restore_bf16_weights():
    """Why the snapshot exists: PEFT's own merge/unmerge leaves bf16 base weights changed (huggingface/trl#6688)."""
    pm = _lora(_tiny_lm(torch.bfloat16))
    for p in pm.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    base = _base_weights(pm)
    with torch.no_grad():
        for _ in range(3):
            pm.merge_adapter()
            pm.unmerge_adapter()
    changed = [n for n, p in pm.named_parameters() if n in base and not torch.equal(p.detach(), base[n])]
    assert changed  # and LoraMergeForGeneration puts the exact bits back (test above)


def test_optimizer_state_gradients_and_gradient_checkpointing_untouched():
    pm = _lora(_tiny_lm())
    pm.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    pm.train()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(2))

    def grads_of_loss():
        pm.zero_grad()
        pm(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in pm.named_parameters() if p.grad is not None}

    grads_of_loss()
    opt.step()
    before = grads_of_loss()  # gradients present while generating, as between accumulation steps
    state = {k: {s: v.clone() for s, v in st.items()} for k, st in opt.state.items()}
    lora = _lora_params(pm)
    with gs.LoraMergeForGeneration().merged(pm) as merged, torch.no_grad():
        assert merged
        pm.generate(input_ids=ids[:, :4], max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert all(torch.equal(p.grad, before[n]) for n, p in pm.named_parameters() if n in before)
    assert all(torch.equal(v, state[k][s]) for k, st in opt.state.items() for s, v in st.items())
    assert all(torch.equal(p.detach(), lora[n]) for n, p in pm.named_parameters() if n in lora)
    after = grads_of_loss()  # the next (checkpointed) training pass: the gradients of an unmerged model
    assert before.keys() == after.keys() and all(torch.equal(after[n], before[n]) for n in before)


def _vl_inputs(model_dir, n=3):
    import numpy as np
    from PIL import Image

    from mrgfast.models.loading import load_processor

    proc = load_processor(model_dir)
    rng = np.random.default_rng(0)
    msgs = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe " * (1 + i)}]}]
        for i in range(n)
    ]
    texts = [proc.apply_chat_template(m, add_generation_prompt=True) for m in msgs]
    images = [[Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8))] for _ in msgs]
    return proc, proc(text=texts, images=images, return_tensors="pt", padding=True)


def _greedy(model, inputs, proc, **gen):
    from transformers import GenerationConfig

    cfg = GenerationConfig(
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=proc.tokenizer.pad_token_id,
        eos_token_id=None,  # always 8 tokens: every decoding step is compared
        output_scores=True,
        return_dict_in_generate=True,
        **gen,
    )
    with torch.no_grad():
        out = model.generate(**inputs, generation_config=cfg)
    return out.sequences[:, inputs["input_ids"].shape[1] :], torch.stack(out.scores)


def test_merged_generation_equals_unmerged_on_qwen2_5_vl(tiny_model_dir):
    from mrgfast.models.loading import load_model

    proc, inputs = _vl_inputs(tiny_model_dir)
    pm = _lora(load_model(tiny_model_dir, attn_implementation="sdpa"), dropout=0.0)
    pm.train()  # TRL generates with the model in training mode
    want_ids, want_scores = _greedy(pm, inputs, proc, disable_compile=True)
    with gs.LoraMergeForGeneration().merged(pm) as merged:
        assert merged
        got_ids, got_scores = _greedy(pm, inputs, proc, disable_compile=True)
    assert torch.equal(got_ids, want_ids)
    torch.testing.assert_close(got_scores, want_scores, rtol=1e-5, atol=1e-5)


def test_static_cache_and_compiled_decode_give_plain_greedy_completions(tiny_model_dir):
    from transformers import GenerationConfig

    from mrgfast.models.loading import load_model

    proc, inputs = _vl_inputs(tiny_model_dir)
    model = load_model(tiny_model_dir, attn_implementation="sdpa").eval()
    want_ids, want_scores = _greedy(model, inputs, proc, disable_compile=True)
    static_ids, static_scores = _greedy(model, inputs, proc, cache_implementation="static", disable_compile=True)
    assert torch.equal(static_ids, want_ids)
    torch.testing.assert_close(static_scores, want_scores, rtol=1e-5, atol=1e-5)
    # what the trainer does to TRL's generation config, forced on for the CPU (auto leaves the CPU eager)
    cfg = GenerationConfig(disable_compile=True)
    assert gs.configure_compiled_decode(cfg, device="cpu") is None
    assert cfg.cache_implementation == "static" and cfg.disable_compile is False
    assert cfg.compile_config is not None and cfg.compile_config._compile_all_devices
    assert model._valid_auto_compile_criteria({"cache": _static_cache(model)}, cfg)
    compiled_ids, compiled_scores = _greedy(
        model, inputs, proc, cache_implementation="static", compile_config=cfg.compile_config
    )
    assert hasattr(model, "_compiled_call")  # the decoding steps really went through torch.compile
    assert torch.equal(compiled_ids, want_ids)
    torch.testing.assert_close(compiled_scores, want_scores, rtol=1e-4, atol=1e-4)


def _static_cache(model):
    from transformers import StaticCache

    return StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=16)


def test_compile_mode_per_device_and_user_cache_choice():
    from transformers import GenerationConfig

    assert gs.compiled_decode_wanted("auto", "cuda") and not gs.compiled_decode_wanted("auto", "cpu")
    assert gs.compiled_decode_wanted("on", "cpu") and not gs.compiled_decode_wanted("off", "cuda")
    assert not gs.compiled_decode_wanted("auto", "cuda", sharded=True)  # ZeRO-3 / FSDP gather around generation
    with pytest.raises(ValueError, match="compile_generation"):
        gs.compiled_decode_wanted("yes", "cpu")
    cfg = GenerationConfig(disable_compile=True, cache_implementation="offloaded")
    why = gs.configure_compiled_decode(cfg, device="cuda", user_cache_implementation="offloaded")
    assert "offloaded" in why and cfg.disable_compile and cfg.cache_implementation == "offloaded"
    gs.configure_compiled_decode(cfg, device="cuda", user_cache_implementation=None)
    assert cfg.compile_config.mode == "reduce-overhead"  # CUDA graphs on a GPU
    gs.eager_decode(cfg)
    assert cfg.disable_compile and cfg.cache_implementation is None


def test_merge_is_skipped_where_it_cannot_be_exact(caplog):
    merger = gs.LoraMergeForGeneration()
    plain = _tiny_lm()
    with caplog.at_level(logging.INFO, logger="mrgfast.train"), merger.merged(plain) as merged:
        assert not merged
    assert "not a PEFT model" in caplog.text

    pm = _lora(_tiny_lm())
    weight = gs.lora_layers(pm)[0].get_base_layer().weight
    weight.ds_id, weight.ds_status = 0, "NOT_AVAILABLE"  # what DeepSpeed ZeRO-3 puts on a partitioned parameter
    try:
        assert "sharded" in gs.merge_blocker(pm)
    finally:
        del weight.ds_id, weight.ds_status
    weight.requires_grad_(True)
    assert "train" in gs.merge_blocker(pm)
    weight.requires_grad_(False)
    assert gs.merge_blocker(pm) is None
    before = weight.detach().clone()
    with pytest.raises(KeyError), merger.merged(pm):
        raise KeyError("generation failed")
    assert torch.equal(weight, before) and not gs.lora_layers(pm)[0].merged  # restored on errors too


# ------------------------------------------------------------------------------------------ in the trainer
def _trainer(tmp_path, synth_dir, model_dir, small, **kw):
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.config import build_config
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    g = {"max_steps": "1", "per_device_train_batch_size": "4", "num_generations": "4", "max_completion_length": "6"}
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, model_dir, grpo=g, lora_dropout="0.0"))
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
        **kw,
    )


def test_trainer_generates_with_the_merged_adapter_and_restores_it(tmp_path, synth_dir, tiny_model_dir, small):
    trainer = _trainer(tmp_path, synth_dir, tiny_model_dir, small, merge_lora_for_generation=True)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    base = _base_weights(trainer.model)
    states = []
    base_model = trainer.model.get_base_model()
    orig = base_model.generate

    def spy(*a, **kw):
        states.append([layer.merged for layer in gs.lora_layers(trainer.model)])
        return orig(*a, **kw)

    base_model.generate = spy
    trainer.model.train()
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert states and all(all(s) for s in states)  # TRL's generate ran with every LoRA layer merged
    assert not any(layer.merged for layer in gs.lora_layers(trainer.model))
    for n, p in trainer.model.named_parameters():
        if n in base:
            assert torch.equal(p.detach(), base[n]), n


def test_trainer_falls_back_to_eager_decoding_when_compilation_fails(
    tmp_path, synth_dir, tiny_model_dir, small, caplog, monkeypatch
):
    from torch._dynamo.exc import TorchDynamoException
    from trl import GRPOTrainer

    class CompileFailed(TorchDynamoException):  # what dynamo / inductor raise (their own signatures vary)
        pass

    trainer = _trainer(tmp_path, synth_dir, tiny_model_dir, small, compile_generation="on")
    assert trainer.compiled_decode and trainer.generation_config.cache_implementation == "static"
    assert not trainer.generation_config.disable_compile
    calls = []
    real = GRPOTrainer._generate_single_turn

    def failing_once(self, *a, **kw):
        calls.append(self.generation_config.disable_compile)
        if len(calls) == 1:
            raise CompileFailed("inductor: no C++ compiler")
        return real(self, *a, **kw)

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", failing_once)
    trainer.model.train()
    with caplog.at_level(logging.WARNING, logger="mrgfast.train"):
        trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert calls == [False, True] and not trainer.compiled_decode
    assert trainer.generation_config.cache_implementation is None
    assert "decoding eagerly" in caplog.text


def test_trainer_levers_off_leave_trl_generation_config(tmp_path, synth_dir, tiny_model_dir, small):
    trainer = _trainer(tmp_path, synth_dir, tiny_model_dir, small)
    assert trainer._lora_merge is None and not trainer.compiled_decode
    assert trainer.generation_config.disable_compile  # TRL's own setting
    auto = _trainer(tmp_path, synth_dir, tiny_model_dir, small, compile_generation="auto")
    assert not auto.compiled_decode  # auto: eager on the CPU


def test_trainer_generates_through_the_compiled_static_cache_decode(tmp_path, synth_dir, tiny_model_dir, small):
    """TRL's sampling generation config (temperature, suppressed image token, EOS list) composes with the merged
    adapter, the static cache and the compiled decoding step (forced on: auto leaves the CPU eager)."""
    trainer = _trainer(
        tmp_path, synth_dir, tiny_model_dir, small, merge_lora_for_generation=True, compile_generation="on"
    )
    base = _base_weights(trainer.model)
    trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert trainer.compiled_decode  # no fallback to eager decoding
    assert hasattr(trainer.model.get_base_model(), "_compiled_call")  # transformers compiled the decoding step
    assert inputs["completion_ids"].shape[0] == 4 and inputs["completion_mask"].sum() > 0
    for n, p in trainer.model.named_parameters():
        if n in base:
            assert torch.equal(p.detach(), base[n]), n
