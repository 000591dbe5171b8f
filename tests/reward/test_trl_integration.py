"""A real `trl.GRPOTrainer` run with mrgfast's reward functions as its rewards (drop-in proof).

The policy is a tiny randomly initialised Qwen2 causal LM with a BPE tokenizer trained here on a
few report sentences: nothing is downloaded. The test records, at every step, the completions TRL
generated and the per-function rewards it logged, and checks them against mrgfast called directly.
"""

import math
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

import mrgfast
from mrgfast.reward import MCCSReward, extract_report, format_reward, format_score, mccs_reward

REFERENCES = [
    "The heart size is normal. There is no pleural effusion. No pneumothorax.",
    "Mild cardiomegaly. Small right pleural effusion.",
    "Endotracheal tube in place. No focal consolidation.",
    "The lungs are clear. No acute cardiopulmonary process.",
]
PROMPTS = [
    f"Study {i}: write the report as <think>...</think><report>...</report>. <start>" for i in range(len(REFERENCES))
]


# The tiny policy is wired as a stochastic chain over whole-word tokens, so that its completions
# vary in format (and in findings): GRPO then sees non-zero advantages and really updates weights.
CHAIN = {
    "<start>": ["<think>"],
    "<think>": ["normal heart", "fluid at the right base"],
    "normal heart": ["</think>"],
    "fluid at the right base": ["</think>"],
    "</think>": ["<report>", "<eos>", "Cardiomegaly."],  # 1/3 of completions miss the report block
    "<report>": ["No pleural effusion.", "Cardiomegaly. Right pleural effusion."],
    "No pleural effusion.": ["</report>"],
    "Cardiomegaly. Right pleural effusion.": ["</report>"],
    "Cardiomegaly.": ["<eos>"],
    "</report>": ["<eos>"],
}
WORDS = [w for w in {*CHAIN, *(b for bs in CHAIN.values() for b in bs)} if w not in ("<eos>",)]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<eos>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(REFERENCES * 5 + PROMPTS * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    fast.add_tokens(sorted(WORDS))
    fast.padding_side = "left"
    return fast


def build_model(tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    hidden = 32
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 1e-3)  # attention and MLP barely touch the residual stream
        emb = model.model.embed_tokens.weight
        head = model.lm_head.weight
        head.zero_()
        ids = {w: tokenizer.convert_tokens_to_ids(w) for w in [*WORDS, "<eos>"]}
        assert len(CHAIN) <= hidden
        for k, (word, nexts) in enumerate(CHAIN.items()):
            emb[ids[word]].zero_()
            emb[ids[word], k] = 1.0  # one direction of the residual stream per chain token
            for b in nexts:
                head[ids[b], k] = 3.0  # equal logits (~17) for its successors, ~0 for everything else
    return model


class Recorder:
    """A TrainerCallback that copies the trainer's per-step completion logs."""

    def __init__(self):
        self.trainer = None
        self.steps = []

    def __getattr__(self, name):  # every other callback event is a no-op
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kwargs):
        logs = self.trainer._logs
        self.steps.append(
            {
                "prompt": list(logs["prompt"]),
                "completion": list(logs["completion"]),
                "rewards": {k: list(v) for k, v in logs["rewards"].items()},
            }
        )


def grpo_args(tmp_path, **overrides):
    """TRL's GRPOConfig for these tiny CPU runs: 2 steps of 8 completions (4 per prompt), the README's weights."""
    from trl import GRPOConfig

    kw = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        reward_weights=[0.75, 0.25],
        report_to="none",
        use_cpu=True,
        bf16=False,
        fp16=False,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    return GRPOConfig(**{**kw, **overrides})


def _text(x):
    """A logged prompt/completion as text (conversational ones are message lists)."""
    return x if isinstance(x, str) else "".join(m["content"] for m in x)


@pytest.mark.parametrize("conversational", [False, True], ids=["text", "chat"])
def test_grpo_trainer_trains_with_mrgfast_rewards(tmp_path, conversational):
    from trl import GRPOTrainer

    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    if conversational:
        tokenizer.chat_template = (
            "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %} <start>{% endif %}"
        )
        prompts = [[{"role": "user", "content": p.replace(" <start>", "")}] for p in PROMPTS]
        ref_of = {_text(p): r for p, r in zip(prompts, REFERENCES)}
    else:
        prompts = PROMPTS
        ref_of = dict(zip(PROMPTS, REFERENCES))
    dataset = datasets.Dataset.from_dict({"prompt": prompts, "report": REFERENCES})
    clinical = MCCSReward(reference_column="report", margin=0.5, uncertain=1.0, name="mccs")
    args = grpo_args(tmp_path, temperature=1.0)
    recorder = Recorder()
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[clinical, format_reward],
        args=args,
        train_dataset=dataset,
        callbacks=[recorder],
    )
    recorder.trainer = trainer
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()

    # it trained: steps ran, parameters moved
    assert trainer.state.global_step == 2
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    assert trainer.reward_func_names == ["mccs", "format_reward"]

    log_means = [h for h in trainer.state.log_history if "rewards/mccs/mean" in h]
    assert len(log_means) == 2
    assert len(recorder.steps) == 2
    seen_format = set()
    for step, logged in zip(recorder.steps, log_means):
        completions = step["completion"]
        assert len(completions) == 8
        if conversational:
            assert all(isinstance(c, list) and c[0]["role"] == "assistant" for c in completions)
        texts = [_text(c) for c in completions]
        refs = [ref_of[_text(p)] for p in step["prompt"]]
        # the rewards TRL logged equal mrgfast called directly on the same texts
        want_mccs = mrgfast.mccs([extract_report(c) for c in texts], refs)
        want_fmt = [format_score(c) for c in texts]
        assert np.allclose(step["rewards"]["mccs"], want_mccs)
        assert np.allclose(step["rewards"]["format_reward"], want_fmt)
        assert np.allclose(
            step["rewards"]["mccs"], mccs_reward(prompts=step["prompt"], completions=completions, report=refs)
        )
        assert math.isclose(logged["rewards/mccs/mean"], float(np.mean(want_mccs)), rel_tol=1e-5, abs_tol=1e-6)
        total = 0.75 * np.asarray(want_mccs) + 0.25 * np.asarray(want_fmt)
        assert math.isclose(logged["reward"], float(total.mean()), rel_tol=1e-5, abs_tol=1e-6)
        # the malformed counter went through TRL's log_metric
        assert logged["mccs/malformed"] == 0.0
        assert logged["format_reward/malformed"] == 0.0
        seen_format.update(want_fmt)
    # the chain policy writes well- and ill-formatted completions: the rewards carried signal
    assert seen_format == {0.0, 1.0}


def test_grpo_trainer_logs_mccs_plus_rewards(tmp_path):
    """The MCCS+ switch through TRL: a real GRPOTrainer run with MCCSReward(sides=True) and mrg_plus_reward
    logs, per completion, exactly mrgfast.mccs(..., sides=True) (and 0.75 of it + 0.25 format); the
    references put the chain policy's right-sided effusion on the left for some prompts, so MCCS+ and MCCS
    differ there and the test would see a switch that does not reach the reward."""
    from trl import GRPOTrainer

    from mrgfast.reward import mrg_plus_reward

    refs = [
        "Cardiomegaly. Small left pleural effusion.",
        "Mild cardiomegaly. Small right pleural effusion.",
        "Cardiomegaly. Bilateral pleural effusions.",
        "Cardiomegaly. Pleural effusion.",
    ]
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    ref_of = dict(zip(PROMPTS, refs))
    dataset = datasets.Dataset.from_dict({"prompt": PROMPTS, "report": refs})
    plus = MCCSReward(reference_column="report", sides=True, name="mccs_plus")
    args = grpo_args(tmp_path, temperature=1.0, reward_weights=[1.0, 0.0], max_steps=3)
    recorder = Recorder()
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[plus, mrg_plus_reward],
        args=args,
        train_dataset=dataset,
        callbacks=[recorder],
    )
    recorder.trainer = trainer
    trainer.train()
    assert trainer.reward_func_names == ["mccs_plus", "mrg_plus_reward"]
    log_means = [h for h in trainer.state.log_history if "rewards/mccs_plus/mean" in h]
    assert len(log_means) == len(recorder.steps) == 3
    differs = False
    for step, logged in zip(recorder.steps, log_means):
        texts = [_text(c) for c in step["completion"]]
        reports = [extract_report(c) for c in texts]
        step_refs = [ref_of[_text(p)] for p in step["prompt"]]
        want = mrgfast.mccs(reports, step_refs, sides=True)
        # TRL keeps the rewards as float32: equal to mrgfast's float64 scores rounded to float32
        logged_plus = np.asarray(step["rewards"]["mccs_plus"], dtype=np.float32)
        assert np.array_equal(logged_plus, want.astype(np.float32)), (logged_plus, want)
        fmt = np.array([format_score(c) for c in texts])
        total = (0.75 * want + 0.25 * fmt).astype(np.float32)
        assert np.array_equal(np.asarray(step["rewards"]["mrg_plus_reward"], dtype=np.float32), total)
        assert math.isclose(logged["rewards/mccs_plus/mean"], float(want.mean()), rel_tol=1e-5, abs_tol=1e-6)
        differs |= bool((want != mrgfast.mccs(reports, step_refs)).any())
    assert differs, "no completion where MCCS+ and MCCS differ: the run did not exercise the switch"
