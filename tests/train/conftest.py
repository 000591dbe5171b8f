"""Shared fixtures: a tiny Qwen2.5-VL and a small synthetic dataset, built once per session (CPU, no downloads)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    from mrgfast.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, n_train=24, n_val=4, n_test=8, image_size=56, views=1, seed=3)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from mrgfast.models.tiny import build_tiny

    out = tmp_path_factory.mktemp("tiny")
    build_tiny(
        out,
        hidden_size=64,
        num_layers=1,
        num_heads=2,
        vision_hidden=32,
        vision_depth=1,
        vocab_size=500,
        image_size=56,
        seed=0,
    )
    return out


@pytest.fixture(scope="session")
def small():
    """``small(tmp_path, synth_dir, model_dir, **extra)``: overrides of the tiny preset for a run of seconds."""
    return small_overrides


def small_overrides(tmp_path, synth_dir, model_dir, **extra):
    """Overrides of the tiny preset that make a run take seconds."""
    o = {
        "output_dir": str(tmp_path / "run"),
        "model_name_or_path": str(model_dir),
        "annotation": str(synth_dir / "annotation.json"),
        "synth_if_missing": "false",
        "tiny_if_missing": "false",
        "eval_samples": "4",
        "eval_batch_size": "4",
        "eval_max_new_tokens": "16",
        "plot": "true",
        "sft": {
            "max_steps": "2",
            "num_train_epochs": "1",
            "per_device_train_batch_size": "4",
            "save_steps": "1",
            "logging_steps": "1",
            "disable_tqdm": "true",
        },
        "grpo": {
            "max_steps": "2",
            "per_device_train_batch_size": "8",
            "num_generations": "4",
            "max_completion_length": "12",
            "save_steps": "1",
            "logging_steps": "1",
            "disable_tqdm": "true",
        },
    }
    for k, v in extra.items():
        if isinstance(v, dict):
            o.setdefault(k, {}).update(v)
        else:
            o[k] = v
    return o
