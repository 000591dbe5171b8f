"""A small randomly initialised Qwen2.5-VL, with a processor whose tokenizer is trained on the spot.

Used by the ``tiny`` preset and the tests: everything is built locally (no download), deterministic
in ``seed``, and small enough to train on a laptop CPU in minutes. The architecture is the real
``Qwen2_5_VLForConditionalGeneration`` (vision tower with 2x2 patch merging, M-RoPE text model), so
the training code paths are exactly the ones used for the 7B models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

# Qwen2.5-VL's special tokens (names as in the real tokenizer, ids assigned here)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# The tags of the MRG-R1 output format are whole tokens in the tiny vocabulary (in real Qwen
# tokenizers they are a few sub-word tokens each; nothing in mrgfast depends on either).
TAG_TOKENS = ["<think>", "</think>", "<report>", "</report>"]

# Qwen2-VL style chat template, images as <|vision_start|><|image_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 800):
    """Byte-level BPE trained on ``corpus``, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.add_tokens(TAG_TOKENS)
    fast.padding_side = "left"
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _default_corpus() -> list[str]:
    """Report language of the synthetic generator plus the instruction (enough to train a BPE)."""
    import random

    from mrgfast.data.r2gen import DEFAULT_INSTRUCTION
    from mrgfast.data.synth import sample_findings, write_report, write_think

    r = random.Random(1234)
    texts = [DEFAULT_INSTRUCTION] * 20
    for _ in range(3000):
        f = sample_findings(r)
        texts.append(write_report(f, r))
        texts.append(write_think(f))
    texts += ["user", "assistant", "system", "\n"] * 20
    return texts


@contextmanager
def _outside_zero3_init():
    """Let one process build the model alone, even inside a ZeRO-3 training run.

    With a ZeRO-3 config active, transformers creates sub-models inside ``deepspeed.zero.Init``,
    whose partitioning is a collective; the other ranks wait for rank 0 to build the assets and
    never join it (a deadlock). The model built here is saved, not trained, so it needs none.
    """
    try:
        import transformers.integrations.deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover - transformers without the DeepSpeed integration
        yield
        return
    active = hf_deepspeed._hf_deepspeed_config_weak_ref  # the only handle transformers keeps
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = active


def build_processor(tokenizer, *, image_size: int = 112):
    """A Qwen2.5-VL processor around ``tokenizer`` for ``image_size``² images (one 112² image: 16 tokens)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    px = image_size * image_size
    image_processor = Qwen2VLImageProcessor(
        min_pixels=px, max_pixels=px, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    video_processor = None
    try:  # transformers requires a video processor for Qwen2.5-VL's processor
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor(min_pixels=px, max_pixels=px)
    except Exception:  # pragma: no cover - torchvision missing
        pass
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny(
    out: str | os.PathLike,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_hidden: int = 64,
    vision_depth: int = 2,
    vocab_size: int = 800,
    image_size: int = 112,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    model_vocab_size: int | None = None,
    tie_word_embeddings: bool = True,
    vision_heads: int | None = None,
    vision_intermediate: int | None = None,
    vision_fullatt_blocks: list[int] | None = None,
) -> Path:
    """Build and save a tiny Qwen2.5-VL (model + processor) under ``out``; returns ``out``.

    ``vocab_size`` is the BPE tokenizer's target; ``model_vocab_size`` (default: the tokenizer's length) sizes the
    embedding and LM head, padded past the tokenizer as real checkpoints are (Qwen2.5: 151,936 rows for 151,665
    tokens), which gives the real LM-head cost on a model that is otherwise small. ``tie_word_embeddings=False``
    gives the head its own weight (Qwen2.5-VL-7B's layout; the 3B ties). ``vision_heads`` (default ``vision_hidden //
    32``), ``vision_intermediate`` (default ``2 * vision_hidden``) and ``vision_fullatt_blocks`` (default: the last
    block; the others attend within 112-px windows) shape the vision tower like a real one (the 3B: 16 heads of 80,
    MLP 3,420, full attention in every 8th block)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if hidden_size % num_heads or (hidden_size // num_heads) % 4:
        raise ValueError("hidden_size/num_heads must be a multiple of 4 (M-RoPE sections)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus if corpus is not None else _default_corpus(), vocab_size=vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    rows = len(tok) if model_vocab_size is None else int(model_vocab_size)
    if rows < len(tok):
        raise ValueError(f"model_vocab_size {rows} is smaller than the tokenizer ({len(tok)} tokens)")

    head_dim = hidden_size // num_heads
    half = head_dim // 2  # M-RoPE: temporal / height / width sections over the rotary half
    t_sec = half - 2 * (half * 3 // 8)
    mrope = [t_sec, half * 3 // 8, half * 3 // 8]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=rows,
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 3,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=max(1, num_heads // 2),
            max_position_embeddings=2048,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=tie_word_embeddings,
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=vision_hidden,
            intermediate_size=vision_intermediate or vision_hidden * 2,
            num_heads=vision_heads or max(1, vision_hidden // 32),
            out_hidden_size=hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=list(vision_fullatt_blocks)
            if vision_fullatt_blocks is not None
            else [vision_depth - 1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(seed)
    with _outside_zero3_init():
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)

    processor = build_processor(tok, image_size=image_size)
    processor.save_pretrained(out)
    (out / "TINY.json").write_text(
        json.dumps(
            {
                "built_by": "mrgfast model tiny",
                "seed": seed,
                "hidden_size": hidden_size,
                "num_layers": num_layers,
                "vision_hidden": vision_hidden,
                "vision_depth": vision_depth,
                "vision_heads": config.vision_config.num_heads,
                "vision_intermediate": config.vision_config.intermediate_size,
                "vision_fullatt_blocks": list(config.vision_config.fullatt_block_indexes),
                "vocab_size": len(tok),
                "model_vocab_size": rows,
                "tie_word_embeddings": tie_word_embeddings,
                "image_size": image_size,
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            indent=1,
        )
    )
    return out
