"""The vision cache gives the plain path's outputs: log-probs, loss, gradients and greedy completions.

The trainer is the real ``MrgGRPOTrainer`` on the tiny Qwen2.5-VL with LoRA on the language model and two views
per study; each GRPO group repeats its prompt's images G times, which is what the cache exploits. Every
comparison runs the same inputs through the model with the cache active and without it (fp32, rtol 1e-5).
"""

from __future__ import annotations

import logging

import pytest
import torch

from mrgfast.train.config import build_config
from mrgfast.train.vision_cache import VisionCache, vision_tower


@pytest.fixture(scope="module")
def two_view_dir(tmp_path_factory):
    from mrgfast.data.synth import generate

    out = tmp_path_factory.mktemp("synth2")
    generate(out, n_train=16, n_val=2, n_test=2, image_size=56, views=2, seed=5)
    return out


def _trainer(tmp_path, synth_dir, model_dir, small, *, vision_cache=True, lora_vision=False, **grpo):
    from mrgfast.data.r2gen import read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    g = {"max_steps": "1", "per_device_train_batch_size": "8", "num_generations": "4", "max_completion_length": "6"}
    g.update(grpo)
    extra = {"lora_vision": "true"} if lora_vision else {}
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, model_dir, grpo=g, **extra))
    studies = read_annotation(synth_dir / "annotation.json", splits=("train",), kind="synthetic")["train"]
    model = load_model(model_dir)
    trainer = MrgGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(cfg),
        args=cfg.grpo,
        train_dataset=to_dataset(studies, with_completion=False),
        processing_class=load_processor(model_dir),
        peft_config=_peft(cfg, model),
        use_fused_loss=True,
        vision_cache=vision_cache,
    )
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    with torch.no_grad():  # LoRA starts at B = 0: move the adapter so policy and reference differ
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    trainer.model.train()
    return trainer


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def train_log():
    handler = _Records()
    logger = logging.getLogger("mrgfast.train")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def _logps(trainer, inputs):
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with torch.no_grad():
        return trainer._get_per_token_logps_and_entropies(
            trainer.model,
            ids,
            mask,
            inputs["completion_ids"].size(1),
            batch_size=3,  # micro-batches that cut groups: the cache must serve across them
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            num_images=inputs["num_images"],
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
        )[0]


def test_logps_loss_and_grads_equal_recomputing(tmp_path, two_view_dir, tiny_model_dir, small):
    trainer = _trainer(tmp_path, two_view_dir, tiny_model_dir, small, beta="0.05", num_iterations="2")
    cache = trainer.vision_cache
    batch = next(iter(trainer.get_train_dataloader()))
    with trainer._vision_cached(trainer.model):
        inputs = trainer._prepare_inputs(batch)  # generation + old + reference passes through the cache
    n_images = inputs["image_grid_thw"].size(0)
    assert n_images == 16  # 8 completions x 2 views
    assert cache.images_served >= 3 * n_images  # generation, old and reference passes all asked
    assert cache.images_encoded == 4  # 2 prompts x 2 views: each distinct image encoded once
    assert inputs["old_per_token_logps"] is not None and inputs["ref_per_token_logps"] is not None

    plain = _logps(trainer, inputs)  # the cache is not active here: the plain path
    encoded = cache.images_encoded
    with trainer._vision_cached(trainer.model):
        cached = _logps(trainer, inputs)
    assert cache.images_encoded == encoded  # every image was a hit
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=1e-6)

    def loss_and_grads(active):
        trainer.model.zero_grad(set_to_none=True)
        if active:
            with trainer._vision_cached(trainer.model):
                loss = trainer.compute_loss(trainer.model, inputs)
                loss.backward()
        else:
            loss = trainer.compute_loss(trainer.model, inputs)
            loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    loss0, grads0 = loss_and_grads(False)
    served = cache.images_served
    loss1, grads1 = loss_and_grads(True)
    assert cache.images_encoded == encoded and cache.images_served == served + n_images  # the policy pass: all hits
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-7)
    assert grads0 and set(grads0) == set(grads1)
    assert all("lora_" in n for n in grads0)
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], rtol=1e-5, atol=1e-7)


def test_cache_takes_the_frozen_tower_out_of_the_autograd_graph(tmp_path, two_view_dir, tiny_model_dir, small):
    """With gradient checkpointing TRL hooks the tower's patch embedding to require grad (PEFT + checkpointing):
    the plain policy pass back-propagates through the frozen tower; through the cache it does not, and the LoRA
    gradients stay the same."""
    trainer = _trainer(tmp_path, two_view_dir, tiny_model_dir, small, gradient_checkpointing="true")
    batch = next(iter(trainer.get_train_dataloader()))
    with trainer._vision_cached(trainer.model):
        inputs = trainer._prepare_inputs(batch)
    tower = vision_tower(trainer.model)
    seen = []
    hook = tower.merger.register_full_backward_hook(lambda *a: seen.append(1))
    try:
        grads = []
        for active in (False, True):
            trainer.model.zero_grad(set_to_none=True)
            seen.clear()
            if active:
                with trainer._vision_cached(trainer.model):
                    trainer.compute_loss(trainer.model, inputs).backward()
            else:
                trainer.compute_loss(trainer.model, inputs).backward()
            grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
            assert bool(seen) is (not active), "plain path: backward through the tower; cached: none"
    finally:
        hook.remove()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7)


def test_greedy_generation_identical(tmp_path, two_view_dir, tiny_model_dir, small):
    trainer = _trainer(tmp_path, two_view_dir, tiny_model_dir, small)
    batch = next(iter(trainer.get_train_dataloader()))
    with trainer._vision_cached(trainer.model):
        inputs = trainer._prepare_inputs(batch)
    kw = dict(
        input_ids=inputs["prompt_ids"],
        attention_mask=inputs["prompt_mask"],
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
        max_new_tokens=6,
        do_sample=False,
    )
    model = trainer.model
    with torch.no_grad():
        plain = model.generate(**kw)
        trainer.vision_cache.clear()
        with trainer._vision_cached(model):
            cached = model.generate(**kw)
    assert torch.equal(plain, cached)


def test_duplicates_inside_one_call_and_collisions(tiny_model_dir):
    """Direct use of the cache on the tower: one call with repeated images encodes each once; an image whose
    fingerprint collides with another's (forced here) is still encoded on its own."""
    from mrgfast.models.loading import load_model

    model = load_model(tiny_model_dir)
    tower = vision_tower(model)
    tower.requires_grad_(False)  # frozen, as under LoRA on the language model
    grid = torch.tensor([[1, 4, 4], [1, 4, 4], [1, 4, 6]])
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 1176, generator=g), torch.randn(24, 1176, generator=g)
    pixels = torch.cat([a, a, b])
    with torch.no_grad():
        plain = tower(pixels, grid_thw=grid)
        cache = VisionCache()
        with cache.active(model):
            got = tower(pixels, grid_thw=grid)
            again = tower(torch.cat([b, a]), grid_thw=grid[[2, 0]])
    assert cache.images_encoded == 2 and cache.images_served == 5
    for name in ("pooler_output", "last_hidden_state"):
        torch.testing.assert_close(getattr(got, name), getattr(plain, name), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again.pooler_output, torch.cat([plain.pooler_output[8:], plain.pooler_output[:4]]))
    assert "forward" not in vars(tower)  # the class's forward again after the block

    cache = VisionCache()
    cache._fingerprints = lambda pixels, rows: [(1, 1)] * len(rows)  # every image collides
    with torch.no_grad(), cache.active(model):
        got = tower(torch.cat([a, b[:16]]), grid_thw=grid[[0, 1]])
    assert cache.images_encoded == 2
    plain_b = tower(b[:16], grid_thw=grid[[0]])
    torch.testing.assert_close(got.pooler_output[4:], plain_b.pooler_output, rtol=1e-5, atol=1e-6)


def test_fingerprint_is_batch_independent_and_order_sensitive():
    cache = VisionCache()
    x = torch.randn(20, 1176, generator=torch.Generator().manual_seed(1))
    fp = cache._fingerprints(x, [8, 12])
    assert cache._fingerprints(torch.cat([x[8:], x[:8]]), [12, 8]) == fp[::-1]  # independent of the batch around it
    cols, _ = cache._weights[(2 * 1176, "cpu")]
    y = x.clone()
    y.view(torch.int16).reshape(20, -1)[3, int(cols[5])] ^= 1  # one bit of one sampled word
    assert cache._fingerprints(y, [8, 12])[0] != fp[0]
    swapped = x[:8].clone()[[1, 0, 2, 3, 4, 5, 6, 7]]
    assert cache._fingerprints(swapped, [8])[0] != fp[0]  # row order matters
    half = cache._fingerprints(x.to(torch.bfloat16), [8, 12])
    assert len(half) == 2 and half[0] != fp[0]


def test_an_image_differing_only_in_unsampled_bits_is_encoded_on_its_own(tiny_model_dir):
    from mrgfast.models.loading import load_model

    model = load_model(tiny_model_dir)
    tower = vision_tower(model)
    tower.requires_grad_(False)
    a = torch.randn(16, 1176, generator=torch.Generator().manual_seed(2))
    cache = VisionCache()
    cache._fingerprints(a, [16])
    cols, _ = cache._weights[(2 * 1176, "cpu")]
    unsampled = next(c for c in range(2 * 1176) if c not in set(cols.tolist()))
    b = a.clone()
    b.view(torch.int16).reshape(16, -1)[0, unsampled] ^= 1 << 14  # a different image the fingerprint cannot see
    assert cache._fingerprints(a, [16]) == cache._fingerprints(b, [16])
    grid = torch.tensor([[1, 4, 4], [1, 4, 4]])
    with torch.no_grad():
        with cache.active(model):
            got = tower(torch.cat([a, b]), grid_thw=grid).last_hidden_state
        plain = tower(torch.cat([a, b]), grid_thw=grid).last_hidden_state
    assert cache.images_encoded == 2
    torch.testing.assert_close(got, plain, rtol=1e-5, atol=1e-6)
    assert not torch.equal(got[:16], got[16:])


def test_training_vision_tower_falls_back_with_a_log_line(tmp_path, two_view_dir, tiny_model_dir, small, train_log):
    trainer = _trainer(tmp_path, two_view_dir, tiny_model_dir, small, lora_vision=True)
    tower = vision_tower(trainer.model)
    assert any(p.requires_grad for p in tower.parameters())
    batch = next(iter(trainer.get_train_dataloader()))
    with trainer._vision_cached(trainer.model) as active:
        assert active is None and "forward" not in vars(tower)
        trainer._prepare_inputs(batch)
    assert trainer.vision_cache.images_encoded == 0
    assert any("vision cache: off, the vision tower trains" in line for line in train_log), train_log


def test_switch_off_is_the_plain_trainer(tmp_path, two_view_dir, tiny_model_dir, small):
    trainer = _trainer(tmp_path, two_view_dir, tiny_model_dir, small, vision_cache=False)
    assert trainer.vision_cache is None
    with trainer._vision_cached(trainer.model):
        assert "forward" not in vars(vision_tower(trainer.model))


def test_mrgfast_train_runs_with_the_cache(tmp_path, two_view_dir, tiny_model_dir, small, train_log):
    from mrgfast.train.run import run

    o = small(
        tmp_path,
        two_view_dir,
        tiny_model_dir,
        stages="grpo",
        evaluate="false",
        plot="false",
        grpo={"max_steps": "2", "save_steps": "100", "per_device_train_batch_size": "8", "num_generations": "4"},
    )
    cfg = build_config("tiny", None, o)
    assert cfg.mrg.vision_cache and cfg.mrg.vision_packed_attention  # on by default
    assert run(cfg) == 0
    assert any(line.startswith("vision cache: on") for line in train_log), train_log
