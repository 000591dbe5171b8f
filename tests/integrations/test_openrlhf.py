"""mrgfast's OpenRLHF reward file run by OpenRLHF's own code (openrlhf 0.11.2 from PyPI, --no-deps).

What runs is OpenRLHF's: the ``train_ppo_ray`` argument parser and its checks on the README's
command, the prompt dataset's ``preprocess_data`` (chat template, label key), the
``SingleTurnAgentExecutor`` that loads ``--reward.remote_url`` and calls ``reward_func`` once per
sample from a thread, its Qwen2.5-VL image-prompt tokenisation (``process_prompt_with_images``),
and ``SamplesGenerator._process_response_into_experience``, which turns the result into an
``Experience``. Tokenizers are trained on the spot and given each family's chat template and
special tokens (Qwen2.5-VL, Gemma/MedGemma, Llama 3, DeepSeek).

Stubs (GPU-only packages, installed nowhere here): ``vllm`` (``SamplingParams`` as a plain
attribute holder, ``vllm.inputs.TokensPrompt``, ``vllm.utils.random_uuid``) and ``flash_attn``
(every name raises if called); the vLLM engine is a stub whose ``generate`` returns the given
response's token ids. Ray is imported, never started (``ray.is_initialized`` reports True and
``get_strategy`` captures the parsed arguments, so ``train`` stops before building actors).
"""

import asyncio
import importlib.machinery
import logging
import runpy
import sys
import types

import numpy as np
import pytest
from conftest import GOOD_A, GOOD_B, LEFT_B, NOTAGS, REF_A, REF_B, UNSIDED_B, WRONG_A, expected_scores

pytest.importorskip("openrlhf", reason="the integrations extra (pip install -e .[integrations])")
pytest.importorskip("deepspeed")
from PIL import Image

from mrgfast import engine
from mrgfast.models.tiny import build_processor, train_tokenizer
from mrgfast.reward import openrlhf as mrg_openrlhf

MRG = mrg_openrlhf.__file__
INSTRUCTION = "Describe the chest film. Answer as <think>...</think><report>...</report>"
# The README's OpenRLHF command (the reward part of it), as the tests run it.
README_ARGS = ["--data.label_key", "report", "--data.apply_chat_template", "--reward.remote_url", MRG]
COMMON_ARGS = [
    "--actor.model_name_or_path",
    "/models/Qwen2.5-VL-7B",
    "--data.prompt_dataset",
    "/data/iu_xray/train.jsonl",
    "--data.input_key",
    "messages",
    "--data.image_key",
    "images",
    "--data.max_images_per_prompt",
    "1",
    "--algo.advantage.estimator",
    "group_norm",
    "--rollout.n_samples_per_prompt",
    "4",
]


class SamplingParams:
    """vllm.SamplingParams stand-in: an attribute holder (what OpenRLHF's executor reads)."""

    def __init__(self, **kw):
        self.max_tokens = None
        self.logprobs = None
        self.__dict__.update(kw)


def _stub_module(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    m.__path__ = []
    m.__dict__.update(attrs)

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def needs_gpu(*args, **kwargs):
            raise RuntimeError(f"{name}.{attr} is a test stub (GPU-only package)")

        return needs_gpu

    m.__getattr__ = __getattr__
    return m


@pytest.fixture(scope="module")
def openrlhf():
    """OpenRLHF's modules imported with the GPU-only packages stubbed; the stubs leave afterwards."""
    stubs = {
        "vllm": _stub_module("vllm", __version__="0.0.0+stub", SamplingParams=SamplingParams),
        "vllm.inputs": _stub_module("vllm.inputs", TokensPrompt=dict),
        "vllm.utils": _stub_module("vllm.utils", random_uuid=lambda: "stub"),
        "flash_attn": _stub_module("flash_attn"),
        "flash_attn.bert_padding": _stub_module("flash_attn.bert_padding"),
        "flash_attn.utils": _stub_module("flash_attn.utils"),
        "flash_attn.utils.distributed": _stub_module("flash_attn.utils.distributed"),
    }
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        from openrlhf.datasets.prompts_dataset import preprocess_data
        from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
        from openrlhf.utils.agent import SingleTurnAgentExecutor

        yield types.SimpleNamespace(
            preprocess_data=preprocess_data, SamplesGenerator=SamplesGenerator, Executor=SingleTurnAgentExecutor
        )
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def parse_train_ppo_ray(argv, monkeypatch):
    """Run openrlhf.cli.train_ppo_ray as ``python -m`` does; return the arguments ``train`` gets."""
    import openrlhf.utils
    import ray

    class Parsed(Exception):
        pass

    def capture(args):
        raise Parsed(args)

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(openrlhf.utils, "get_strategy", capture)
    monkeypatch.setattr(sys, "argv", ["train_ppo_ray", *argv])
    with pytest.raises(Parsed) as got:
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    return got.value.args[0]


def test_cli_accepts_the_readme_command(openrlhf, monkeypatch):
    args = parse_train_ppo_ray(COMMON_ARGS + README_ARGS, monkeypatch)
    assert args.reward.remote_url == [MRG]
    assert args.data.label_key == "report"
    assert args.data.apply_chat_template


def test_cli_refuses_the_pre_0_10_2_flags(openrlhf, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_ppo_ray", *COMMON_ARGS, "--remote_rm_url", MRG, "--label_key", "report"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


# -- tokenizers of four model families, trained on the spot -------------------------------------------

CORPUS = [REF_A, REF_B, GOOD_A, GOOD_B, WRONG_A, NOTAGS, INSTRUCTION, "user", "assistant", "model"] * 30

FAMILIES = {
    # name: (special tokens, eos, chat template)
    "gemma": (
        ["<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>"],
        "<end_of_turn>",
        "{{ '<bos>' }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
    ),
    "llama3": (
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|eot_id|>",
        "{{ '<|begin_of_text|>' }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
    ),
    "deepseek": (
        ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"],
        "<｜end▁of▁sentence｜>",
        "{{ '<｜begin▁of▁sentence｜>' }}{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
        "{% else %}<｜Assistant｜>{{ m['content'] }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}",
    ),
}


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return train_tokenizer(CORPUS, vocab_size=400)


@pytest.fixture(scope="module")
def qwen_vl_processor(qwen_tokenizer):
    return build_processor(qwen_tokenizer, image_size=56)


@pytest.fixture(scope="module")
def family_tokenizers(qwen_tokenizer):
    out = {"qwen": qwen_tokenizer}
    for name, (specials, eos, template) in FAMILIES.items():
        tok = train_tokenizer(CORPUS, vocab_size=400)
        tok.add_special_tokens({"additional_special_tokens": specials, "eos_token": eos})
        tok.chat_template = template
        out[name] = tok
    return out


class StubEngine:
    """The vLLM engine's ``generate``: returns the next scripted response's token ids."""

    def __init__(self, tokenizer, responses):
        self.tokenizer, self.responses = tokenizer, list(responses)

    async def generate(self, prompt_token_ids, params, multi_modal_data=None):
        text = self.responses.pop(0)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        out = types.SimpleNamespace(token_ids=ids, finish_reason="stop", logprobs=None)
        return types.SimpleNamespace(outputs=[out])


def rollout(openrlhf, executor, tokenizer, rows, responses, *, images=None, label_key="report"):
    """OpenRLHF's rollout of ``rows``: dataset preprocessing, concurrent executions, experiences."""
    apply = tokenizer.apply_chat_template
    prompts, labels = zip(*(openrlhf.preprocess_data(r, None, "messages", label_key, apply) for r in rows))
    engine_stub = StubEngine(getattr(tokenizer, "tokenizer", tokenizer), responses)
    params = SamplingParams(max_tokens=96)

    async def run_all():
        return await asyncio.gather(
            *(
                executor.execute(p, lab, params, 1024, tokenizer, engine_stub, images=images)
                for p, lab in zip(prompts, labels)
            )
        )

    outputs = asyncio.run(run_all())
    experiences = [openrlhf.SamplesGenerator._process_response_into_experience(None, o, max_len=1024) for o in outputs]
    return prompts, outputs, experiences


def chat_rows(references, image=False):
    content = [{"type": "image"}, {"type": "text", "text": INSTRUCTION}] if image else INSTRUCTION
    return [{"messages": [{"role": "user", "content": content}], "report": ref} for ref in references]


RESPONSES = [GOOD_A, WRONG_A, NOTAGS, GOOD_B]
REFERENCES = [REF_A, REF_A, REF_A, REF_B]


@pytest.mark.parametrize("family", ["qwen", "gemma", "llama3", "deepseek"])
def test_text_prompts_each_family(openrlhf, family_tokenizers, family):
    tok = family_tokenizers[family]
    executor = openrlhf.Executor(remote_rm_url=[MRG])
    responses = [r + tok.eos_token for r in RESPONSES]  # generation ends with the family's end token
    _, _, experiences = rollout(openrlhf, executor, tok, chat_rows(REFERENCES), responses)
    want = expected_scores(RESPONSES, REFERENCES)
    got = [float(e.rewards.flatten()[0]) for e in experiences]
    assert got == pytest.approx(want, abs=1e-6), family
    assert got[0] == pytest.approx(1.0)
    for e in experiences:
        assert e.scores is not None and set(("mccs", "format", "malformed")) <= set(e.info)
    assert [float(e.info["format"].flatten()[0]) for e in experiences] == [1.0, 1.0, 0.0, 1.0]


def _record_label_threads(monkeypatch) -> list:
    """Wrap ``engine.label`` (what the reward calls) so each call's ``threads`` lands in the returned list."""
    calls = []
    real_label = engine.label

    def recording_label(reports, *, threads=None, **kwargs):
        calls.append(threads)
        return real_label(reports, threads=threads, **kwargs)

    monkeypatch.setattr(engine, "label", recording_label)
    return calls


def test_qwen2_5_vl_image_prompts(openrlhf, qwen_vl_processor, monkeypatch):
    """The query's prompt part has the image placeholder expanded; the prompt shows the tags too."""
    want = expected_scores(RESPONSES, REFERENCES)
    calls = _record_label_threads(monkeypatch)
    executor = openrlhf.Executor(remote_rm_url=[MRG])
    image = Image.fromarray(np.full((56, 56, 3), 128, dtype=np.uint8))
    responses = [r + "<|im_end|>" for r in RESPONSES]
    prompts, outputs, experiences = rollout(
        openrlhf, executor, qwen_vl_processor, chat_rows(REFERENCES, image=True), responses, images=[image]
    )
    assert prompts[0].count("<|image_pad|>") == 1
    query = qwen_vl_processor.tokenizer.decode(outputs[0]["observation_tokens"], skip_special_tokens=False)
    assert query.count("<|image_pad|>") > 1  # expanded: the prompt is not a prefix of the query
    assert outputs[0]["mm_train_inputs"] is not None
    got = [float(e.rewards.flatten()[0]) for e in experiences]
    assert got == pytest.approx(want, abs=1e-6)
    # one call per sample, each on one labelling thread
    assert calls == [1] * len(RESPONSES)


def test_missing_label_key_is_an_error(openrlhf, qwen_tokenizer, caplog):
    """Without --data.label_key OpenRLHF passes '': an ERROR naming the flag, no reward."""
    executor = openrlhf.Executor(remote_rm_url=[MRG])
    with caplog.at_level(logging.ERROR, logger="mrgfast.reward.openrlhf"):
        _, outputs, experiences = rollout(
            openrlhf, executor, qwen_tokenizer, chat_rows([REF_A]), [GOOD_A + "<|im_end|>"], label_key=None
        )
    assert outputs[0]["label"] == ""
    assert experiences[0].rewards is None
    assert any("--data.label_key" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_non_text_label_is_an_error(openrlhf, qwen_tokenizer, caplog):
    executor = openrlhf.Executor(remote_rm_url=[MRG])
    rows = [{"messages": [{"role": "user", "content": INSTRUCTION}], "report": {"findings": REF_A}}]
    with caplog.at_level(logging.ERROR, logger="mrgfast.reward.openrlhf"):
        _, _, experiences = rollout(openrlhf, executor, qwen_tokenizer, rows, [GOOD_A])
    assert experiences[0].rewards is None
    assert any("labels[0] is dict" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_settings_in_the_reward_file(openrlhf, qwen_tokenizer, tmp_path, monkeypatch):
    """Settings bound in a written reward file reach Ray workers as a path, not the environment."""
    want = expected_scores(RESPONSES, REFERENCES, margin=0.5)
    other = expected_scores(RESPONSES, REFERENCES, margin=0.0)
    calls = _record_label_threads(monkeypatch)
    monkeypatch.setenv("MRGFAST_MARGIN", "0.0")  # ignored: the file's settings are used
    path = tmp_path / "reward_mrg.py"
    assert mrg_openrlhf.main([str(path), "--margin", "0.5", "--threads", "2"]) == 0
    executor = openrlhf.Executor(remote_rm_url=[str(path)])
    responses = [r + "<|im_end|>" for r in RESPONSES]
    _, _, experiences = rollout(openrlhf, executor, qwen_tokenizer, chat_rows(REFERENCES), responses)
    got = [float(e.rewards.flatten()[0]) for e in experiences]
    assert got == pytest.approx(want, abs=1e-6)
    assert got != pytest.approx(other, abs=1e-6)
    assert calls == [2] * len(RESPONSES)
    with pytest.raises(SystemExit):
        mrg_openrlhf.main([str(tmp_path / "x.py"), "--margin", "2"])
    assert not (tmp_path / "x.py").exists()


SIDED_RESPONSES = [GOOD_B, LEFT_B, UNSIDED_B, GOOD_A]
SIDED_REFERENCES = [REF_B, REF_B, REF_B, REF_A]


def test_mccs_plus_switch_in_the_reward_file(openrlhf, qwen_tokenizer, tmp_path):
    """``--sides`` bound in a written reward file: OpenRLHF's executor scores with MCCS+."""
    path = tmp_path / "reward_plus.py"
    assert mrg_openrlhf.main([str(path), "--sides", "--side-weight", "0.5"]) == 0
    assert 'sides\\": true' in path.read_text()  # JSON inside a Python string literal
    executor = openrlhf.Executor(remote_rm_url=[str(path)])
    responses = [r + "<|im_end|>" for r in SIDED_RESPONSES]
    _, _, experiences = rollout(openrlhf, executor, qwen_tokenizer, chat_rows(SIDED_REFERENCES), responses)
    got = [float(e.rewards.flatten()[0]) for e in experiences]
    assert got == pytest.approx(expected_scores(SIDED_RESPONSES, SIDED_REFERENCES, sides=True), abs=1e-6)
    assert got != pytest.approx(expected_scores(SIDED_RESPONSES, SIDED_REFERENCES), abs=1e-6)
    assert got[1] < got[2] < got[0]
    with pytest.raises(SystemExit):
        mrg_openrlhf.main([str(tmp_path / "bad.py"), "--sides", "--side-weight", "0"])
    assert not (tmp_path / "bad.py").exists()


def test_mccs_plus_switch_from_the_environment(openrlhf, qwen_tokenizer, monkeypatch):
    """``MRGFAST_SIDES=1`` configures the package's own reward file."""
    monkeypatch.setenv("MRGFAST_SIDES", "1")
    executor = openrlhf.Executor(remote_rm_url=[MRG])
    responses = [r + "<|im_end|>" for r in SIDED_RESPONSES]
    _, _, experiences = rollout(openrlhf, executor, qwen_tokenizer, chat_rows(SIDED_REFERENCES), responses)
    got = [float(e.rewards.flatten()[0]) for e in experiences]
    assert got == pytest.approx(expected_scores(SIDED_RESPONSES, SIDED_REFERENCES, sides=True), abs=1e-6)
    monkeypatch.setenv("MRGFAST_SIDES", "perhaps")
    with pytest.raises(ValueError, match="MRGFAST_SIDES='perhaps' is not a boolean"):
        mrg_openrlhf.settings_from_env()


def test_readme_has_this_command():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    readme_args = " ".join(README_ARGS).replace(
        MRG, '$(python -c "import mrgfast.reward.openrlhf as m; print(m.__file__)")'
    )
    assert readme_args in readme.replace("\\\n  ", "")
