"""The small decisions behind the distributed runs, without launching processes."""

import pytest
import torch

from mrgfast.train.config import default_ddp_backend
from mrgfast.train.distributed import DistributedSetupError, check_distributed_type, configured_distributed_type
from mrgfast.train.lm_head import ShardedHeadError, usable_lm_head


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_configured_type_comes_from_the_launcher(clean_env):
    assert configured_distributed_type() is None
    clean_env.setenv("ACCELERATE_USE_FSDP", "true")
    assert configured_distributed_type() == "FSDP"
    clean_env.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert configured_distributed_type() == "DEEPSPEED"


@pytest.mark.parametrize(
    "env, running, ok",
    [
        ({}, "NO", True),
        ({"WORLD_SIZE": "2"}, "MULTI_CPU", True),
        ({"WORLD_SIZE": "2"}, "NO", False),
        ({"ACCELERATE_USE_FSDP": "true", "WORLD_SIZE": "2"}, "FSDP", True),
        ({"ACCELERATE_USE_FSDP": "true", "WORLD_SIZE": "2"}, "MULTI_CPU", False),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "2"}, "DEEPSPEED", True),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "2"}, "MULTI_CPU", False),
    ],
)
def test_check_distributed_type(clean_env, env, running, ok):
    from accelerate.utils import DistributedType

    for k, v in env.items():
        clean_env.setenv(k, v)
    if ok:
        check_distributed_type(DistributedType[running])
    else:
        with pytest.raises(DistributedSetupError, match=running):
            check_distributed_type(DistributedType[running])


def test_deepspeed_without_cuda_gets_gloo(clean_env):
    assert default_ddp_backend() is None
    clean_env.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert default_ddp_backend() == (None if torch.cuda.is_available() else "gloo")


def test_usable_lm_head_plain_and_zero3_trainable():
    head = torch.nn.Linear(4, 6, bias=True)
    with usable_lm_head(head) as (w, b):
        assert w is head.weight and b is head.bias
    # a ZeRO-3-managed trainable head (DeepSpeed marks its parameters with ds_id / ds_status)
    head.weight.ds_id, head.weight.ds_status = 0, "NOT_AVAILABLE"
    with pytest.raises(ShardedHeadError, match="use_fused_loss false"), usable_lm_head(head):
        pass
