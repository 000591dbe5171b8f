"""The packed vision attention gives the per-window loop's outputs (and gradients) on the CPU.

The reference is transformers' own path: Qwen2.5-VL's vision tower with ``sdpa``, which runs one SDPA call per
window (and per image in the full-attention blocks). The packed path is the same tower after
``use_packed_vision_attention``; images of several sizes give windows of unequal lengths (the grouped path) and
equal ones (the reshape path). fp32, rtol 1e-5.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

from mrgfast.models import vision_attention as VA

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _model(depth=4, fullatt=(1, 3), seed=0):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=128,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
        ),
        vision_config=dict(
            depth=depth,
            hidden_size=64,
            intermediate_size=96,
            num_heads=4,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=list(fullatt),
        ),
        image_token_id=5,
        video_token_id=6,
        vision_start_token_id=3,
        vision_end_token_id=4,
        attn_implementation="sdpa",
    )
    return Qwen2_5_VLForConditionalGeneration(cfg).eval()


# 16x16 patches: 4 full windows; 8x12, 22x18: edge windows of other sizes; 4x4: one small window
GRIDS = {"mixed": [[1, 16, 16], [1, 8, 12], [1, 4, 4], [1, 22, 18]], "equal": [[1, 16, 16], [1, 16, 16]]}


def _pixels(grid, seed=1):
    rows = int(torch.tensor(grid).prod(-1).sum())
    return torch.randn(rows, 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("grids", sorted(GRIDS))
def test_packed_equals_the_per_window_loop(grids):
    model = _model()
    tower = model.model.visual
    grid = torch.tensor(GRIDS[grids])
    px = _pixels(GRIDS[grids])
    with torch.no_grad():
        loop = tower(px, grid_thw=grid)
    VA.calls.clear()
    assert VA.use_packed_vision_attention(model) == VA.PACKED_VISION_ATTENTION
    assert tower.config._attn_implementation == VA.PACKED_VISION_ATTENTION
    assert model.config.text_config._attn_implementation == "sdpa"  # the language model keeps its attention
    assert model.model.language_model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        packed = tower(px, grid_thw=grid)
    assert VA.calls["sdpa"] == 4 and not VA.calls["sdpa_unpacked"]  # one packed call per block
    for name in ("pooler_output", "last_hidden_state"):
        torch.testing.assert_close(getattr(packed, name), getattr(loop, name), rtol=1e-5, atol=1e-6)


def test_packed_gradients_equal_the_loop():
    """When the vision tower trains (lora_vision, full fine-tuning) its backward runs through the packed path."""
    grid = torch.tensor(GRIDS["mixed"])
    px = _pixels(GRIDS["mixed"])
    grads = []
    for packed in (False, True):
        model = _model()
        if packed:
            VA.use_packed_vision_attention(model)
        tower = model.model.visual
        x = px.clone().requires_grad_(True)
        out = tower(x, grid_thw=grid).pooler_output
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads.append({"pixels": x.grad, **{n: p.grad for n, p in tower.named_parameters()}})
    assert set(grads[0]) == set(grads[1])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6)


def test_whole_model_logits_unchanged():
    model = _model(depth=2, fullatt=(1,))
    grid = torch.tensor([[1, 16, 16]])
    n_img = 16 * 16 // 4
    ids = torch.tensor([[7, 3] + [5] * n_img + [4, 8, 9, 10]])
    kw = dict(
        input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=_pixels([[1, 16, 16]]), image_grid_thw=grid
    )
    with torch.no_grad():
        plain = model(**kw).logits
        VA.use_packed_vision_attention(model)
        packed = model(**kw).logits
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_grouped_sdpa_equals_one_call_per_segment(causal):
    g = torch.Generator().manual_seed(3)
    lengths = [64, 64, 32, 0, 64, 16, 32, 5]
    cu = torch.tensor([0, *lengths]).cumsum(0)
    q, k, v = (torch.randn(4, int(cu[-1]), 16, generator=g) for _ in range(3))
    got = VA._grouped_sdpa(q, k, v, cu, 0.3, 0.0, causal)
    want = torch.cat(
        [
            torch.nn.functional.scaled_dot_product_attention(
                q[:, a:b][None], k[:, a:b][None], v[:, a:b][None], is_causal=causal, scale=0.3
            )[0]
            for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())
            if b > a
        ],
        dim=1,
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_backend_order_and_failure_fallback(monkeypatch, caplog):
    q = torch.randn(1, 2, 8, 16)
    assert VA.pick_backend(q) == "sdpa"  # the CPU
    monkeypatch.setattr(VA, "_varlen_ok", lambda q: True)
    monkeypatch.setattr(VA.importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else None)
    monkeypatch.setattr(VA, "_failed", set())
    assert VA.pick_backend(q) == "flash_attn"
    monkeypatch.setattr(VA.importlib.util, "find_spec", lambda name: None)
    assert VA.pick_backend(q) == ("torch_varlen" if VA._torch_has_varlen() else "sdpa")

    def broken(*a, **kw):
        raise RuntimeError("no kernel image for this device")

    monkeypatch.setattr(VA, "_torch_varlen", broken)
    monkeypatch.setattr(VA, "_torch_has_varlen", lambda: True)
    cu = torch.tensor([0, 3, 8])
    k, v = torch.randn_like(q), torch.randn_like(q)
    with caplog.at_level(logging.WARNING, logger="mrgfast.models"):
        out, _ = VA.packed_attention(None, q, k, v, None, scaling=0.25, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert "torch_varlen" in VA._failed and VA.pick_backend(q) == "sdpa"  # skipped from now on
    assert "torch_varlen failed" in caplog.text
    want = VA._grouped_sdpa(q[0], k[0], v[0], cu, 0.25, 0.0, False).transpose(0, 1)[None]
    torch.testing.assert_close(out, want)


def test_saved_model_loads_without_mrgfast(tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = _model(depth=1, fullatt=(0,))
    VA.use_packed_vision_attention(model)
    model.save_pretrained(tmp_path)
    assert VA.PACKED_VISION_ATTENTION not in (tmp_path / "config.json").read_text()
    again = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert again.config.vision_config._attn_implementation == "sdpa"


def test_not_applied_where_it_does_not_belong():
    model = _model(depth=1, fullatt=(0,))
    model.config.vision_config._attn_implementation = "flash_attention_2"  # already packed
    assert VA.use_packed_vision_attention(model) is None

    class Plain(torch.nn.Module):
        pass

    assert VA.use_packed_vision_attention(Plain()) is None


def test_mrgfast_train_switch(tmp_path):
    from mrgfast.models.tiny import build_tiny
    from mrgfast.train.config import build_config
    from mrgfast.train.run import _load

    model_dir = build_tiny(
        tmp_path / "m", hidden_size=64, num_layers=1, num_heads=2, vision_hidden=32, vision_depth=1, vocab_size=300
    )
    base = {"model_name_or_path": str(model_dir), "stages": "grpo", "evaluate": "false"}
    on, _ = _load(build_config("tiny", None, base), str(model_dir))
    assert on.config.vision_config._attn_implementation == VA.PACKED_VISION_ATTENTION
    off, _ = _load(build_config("tiny", None, {**base, "vision_packed_attention": "false"}), str(model_dir))
    assert off.config.vision_config._attn_implementation == "sdpa"
