"""Shared prompts (``mrgfast.train.shared_prefix``): one sequence per group gives the padded rows' results.

The real ``MrgGRPOTrainer`` on the tiny Qwen2.5-VL (two views per study, M-RoPE positions, LoRA on the language
model, SDPA and eager attention) with a micro-batch of two prompts x four completions, reshaped into the cases
the layout must survive: completions cut at unequal lengths (as EOS cuts them), the second prompt left-padded
shorter than the first, the rows shuffled (groups not contiguous), a row with the same prompt tokens but another
image (its own group), and no-grad micro-batches of 3 rows that cut the groups. Compared against the padded
batch in fp32: hidden states, per-token log-probs and per-sequence losses rtol 1e-5 / atol 1e-6; LoRA gradients
rtol 1e-5 / atol 1e-6, i.e. 1e-5 of the largest gradient (measured 2026-12-04: at most 7.3e-8 apart, largest
gradient 0.13-0.17; hidden states at most 1.4e-6 apart; per-sequence losses equal).
"""

from __future__ import annotations

import logging

import pytest
import torch

from mrgfast.train import packing, shared_prefix
from mrgfast.train.config import build_config


@pytest.fixture(scope="module")
def two_view_dir(tmp_path_factory):
    from mrgfast.data.synth import generate

    out = tmp_path_factory.mktemp("synth_shared")
    generate(out, n_train=16, n_val=2, n_test=2, image_size=56, views=2, seed=7)
    return out


def _trainer(tmp_path, synth_dir, model_dir, small, *, attn="sdpa", vision_cache=False, **grpo):
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    g = {
        "max_steps": "1",
        "per_device_train_batch_size": "8",
        "num_generations": "4",
        "max_completion_length": "10",
        "beta": "0.05",
        "loss_type": "grpo",
    }
    g.update(grpo)
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, model_dir, grpo=g, lora_dropout="0.0"))
    studies = read_annotation(synth_dir / "annotation.json", splits=("train",), kind="synthetic")["train"]
    model = load_model(model_dir, attn_implementation=attn)
    trainer = MrgGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(cfg),
        args=cfg.grpo,
        train_dataset=to_dataset(studies, with_completion=False),
        processing_class=load_processor(model_dir),
        peft_config=_peft(cfg, model),
        use_fused_loss=True,
        share_prompt_prefix=True,
        vision_cache=vision_cache,
    )
    with torch.no_grad():  # LoRA starts at B = 0: give it a delta so its gradients and the passes are non-trivial
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    trainer.model.train()
    return trainer


def _rows(inputs, order):
    """``inputs`` with its rows in ``order`` (pixel rows and grids follow their rows)."""
    out = dict(inputs)
    for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "ref_per_token_logps"):
        if inputs.get(k) is not None:
            out[k] = inputs[k][order]
    if inputs.get("mm_token_type_ids") is not None:
        out["mm_token_type_ids"] = inputs["mm_token_type_ids"][order]
    n = inputs["num_images"]
    grid = inputs["image_grid_thw"]
    img_start = [sum(n[:i]) for i in range(len(n))]
    patches = grid.prod(-1).tolist()
    pix_start = [sum(patches[:j]) for j in range(len(patches) + 1)]
    imgs = [j for i in order for j in range(img_start[i], img_start[i] + n[i])]
    out["image_grid_thw"] = grid[imgs]
    out["pixel_values"] = torch.cat([inputs["pixel_values"][pix_start[j] : pix_start[j + 1]] for j in imgs])
    out["num_images"] = [n[i] for i in order]
    return out


def _by_study(inputs) -> list[int]:
    """Row order with the rows of one study (same images; the synthetic prompts' tokens are all equal) together."""
    patches = inputs["image_grid_thw"].prod(-1).tolist()
    n = inputs["num_images"]
    starts = [sum(patches[: sum(n[:i])]) for i in range(len(n) + 1)]
    rows = [inputs["pixel_values"][starts[i] : starts[i + 1]] for i in range(len(n))]
    groups: list[list[int]] = []
    for i, px in enumerate(rows):
        for g in groups:
            if torch.equal(rows[g[0]], px):
                g.append(i)
                break
        else:
            groups.append([i])
    assert sorted(len(g) for g in groups) == [4, 4], groups
    assert all(torch.equal(inputs["prompt_ids"][g[0]], inputs["prompt_ids"][i]) for g in groups for i in g)
    return [i for g in groups for i in g]


def _hard_batch(trainer, inputs):
    """The cases above, from a real micro-batch of 2 prompts x 4 completions (rows 0-3 and 4-7)."""
    pad = trainer.processing_class.tokenizer.pad_token_id
    inputs = _rows(inputs, _by_study(inputs))  # TRL shuffled the generation batch: study A's rows first
    prompts = inputs["prompt_ids"]
    out = dict(inputs)
    # the second prompt shorter: its first 3 (system-prompt) tokens become left padding
    pm = inputs["prompt_mask"].clone()
    pm[4:, :3] = 0
    out["prompt_mask"] = pm
    out["prompt_ids"] = prompts.masked_fill(pm == 0, pad)
    if inputs.get("mm_token_type_ids") is not None:
        p = prompts.size(1)
        mm = inputs["mm_token_type_ids"].clone()
        mm[:, :p] = mm[:, :p].masked_fill(pm == 0, 0)
        out["mm_token_type_ids"] = mm
    # completions of unequal lengths (1 .. C tokens)
    cm = inputs["completion_mask"].clone()
    b, c = cm.shape
    for i in range(b):
        cm[i, max(1, c - 2 * i - (i % 3)) :] = 0
    out["completion_mask"] = cm
    out["completion_ids"] = inputs["completion_ids"].masked_fill(cm == 0, pad)
    # row 7: the same prompt tokens as rows 4-6, another first image (a group of one)
    patches = inputs["image_grid_thw"].prod(-1).tolist()
    first_of_row7 = sum(patches[: sum(inputs["num_images"][:7])])
    pixels = inputs["pixel_values"].clone()
    pixels[first_of_row7 : first_of_row7 + patches[sum(inputs["num_images"][:7])]] += 0.5
    out["pixel_values"] = pixels
    g = torch.Generator().manual_seed(0)
    out["advantages"] = torch.randn(inputs["advantages"].shape, generator=g)
    return _rows(out, [5, 0, 7, 2, 4, 1, 6, 3])  # shuffled, as TRL shuffles a generation batch


@pytest.fixture(scope="module")
def trainer_and_inputs(tmp_path_factory, two_view_dir, tiny_model_dir, small):
    trainer = _trainer(tmp_path_factory.mktemp("run"), two_view_dir, tiny_model_dir, small)
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    return trainer, inputs


def _policy_kwargs(inputs):
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    kw = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
    for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids"):
        if inputs.get(k) is not None:
            kw[k] = inputs[k]
    return kw


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


def _counting(monkeypatch):
    """``shared_prefix.share`` counting the layouts it returned."""
    real, taken = shared_prefix.share, []

    def share(*a, **k):
        out = real(*a, **k)
        taken.append(out)
        return out

    monkeypatch.setattr(shared_prefix, "share", share)
    return taken


def _policy(trainer, inputs, share, pack=False):
    trainer.share_prompt_prefix, trainer.pack_sequences = share, pack
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    hidden, lm_head = trainer._policy_hidden_states(trainer.model, inputs)
    per_seq = _per_sequence_losses(trainer, hidden, lm_head, inputs)
    total = trainer._fused_compute_loss(trainer.model, inputs)
    grads = torch.autograd.grad(total, params)
    return hidden.detach(), per_seq.detach(), total.detach(), grads


def _assert_same(a, b, mask):
    (h0, s0, t0, g0), (h1, s1, t1, g1) = a, b
    torch.testing.assert_close(h1[mask], h0[mask], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s1, s0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(t1, t0, rtol=1e-5, atol=1e-6)
    assert float(s0.abs().max()) > 0
    assert any(float(g.abs().max()) > 0 for g in g0), "no gradient reached the LoRA parameters"
    worst = max(float((x - y).abs().max()) for x, y in zip(g0, g1))
    for x, y in zip(g0, g1):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6, msg=lambda m: f"{m} (worst over all: {worst:.2e})")


@pytest.mark.parametrize("pack", [False, True], ids=["one_group_per_row", "with_pack_sequences"])
def test_policy_pass_losses_and_gradients_equal_the_padded_pass(trainer_and_inputs, monkeypatch, pack):
    trainer, inputs = trainer_and_inputs
    batch = _hard_batch(trainer, inputs)
    if pack:  # several groups per row: the planner's choice, forced (the tiny model's cost model keeps rows apart)
        monkeypatch.setattr(packing, "plan", lambda lengths, padded_len, **kw: [list(range(len(lengths)))])
    plain = _policy(trainer, batch, share=False)
    taken = _counting(monkeypatch)
    shared = _policy(trainer, batch, share=True, pack=pack)
    layout = taken[0]
    assert layout is not None, "the shared layout was not taken"
    assert layout.sequences == 3  # prompt A (4 rows), prompt B (3 rows), row 7 on its own
    assert layout.kwargs["image_grid_thw"].size(0) == 3 * 2  # each group's 2 views, once
    assert layout.rows == (1 if pack else 3)
    assert layout.tokens < int(_policy_kwargs(batch)["attention_mask"].sum())
    _assert_same(plain, shared, batch["completion_mask"].bool())


def test_a_micro_batch_that_cuts_groups_is_exact(trainer_and_inputs, monkeypatch):
    """Rows 1-5 of a micro-batch: parts of both groups (a smaller group is still a group) and single rows."""
    trainer, inputs = trainer_and_inputs
    batch = _rows(_hard_batch(trainer, inputs), [1, 3, 4, 6, 2])  # A, A, B, B, B' (row 7: its own image)
    plain = _policy(trainer, batch, share=False)
    taken = _counting(monkeypatch)
    shared = _policy(trainer, batch, share=True)
    assert taken[0] is not None and taken[0].sequences == 3
    _assert_same(plain, shared, batch["completion_mask"].bool())


def test_positions_are_the_padded_rows(trainer_and_inputs):
    """Every real token gets the M-RoPE position the padded forward computes for it (the model's own
    ``compute_3d_position_ids``), and the prompt of a group sits in the layout once."""
    trainer, inputs = trainer_and_inputs
    batch = _hard_batch(trainer, inputs)
    base = trainer.model.get_base_model()
    kw = _policy_kwargs(batch)
    layout = shared_prefix.share(base, kw, batch["prompt_ids"].size(1))
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
    pos = layout.kwargs["position_ids"]
    assert pos.shape == (3, layout.rows, layout.length)
    got = pos.reshape(3, -1)[:, layout.index[valid]]
    assert torch.equal(got, want[:, valid])
    assert torch.equal(layout.kwargs["input_ids"].reshape(-1)[layout.index[valid]], kw["input_ids"][valid])
    p = batch["prompt_ids"].size(1)
    prompt_slots = layout.index[:, :p][valid[:, :p]]
    assert prompt_slots.unique().numel() == sum(int(batch["prompt_mask"][i].sum()) for i in (1, 0, 2))  # A, B, B'
    # a completion's positions continue after its prompt's largest position, the same for every completion
    for i in range(valid.size(0)):
        n = int(batch["completion_mask"][i].sum())
        prompt_max = int(want[:, i, :p][:, valid[i, :p]].max())
        assert torch.equal(want[0, i, p : p + n], torch.arange(prompt_max + 1, prompt_max + 1 + n))


def test_the_mask_keeps_completions_apart(trainer_and_inputs):
    trainer, inputs = trainer_and_inputs
    batch = _hard_batch(trainer, inputs)
    base = trainer.model.get_base_model()
    layout = shared_prefix.share(base, _policy_kwargs(batch), batch["prompt_ids"].size(1))
    m = layout.kwargs["attention_mask"]
    assert m.dtype == torch.bool and m.shape == (layout.rows, 1, layout.length, layout.length)
    p = batch["prompt_ids"].size(1)
    index, cm = layout.index, batch["completion_mask"].bool()
    flat = m[:, 0].reshape(-1, layout.length)  # [K*L, L]: row = query slot
    for i in range(index.size(0)):
        q = index[i, p:][cm[i]]
        prompt = index[i, :p][batch["prompt_mask"][i].bool()]
        own = q
        for r, s in enumerate(q.tolist()):
            keys = flat[s].nonzero().squeeze(1) + (s // layout.length) * layout.length
            assert set(keys.tolist()) == set(prompt.tolist()) | set(own[: r + 1].tolist())


def test_no_grad_log_prob_passes_equal_the_padded_passes(trainer_and_inputs, monkeypatch):
    """TRL's loop over micro-batches of 3 rows (groups cut at their edges), through ``TokenLogpsModel``."""
    trainer, inputs = trainer_and_inputs
    batch = _hard_batch(trainer, inputs)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    outs, taken = {}, _counting(monkeypatch)
    for share in (False, True):
        trainer.share_prompt_prefix, trainer.pack_sequences = share, False
        with torch.no_grad():
            outs[share] = trainer._get_per_token_logps_and_entropies(
                trainer.model,
                ids,
                mask,
                batch["completion_ids"].size(1),
                batch_size=3,
                pixel_values=batch["pixel_values"],
                image_grid_thw=batch["image_grid_thw"],
                num_images=batch["num_images"],
                mm_token_type_ids=batch.get("mm_token_type_ids"),
            )[0]
    # rows [5 0 7] [2 4 1] [6 3]: no shared prompt, then A (0, 1) + B (4) ... the layout only where rows share
    assert [x is not None for x in taken] == [False, True, False]
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-5, atol=1e-6)
    m = batch["completion_mask"].bool()
    assert (outs[True][~m] == 0).all() and outs[False][m].abs().min() > 0


def test_eager_attention_gets_its_additive_mask(tmp_path, two_view_dir, tiny_model_dir, small, monkeypatch):
    trainer = _trainer(tmp_path, two_view_dir, tiny_model_dir, small, attn="eager")
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    batch = _hard_batch(trainer, inputs)
    plain = _policy(trainer, batch, share=False)
    taken = _counting(monkeypatch)
    shared = _policy(trainer, batch, share=True)
    assert taken[0] is not None and taken[0].kwargs["attention_mask"].dtype == torch.float32
    _assert_same(plain, shared, batch["completion_mask"].bool())


@pytest.mark.parametrize("attn", ["sdpa", "eager", "flex_attention"])
def test_a_text_model_through_each_mask_kind(attn):
    """A text-only decoder (Qwen2; 1-D positions; transformers 5.25 has no flex attention for Qwen2.5-VL) with
    left-padded prompts of unequal lengths and a completion cut short: the shared layout's hidden states at every
    real token are the padded forward's (rtol 1e-5 / atol 1e-6). flex attention compiles its kernel on the CPU
    (6-35 s measured, depending on inductor's cache)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from mrgfast.train.packing import gather

    cfg = Qwen2Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).eval()
    p, c = 7, 5
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(5, 300, (2, p), generator=g).repeat_interleave(3, 0)
    ids = torch.cat([prompts, torch.randint(5, 300, (6, c), generator=g)], 1)[[0, 3, 1, 4, 5, 2]]
    mask = torch.ones_like(ids)
    mask[[1, 3, 4], :2] = 0  # the second prompt is 2 tokens shorter: left padding
    mask[2, p + 2 :] = 0  # a completion cut after 2 tokens
    kw = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
    layout = shared_prefix.share(model, kw, p)
    assert layout is not None and layout.sequences == 2 and layout.kwargs["position_ids"].shape == (2, layout.length)
    kind = type(layout.kwargs["attention_mask"]).__name__
    assert kind == ("BlockMask" if attn == "flex_attention" else "Tensor")
    with torch.no_grad():
        padded = model(**kw, output_hidden_states=True).hidden_states[-1]
        shared = model(**layout.kwargs, output_hidden_states=True).hidden_states[-1]
    valid = mask.bool()
    torch.testing.assert_close(gather(shared, layout.index)[valid], padded[valid], rtol=1e-5, atol=1e-6)


def test_with_gradient_checkpointing_and_the_vision_cache(tmp_path, two_view_dir, tiny_model_dir, small, monkeypatch):
    """mrgfast train's defaults around the layout: checkpointed decoder layers (recomputed in the backward with the
    4-D mask) and the vision cache serving the groups' images."""
    trainer = _trainer(tmp_path, two_view_dir, tiny_model_dir, small, vision_cache=True, gradient_checkpointing="true")
    base = trainer.model.get_base_model()  # what Trainer.train does with gradient_checkpointing on
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
    layers = base.model.language_model.layers
    assert all(getattr(layer, "gradient_checkpointing", False) for layer in layers), "checkpointing is not on"
    with trainer._vision_cached(trainer.model):
        inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    batch = _hard_batch(trainer, inputs)
    encoded = trainer.vision_cache.images_encoded
    with trainer._vision_cached(trainer.model):
        plain = _policy(trainer, batch, share=False)
        taken = _counting(monkeypatch)
        shared = _policy(trainer, batch, share=True)
    assert taken[0] is not None and taken[0].sequences == 3
    assert trainer.vision_cache.images_encoded == encoded + 1  # row 7's changed image; the rest were hits
    _assert_same(plain, shared, batch["completion_mask"].bool())


def test_flash_attention_and_sliding_windows_keep_the_rows_apart(trainer_and_inputs, monkeypatch, caplog):
    trainer, inputs = trainer_and_inputs
    base = trainer.model.get_base_model()
    assert shared_prefix.why_not(base) is None
    monkeypatch.setattr(packing, "attention_implementation", lambda model: "flash_attention_2")
    why = shared_prefix.why_not(base)
    assert why is not None and "flash_attention_2" in why
    assert shared_prefix.share(base, _policy_kwargs(inputs), inputs["prompt_ids"].size(1)) is None
    trainer.share_prompt_prefix, trainer._told_no_sharing = True, False
    with caplog.at_level(logging.INFO, logger="mrgfast.train"):
        assert trainer._share(base, _policy_kwargs(inputs), inputs["prompt_ids"].size(1)) is None
    assert any("share_prompt_prefix: not used, flash_attention_2" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    text = base.config.get_text_config()
    monkeypatch.setattr(text, "layer_types", ["sliding_attention"] * text.num_hidden_layers, raising=False)
    assert "sliding_attention" in shared_prefix.why_not(base)


def test_nothing_shared_nothing_changed(trainer_and_inputs):
    """One row per prompt, a completion with a hole, media tokens in a completion: no layout (the caller's path)."""
    trainer, inputs = trainer_and_inputs
    base = trainer.model.get_base_model()
    p = inputs["prompt_ids"].size(1)
    assert shared_prefix.share(base, _policy_kwargs(_rows(inputs, [0, 4])), p) is None
    holed = dict(inputs)
    cm = inputs["completion_mask"].clone()
    cm[0, 1] = 0
    cm[0, 2:] = 1
    holed["completion_mask"] = cm
    assert shared_prefix.share(base, _policy_kwargs(holed), p) is None
    media = dict(inputs)
    ids = inputs["completion_ids"].clone()
    ids[0, 0] = base.config.image_token_id
    media["completion_ids"] = ids
    assert shared_prefix.share(base, _policy_kwargs(media), p) is None
    assert shared_prefix.share(base, _policy_kwargs(inputs), p) is not None


def test_switch_off_is_the_plain_path(trainer_and_inputs, monkeypatch):
    trainer, inputs = trainer_and_inputs
    taken = _counting(monkeypatch)
    trainer.share_prompt_prefix, trainer.pack_sequences = False, False
    trainer._policy_hidden_states(trainer.model, inputs)
    with torch.no_grad():
        trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1),
            inputs["completion_ids"].size(1),
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            num_images=inputs["num_images"],
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
        )
    assert taken == []
    cfg = build_config("tiny", None, {"share_prompt_prefix": "off"})
    assert cfg.mrg.share_prompt_prefix is False and build_config("tiny").mrg.share_prompt_prefix is True


def test_mrgfast_train_step_with_and_without_the_lever(tmp_path, two_view_dir, tiny_model_dir, small, monkeypatch):
    """A whole GRPO step of ``mrgfast train`` (TRL's GRPOTrainer loop: generation, rewards, the reference pass,
    the loss, the optimizer) with the lever on and off: same loss, same gradient norm, same adapter after the step.
    The random tiny model scores 0 on every report, so the MCCS reward gets a term of the completion's ids (as the
    distributed tests do) to give the groups non-zero advantages."""
    import json

    from safetensors.torch import load_file

    import mrgfast.train.run as R

    orig_rewards = R.build_rewards

    def rewards(cfg):
        funcs = orig_rewards(cfg)

        def ids_reward(prompts=None, completions=None, completion_ids=None, **kw):
            base = funcs[0](prompts=prompts, completions=completions, completion_ids=completion_ids, **kw)
            return [b + (sum(ids) % 7) / 7.0 for b, ids in zip(base, completion_ids)]

        ids_reward.__name__ = "mccs_plus_ids"
        return [ids_reward, *funcs[1:]]

    monkeypatch.setattr(R, "build_rewards", rewards)
    taken = _counting(monkeypatch)
    states, adapters = {}, {}
    for lever in ("on", "off"):
        o = small(
            tmp_path / lever,
            two_view_dir,
            tiny_model_dir,
            stages="grpo",
            evaluate="false",
            plot="false",
            share_prompt_prefix="true" if lever == "on" else "off",
            lora_dropout="0.0",
            grpo={
                "max_steps": "1",
                "save_steps": "1",
                "per_device_train_batch_size": "8",
                "num_generations": "4",
                "max_completion_length": "8",
                "beta": "0.04",
            },
        )
        n = len(taken)
        assert R.run(build_config("tiny", None, o)) == 0
        calls = taken[n:]
        if lever == "on":  # the reference pass and the policy pass both took the layout
            assert len(calls) >= 2 and all(x is not None for x in calls), calls
        else:
            assert calls == []
        ckpt = tmp_path / lever / "run" / "grpo" / "checkpoint-1"
        states[lever] = json.loads((ckpt / "trainer_state.json").read_text())["log_history"][0]
        adapters[lever] = load_file(ckpt / "adapter_model.safetensors")
    on, off = states["on"], states["off"]
    assert off["grad_norm"] > 0
    torch.testing.assert_close(on["loss"], off["loss"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(on["grad_norm"], off["grad_norm"], rtol=1e-4, atol=0.0)
    # Adam's first update is lr * g / (|g| + eps): a gradient element near eps turns a 1e-8 difference into a visible
    # one (measured: 2 of 1,024 elements of one matrix, 1.2e-6 apart), hence atol 1 % of the learning rate (1e-3)
    for k in adapters["off"]:
        torch.testing.assert_close(adapters["on"][k], adapters["off"][k], rtol=1e-5, atol=1e-5)
