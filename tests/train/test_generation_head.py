"""The LM head through oneDNN while TRL generates: same tokens and scores as ``F.linear``, gradients untouched.

A tiny ``Qwen2ForCausalLM`` built from a config (no download); ``CPU_BACKEND="onednn"`` makes its small head
take oneDNN (``auto`` leaves heads under ``ONEDNN_MIN_WEIGHT`` elements on ``F.linear``).
"""

from __future__ import annotations

import pytest
import torch

from mrgfast.kernels import lm_head_matmul
from mrgfast.train.generation_head import onednn_generation_head

pytestmark = pytest.mark.skipif(not lm_head_matmul.onednn_available(), reason="this torch build has no oneDNN")


def _tiny_lm(vocab=300):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(cfg).eval()


@pytest.fixture
def calls(monkeypatch):
    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", "onednn")
    assert lm_head_matmul.onednn_available()  # the cached probe runs before the recorder goes in
    seen = []
    real = torch.ops.mkldnn._linear_pointwise.default

    class Recorder:  # stands in for torch.ops.mkldnn inside lm_head_matmul only
        class _linear_pointwise:
            @staticmethod
            def default(*args):
                seen.append(tuple(args[0].shape))
                return real(*args)

    monkeypatch.setattr(lm_head_matmul.torch.ops, "mkldnn", Recorder, raising=False)
    return seen


def test_greedy_generation_is_unchanged_and_goes_through_onednn(calls):
    model = _tiny_lm()
    ids = torch.tensor([[5, 17, 42, 7], [9, 3, 250, 1]])
    kw = dict(max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    with torch.no_grad():
        want = model.generate(ids, **kw)
        with onednn_generation_head(model) as head:
            assert head is model.lm_head
            got = model.generate(ids, **kw)
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.scores, want.scores):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert len(calls) >= 6 and all(shape[-1] == 32 for shape in calls)
    assert "forward" not in vars(model.lm_head)  # the class's forward is back


def test_gradient_calls_take_f_linear_and_exceptions_restore_the_head(calls):
    model = _tiny_lm()
    x = torch.randn(2, 3, 32, requires_grad=True)
    with onednn_generation_head(model):
        out = model.lm_head(x)
        assert out.grad_fn is not None and calls == []
        out.sum().backward()
        assert x.grad is not None
        with torch.no_grad():
            model.lm_head(x)
        assert calls == [(2, 3, 32)]
    with pytest.raises(KeyError), onednn_generation_head(model):
        raise KeyError("boom")
    assert "forward" not in vars(model.lm_head)


def test_small_heads_stay_on_f_linear_under_auto(monkeypatch):
    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", "auto")
    model = _tiny_lm()
    x = torch.randn(2, 32)
    with torch.no_grad(), onednn_generation_head(model):
        assert torch.equal(model.lm_head(x), torch.nn.functional.linear(x, model.lm_head.weight))


def test_non_linear_heads_are_left_alone():
    class Wrapped(torch.nn.Module):  # e.g. a LoRA-wrapped head: not a plain nn.Linear
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(4, 9)

        def forward(self, x):
            return self.inner(x)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = Wrapped()

        def get_output_embeddings(self):
            return self.head

    m = Model()
    with onednn_generation_head(m) as head:
        assert head is None and "forward" not in vars(m.head)
