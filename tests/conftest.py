"""Fixtures shared across test folders."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def launch_assets(tmp_path_factory):
    """(tiny Qwen2.5-VL model folder, synthetic annotation file: 8 train + 2 test studies) for the multi-process
    runs (`accelerate launch` DDP / DeepSpeed); built once per session."""
    pytest.importorskip("trl")
    pytest.importorskip("accelerate")
    from mrgfast.data.synth import generate
    from mrgfast.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("launch_assets")
    annotation = generate(root / "data", n_train=8, n_val=0, n_test=2, image_size=56, views=1, seed=0)
    model = build_tiny(
        root / "model", hidden_size=32, num_layers=1, num_heads=4, vision_hidden=32, vision_depth=1, image_size=56
    )
    return str(model), str(annotation)
