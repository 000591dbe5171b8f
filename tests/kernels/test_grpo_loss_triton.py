"""The Triton kernels (Triton's interpreter on CPU tensors) against TRL's own loss and the full-logits reference.

Sizes are tiny: the interpreter runs each program in numpy.
"""

from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrgfast.kernels import grpo_loss

tri = importlib.import_module("mrgfast.kernels.grpo_loss_triton")
LOSS_TYPES = ["grpo", "bnpo", "dr_grpo", "dapo"]

if not tri.available():  # pragma: no cover
    pytest.skip("triton is not installed", allow_module_level=True)

if not tri.interpreter_active():
    # triton was imported earlier in this session without TRITON_INTERPRET=1: run this file in a fresh process
    def test_triton_kernels_in_interpreter_subprocess():
        env = dict(os.environ, TRITON_INTERPRET="1")
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
            env=env,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]

else:

    @pytest.mark.parametrize(
        "loss_type,level,with_old", list(itertools.product(LOSS_TYPES, ["token", "sequence"], [False, True]))
    )
    def test_triton_matches_trl(compare, case, loss_type, level, with_old):
        beta = 0.05 if with_old else 0.0
        c = case(3, 5, 8, 37, seed=7, lengths=[5, 0, 3], bias=with_old, old_offsets=with_old, beta=beta)
        opts = dict(
            loss_type=loss_type,
            importance_sampling_level=level,
            beta=beta,
            chunk_size=3,
            delta=1.5 if with_old else None,
            temperature=0.7 if with_old else 1.0,
            epsilon_high=0.28,
        )
        compare("triton", c, opts)

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        B=st.integers(1, 3),
        T=st.integers(1, 6),
        H=st.integers(1, 9),
        V=st.integers(2, 300),
        chunk=st.integers(1, 7),
        loss_type=st.sampled_from(LOSS_TYPES),
        level=st.sampled_from(["token", "sequence"]),
        with_old=st.booleans(),
        dtype=st.sampled_from([torch.float32, torch.bfloat16]),
        seed=st.integers(0, 999),
        data=st.data(),
    )
    def test_triton_hypothesis(compare, case, B, T, H, V, chunk, loss_type, level, with_old, dtype, seed, data):
        lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
        with_old = with_old and dtype == torch.float32
        c = case(B, T, H, V, dtype=dtype, seed=seed, lengths=lengths, old_offsets=with_old, beta=0.04)
        compare(
            "triton",
            c,
            dict(loss_type=loss_type, importance_sampling_level=level, beta=0.04, chunk_size=chunk),
            tol=2e-5 if dtype == torch.float32 else 3e-2,
        )

    @pytest.mark.parametrize("level", ["token", "sequence"])
    def test_triton_gradcheck_float64(case, monkeypatch, level):
        monkeypatch.setattr(importlib.import_module("mrgfast.kernels.grpo_loss"), "CONSUME_GRADS_IN_BACKWARD", False)
        c = case(2, 3, 3, 5, dtype=torch.float64, seed=3, lengths=[3, 2], bias=True, old_offsets=True, beta=0.1)

        def f(h, w, b):
            return grpo_loss(
                h,
                w,
                c["ids"],
                c["mask"],
                c["adv"],
                bias=b,
                old_logps=c["old"],
                ref_logps=c["ref"],
                beta=0.1,
                temperature=0.9,
                loss_type="grpo",
                importance_sampling_level=level,
                backend="triton",
                chunk_size=2,
            ).loss

        args = tuple(t.clone().requires_grad_(True) for t in (c["hidden"], c["weight"], c["bias"]))
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)

    @pytest.mark.parametrize("loss_type", LOSS_TYPES)
    def test_triton_frozen_head_sequence_level_matches_trl(frozen_vs_trl, loss_type):
        frozen_vs_trl("triton", loss_type)

    @pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy, inside the interpreter, on the NaN
    @pytest.mark.parametrize("where", ["hidden", "weight", "hidden_inf"])
    def test_triton_nan_inf_propagate(case, where):
        c = case(2, 3, 4, 11, seed=1, old_offsets=True)
        h, w = c["hidden"].clone(), c["weight"].clone()
        if where == "hidden":
            h[0, 1, 2] = float("nan")
        elif where == "weight":
            w[3, 1] = float("nan")
        else:
            h[1, 0, 0] = float("inf")
        h.requires_grad_(True)
        out = grpo_loss(h, w, c["ids"], c["mask"], c["adv"], old_logps=c["old"], backend="triton", chunk_size=2)
        assert not torch.isfinite(out.loss)
        out.loss.backward()
        assert not torch.isfinite(h.grad).all()

    def test_triton_kernels_directly_against_torch(case):
        """The two kernels alone: log-sum-exp/target/entropy and the in-place logits gradient, vocab > one block."""
        g = torch.Generator().manual_seed(0)
        tile = torch.randn(5, 300, generator=g) * 3
        tgt = torch.randint(0, 300, (5,), generator=g)
        lp, ent, lse = tri.stats(tile, tgt, 1 / 0.8, True, torch.float32)
        z = tile / 0.8
        ref_lp = torch.log_softmax(z, -1)
        assert torch.allclose(lp, ref_lp.gather(1, tgt[:, None]).squeeze(1), atol=1e-5)
        assert torch.allclose(ent, -(ref_lp.exp() * ref_lp).sum(-1), atol=1e-5)
        gvec = torch.randn(5, generator=g)
        out = tri.grad_logits(tile.clone(), tgt, lse, gvec, 1 / 0.8)
        onehot = torch.nn.functional.one_hot(tgt, 300).float()
        assert torch.allclose(out, gvec[:, None] * (onehot - ref_lp.exp()) / 0.8, atol=1e-6)


_COMPILE_SCRIPT = r"""
import importlib, triton
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget
tri = importlib.import_module("mrgfast.kernels.grpo_loss_triton")
common = {"stride": "i32", "tgt_ptr": "*i64", "lse_ptr": "*fp32", "n_cols": "i32", "inv_t_ptr": "*fp32"}
for dt in ("bf16", "fp16", "fp32"):
    for ent in (False, True):
        sig = dict(common, tile_ptr="*" + dt, tz_ptr="*fp32", ent_ptr="*fp32", HAS_ENTROPY="constexpr",
                   ACC_F64="constexpr", BLOCK_V="constexpr")
        triton.compile(ASTSource(triton.jit(tri._stats_kernel), sig,
                                 {"HAS_ENTROPY": ent, "ACC_F64": False, "BLOCK_V": tri.BLOCK_V_STATS}),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
    sig = dict(common, tile_ptr="*" + dt, g_ptr="*fp32", ACC_F64="constexpr", BLOCK_V="constexpr")
    triton.compile(ASTSource(triton.jit(tri._grad_kernel), sig, {"ACC_F64": False, "BLOCK_V": tri.BLOCK_V_GRAD}),
                   target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
print("OK")
"""


def test_triton_kernels_compile_for_sm90_without_a_gpu():
    """Compile (not run) both kernels to a Hopper cubin for each tile dtype: catches what the interpreter allows
    but the compiler rejects."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    r = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], env=env, capture_output=True, text=True)
    if r.returncode != 0 and "ptxas" in (r.stderr or "").lower() and "not found" in r.stderr.lower():
        pytest.skip("this triton build ships no ptxas")
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
