"""Padding-free policy passes (``mrgfast.train.packing``): packed rows give the padded rows' results.

The real ``MrgGRPOTrainer`` on the tiny Qwen2.5-VL (images, M-RoPE positions, LoRA), its completions cut at
different lengths as EOS cuts them: the policy pass's hidden states, each sequence's GRPO loss and the LoRA
gradients, and the no-grad log-prob passes, packed vs padded, in fp32 (tolerance rtol 1e-5 / atol 1e-6 for
states, losses and log-probs; rtol 1e-4 / atol 1e-6 for gradients, which sum over every token). Both packed
layouts are checked: SDPA's bins and the single varlen row flash-attention gets.
"""

from __future__ import annotations

import pytest
import torch

from mrgfast.train import packing


def test_next_fit_keeps_row_order_and_capacity():
    assert packing.next_fit([3, 4, 2, 5, 1], 6) == [[0], [1, 2], [3, 4]]
    assert packing.next_fit([7, 2], 6) == [[0], [1]]  # a row longer than the capacity gets its own bin
    assert packing.next_fit([2, 2, 2], 100) == [[0, 1, 2]]


def test_plan_by_attention_kind():
    lin, att = 1000.0, 10.0
    assert packing.plan([8, 8, 8], 8, varlen=False, costs=(lin, att)) is None  # no padding: nothing to gain
    assert packing.plan([8, 2, 3], 8, varlen=True, costs=(lin, att)) == [[0, 1, 2]]  # varlen: one row
    # dense attention: one row of 13 costs 13*1000 + 169*10 = 14,690 < padded 3*(8000 + 640) = 25,920
    assert packing.plan([8, 2, 3], 8, varlen=False, costs=(lin, att)) == [[0, 1, 2]]
    # attention-heavy: long packed rows cost more than the padding they save; bins of the longest row win
    assert packing.plan([8, 2, 3, 7], 8, varlen=False, costs=(1.0, 10.0)) == [[0], [1, 2], [3]]
    # less than 5 % to gain: the padded batch runs
    assert packing.plan([8, 8, 8, 7], 8, varlen=False, costs=(lin, att)) is None


def _trainer(tmp_path, synth_dir, model_dir, small, **kw):
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.config import build_config
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    g = {
        "max_steps": "1",
        "per_device_train_batch_size": "4",
        "num_generations": "4",
        "max_completion_length": "10",
        "beta": "0.05",
        "loss_type": "grpo",
    }
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, model_dir, grpo=g, lora_dropout="0.0"))
    studies = read_annotation(synth_dir / "annotation.json", splits=("train",), kind="synthetic")["train"]
    model = load_model(model_dir, attn_implementation="sdpa")
    trainer = MrgGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(cfg),
        args=cfg.grpo,
        train_dataset=to_dataset(studies, with_completion=False),
        processing_class=load_processor(model_dir),
        peft_config=_peft(cfg, model),
        use_fused_loss=True,
        **kw,
    )
    with torch.no_grad():  # LoRA starts at B = 0: give it a delta so its gradients and the passes are non-trivial
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    return trainer


def _ragged(trainer, inputs):
    """The completions cut at different lengths (1 .. C tokens), as EOS cuts them."""
    out = dict(inputs)
    cm = inputs["completion_mask"].clone()
    b, c = cm.shape
    for i in range(b):
        cm[i, max(1, c - 3 * i) :] = 0
    out["completion_mask"] = cm
    out["completion_ids"] = inputs["completion_ids"].masked_fill(
        cm == 0, trainer.processing_class.tokenizer.pad_token_id
    )
    return out


@pytest.fixture
def trainer_and_inputs(tmp_path, synth_dir, tiny_model_dir, small):
    trainer = _trainer(tmp_path, synth_dir, tiny_model_dir, small)
    trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert inputs.get("pixel_values") is not None and inputs.get("image_grid_thw") is not None
    return trainer, _ragged(trainer, inputs)


def _per_sequence_losses(trainer, hidden, lm_head, inputs):
    from mrgfast.kernels import grpo_loss

    losses = []
    for i in range(hidden.size(0)):
        out = grpo_loss(
            hidden[i : i + 1],
            lm_head.weight,
            inputs["completion_ids"][i : i + 1],
            inputs["completion_mask"][i : i + 1],
            inputs["advantages"][i : i + 1],
            old_logps=None,
            ref_logps=inputs["ref_per_token_logps"][i : i + 1],
            beta=trainer.beta,
            loss_type="grpo",
        )
        losses.append(out[0] if isinstance(out, tuple) else out.loss)
    return torch.stack(losses)


LAYOUTS = {
    "bins": lambda b: [list(range(0, b // 2)), list(range(b // 2, b))],  # SDPA's layout at scale: K rows
    "one_row": lambda b: [list(range(b))],  # what a varlen kernel (flash-attention) gets, here through SDPA's mask
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_policy_pass_losses_and_gradients_equal_the_padded_pass(trainer_and_inputs, monkeypatch, layout):
    """Any packed layout is exact; which one runs is :func:`packing.plan`'s choice (tested above), forced here
    because the tiny model's attention-heavy cost model would keep these short rows padded."""
    trainer, inputs = trainer_and_inputs
    monkeypatch.setattr(packing, "plan", lambda lengths, padded_len, **kw: LAYOUTS[layout](len(lengths)))
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    results = {}
    real = packing.pack
    for pack in (False, True):
        trainer.pack_sequences = pack
        calls = []
        monkeypatch.setattr(packing, "pack", lambda *a, _calls=calls, **k: _calls.append(1) or real(*a, **k))
        hidden, lm_head = trainer._policy_hidden_states(trainer.model, inputs)
        per_seq = _per_sequence_losses(trainer, hidden, lm_head, inputs)
        first = torch.autograd.grad(per_seq[0], params, retain_graph=True, allow_unused=True)
        total = trainer._fused_compute_loss(trainer.model, inputs)
        grads = torch.autograd.grad(total, params, allow_unused=True)
        results[pack] = (hidden.detach(), per_seq.detach(), total.detach(), first, grads, calls)
    (h0, s0, t0, f0, g0, _), (h1, s1, t1, f1, g1, calls) = results[False], results[True]
    assert calls, "the packed path was not taken"
    packed = real(trainer.model.get_base_model(), _policy_kwargs(inputs))
    assert packed is not None and packed.rows == len(LAYOUTS[layout](4))
    assert packed.rows * packed.length < inputs["completion_mask"].numel() + inputs["prompt_mask"].numel()
    m = inputs["completion_mask"].bool()
    torch.testing.assert_close(h1[m], h0[m], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s1, s0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(t1, t0, rtol=1e-5, atol=1e-6)
    assert float(s0.abs().max()) > 0 and float(t0.abs()) > 0
    for a, b in ((f0, f1), (g0, g1)):
        nonzero = [x for x in a if x is not None and x.abs().max() > 0]
        assert nonzero, "no gradient reached the LoRA parameters"
        for x, y in zip(a, b):
            assert (x is None) == (y is None)
            if x is not None:
                torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6)


def _policy_kwargs(inputs):
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    kw = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
    for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids"):
        if inputs.get(k) is not None:
            kw[k] = inputs[k]
    return kw


def test_packed_positions_are_the_models_own(trainer_and_inputs, monkeypatch):
    """The 3-D M-RoPE positions carried into the packed rows are what the padded forward computes itself."""
    trainer, inputs = trainer_and_inputs
    monkeypatch.setattr(packing, "plan", lambda lengths, padded_len, **kw: LAYOUTS["bins"](len(lengths)))
    base = trainer.model.get_base_model()
    kw = _policy_kwargs(inputs)
    packed = packing.pack(base, kw)
    inner = base.model
    inner.rope_deltas = None
    want = inner.compute_3d_position_ids(
        input_ids=kw["input_ids"],
        image_grid_thw=kw["image_grid_thw"],
        video_grid_thw=None,
        inputs_embeds=base.get_input_embeddings()(kw["input_ids"]),
        attention_mask=kw["attention_mask"],
        cache=None,
        mm_token_type_ids=kw.get("mm_token_type_ids"),
    )
    valid = kw["attention_mask"].bool()
    pos = packed.kwargs["position_ids"]
    assert pos.shape == (4, packed.rows, packed.length)
    flat = pos.reshape(4, -1)[:, packed.index[valid]]
    assert torch.equal(flat[1:], want[:, valid])  # rows 1-3: the model's own 3-D positions
    assert torch.equal(flat[0], (kw["attention_mask"].cumsum(1) - 1)[valid])  # row 0: per-sequence restarts
    # vision rows are not sequential: the 3-D positions differ from the text ones on the image tokens
    assert not torch.equal(flat[1], flat[0])


def test_no_grad_log_prob_passes_equal_the_padded_passes(trainer_and_inputs, monkeypatch):
    from mrgfast.train import fused_logps

    trainer, inputs = trainer_and_inputs
    monkeypatch.setattr(packing, "plan", lambda lengths, padded_len, **kw: LAYOUTS["one_row"](len(lengths)))
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    c = inputs["completion_ids"].size(1)
    calls = []
    real = fused_logps.TokenLogpsModel

    class Counting(real):
        def __call__(self, **kw):
            calls.append(self.pack)
            return super().__call__(**kw)

    fused_logps.TokenLogpsModel = Counting
    try:
        outs = {}
        for pack in (False, True):
            trainer.pack_sequences = pack
            with torch.no_grad():
                outs[pack] = trainer._get_per_token_logps_and_entropies(
                    trainer.model,
                    ids,
                    mask,
                    c,
                    batch_size=2,
                    pixel_values=inputs["pixel_values"],
                    image_grid_thw=inputs["image_grid_thw"],
                    num_images=inputs["num_images"],
                    mm_token_type_ids=inputs.get("mm_token_type_ids"),
                )[0]
    finally:
        fused_logps.TokenLogpsModel = real
    assert calls == [False, False, True, True]  # two micro-batches per pass, each packed on its own
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-5, atol=1e-6)
    m = inputs["completion_mask"].bool()
    assert (outs[True][~m] == 0).all() and outs[False][m].abs().min() > 0


def test_dense_rows_are_capped(monkeypatch):
    monkeypatch.setattr(packing, "MAX_DENSE_ROW", 20)
    # linear-heavy costs would pack everything into one row of 26; the cap keeps rows at 20 slots or fewer
    bins = packing.plan([8, 2, 3, 7, 6], 8, varlen=False, costs=(1000.0, 1.0))
    assert bins is not None and max(sum([8, 2, 3, 7, 6][i] for i in b) for b in bins) <= 20
    assert packing.plan([8, 2, 3, 7, 6], 8, varlen=True, costs=(1000.0, 1.0)) == [[0, 1, 2, 3, 4]]  # varlen: no cap
