"""TRL trainers extended for mrgfast: non-finite-loss stop, data-order log, fused GRPO loss switch.

``MrgGRPOTrainer`` is TRL's ``GRPOTrainer``; only these things change:

* ``_compute_loss``: with ``use_fused_loss`` on and ``mrgfast.kernels.grpo_loss`` importable, the
  policy's last hidden states (not logits) go through the fused loss together with the LM head
  weight; everything else (generation, rewards, advantages, reference log-probs, logging) is TRL's.
  With the switch off, or the kernel missing, TRL's own loss runs unchanged.
* ``_get_per_token_logps_and_entropies``: with the same switch, the no-grad passes (reference model,
  old policy) score their tokens through ``mrgfast.kernels.token_logps`` (:mod:`mrgfast.train.fused_logps`);
  what that does not cover goes to TRL's chunked head unchanged.
* ``_generate_and_score_completions``: with the same switch, the decoding steps' LM head runs through
  oneDNN on the CPU (:mod:`mrgfast.train.generation_head`); and it records which studies each optimizer step saw (the data
  position) in ``data_order.jsonl`` so a resumed run can be checked against an uninterrupted one.
* ``training_step`` / ``prediction_step``: with ``vision_cache`` on, the frozen vision tower answers from a cache
  that encodes each distinct image once per generation batch (:mod:`mrgfast.train.vision_cache`), in generation, the
  old/reference log-prob passes and the policy pass alike.
* ``_generate_single_turn`` and ``self.generation_config``: the LoRA adapter merged while TRL generates, and a
  static-cache compiled decode (:mod:`mrgfast.train.generation_speed`; ``merge_lora_for_generation``,
  ``compile_generation``).
* ``_policy_hidden_states`` and the no-grad passes: rows packed without padding (:mod:`mrgfast.train.packing`;
  ``pack_sequences``), and the rows of one prompt run as one sequence, the prompt computed once
  (:mod:`mrgfast.train.shared_prefix`; ``share_prompt_prefix``, which takes precedence where it applies).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from trl import GRPOTrainer, SFTTrainer

from mrgfast.train.checkpoints import AtomicCheckpointMixin
from mrgfast.train.distributed import check_distributed_type
from mrgfast.train.lm_head import usable_lm_head

log = logging.getLogger("mrgfast.train")


class NonFiniteLossError(RuntimeError):
    pass


def fused_loss_available() -> bool:
    try:
        from mrgfast.kernels import grpo_loss  # noqa: F401
    except Exception:
        return False
    return True


class _SafetyMixin:
    """Refuse a distributed type other than the configured one; stop on a NaN/Inf loss before the
    optimizer applies it (the last saved checkpoint stays good)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_distributed_type(self.accelerator.distributed_type)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            last = _last_checkpoint(self.args.output_dir)
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at optimizer step {self.state.global_step + 1} "
                f"(micro-batch before the update; no update was applied). "
                + (
                    f"Last good checkpoint: {last} (resume with --resume after lowering the learning rate "
                    "or checking the data)."
                    if last
                    else "No checkpoint was saved yet."
                )
            )
        return loss


def _last_checkpoint(folder: str) -> str | None:
    from mrgfast.train.checkpoints import resume_point

    ckpt, _ = resume_point(Path(folder))  # the newest complete one: what --resume would pick
    return str(ckpt) if ckpt else None


class MrgSFTTrainer(AtomicCheckpointMixin, _SafetyMixin, SFTTrainer):
    pass


class MrgGRPOTrainer(AtomicCheckpointMixin, _SafetyMixin, GRPOTrainer):
    def __init__(
        self,
        *args,
        use_fused_loss: bool = False,
        use_fused_logps: bool | None = None,
        data_order_path: str | None = None,
        vision_cache: bool = False,
        merge_lora_for_generation: bool = False,
        compile_generation: str = "off",
        pack_sequences: bool = False,
        share_prompt_prefix: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        from mrgfast.train.vision_cache import VisionCache

        self.vision_cache = VisionCache() if vision_cache else None  # filled per generation batch
        self._setup_generation_speed(merge_lora_for_generation, compile_generation)
        self.pack_sequences = bool(pack_sequences)
        self.share_prompt_prefix = bool(share_prompt_prefix)
        # reference/old log-probs through mrgfast's head: on with the fused loss unless asked otherwise
        self.use_fused_logps = bool(use_fused_loss if use_fused_logps is None else use_fused_logps)
        if self.use_fused_logps:
            from mrgfast.train import fused_logps

            self.use_fused_logps = fused_logps.available()
        self.use_fused_loss = bool(use_fused_loss)
        if self.use_fused_loss and not fused_loss_available():
            log.warning("use_fused_loss is on but mrgfast.kernels.grpo_loss is not importable: using TRL's loss")
            self.use_fused_loss = False
        if self.use_fused_loss:
            from mrgfast.kernels import SUPPORTED_LOSS_TYPES

            if self.loss_type not in SUPPORTED_LOSS_TYPES:
                log.warning("fused loss supports %s, not %s: using TRL's loss", SUPPORTED_LOSS_TYPES, self.loss_type)
                self.use_fused_loss = False
        if self.use_fused_loss and (
            self.top_entropy_quantile < 1.0
            or self.off_policy_mask_threshold is not None
            or self._entropy_bonus_enabled
            or self.use_vllm
        ):
            log.warning("fused loss does not cover entropy masks/bonus, off-policy masks or vLLM IS: using TRL's loss")
            self.use_fused_loss = False
        log.info("GRPO loss: %s", "mrgfast.kernels.grpo_loss (fused)" if self.use_fused_loss else "TRL")
        log.info(
            "reference/old log-probs: %s",
            "mrgfast.kernels.token_logps where supported" if self.use_fused_logps else "TRL's chunked head",
        )
        self.data_order_path = data_order_path

    # ------------------------------------------------------------------------------------------ vision cache
    def training_step(self, model, inputs, num_items_in_batch=None):
        with self._vision_cached(model):
            return super().training_step(model, inputs, num_items_in_batch)

    def prediction_step(self, model, inputs, *args, **kwargs):
        with self._vision_cached(model):
            return super().prediction_step(model, inputs, *args, **kwargs)

    def _vision_cached(self, model):
        import contextlib

        return self.vision_cache.active(model) if self.vision_cache is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------------------------------ generation
    def _setup_generation_speed(self, merge_lora: bool, compile_mode: str) -> None:
        """LoRA merged while generating, compiled static-cache decoding (:mod:`mrgfast.train.generation_speed`)."""
        from mrgfast.train import generation_speed as gs

        self._lora_merge = None
        self.compiled_decode = False
        transformers_generate = not (self.use_vllm or getattr(self, "use_transformers_continuous_batching", False))
        if not transformers_generate:
            if merge_lora or compile_mode == "on":
                log.info("generation: TRL's vLLM / continuous-batching engine; merge and compile levers not used")
            return
        if merge_lora:
            self._lora_merge = gs.LoraMergeForGeneration()
        sharded = bool(getattr(self, "is_fsdp_enabled", False)) or (
            getattr(self, "is_deepspeed_enabled", False)
            and getattr(getattr(self.accelerator.state, "deepspeed_plugin", None), "zero_stage", 0) == 3
        )
        if gs.compiled_decode_wanted(compile_mode, self.accelerator.device, sharded=sharded):
            why = gs.configure_compiled_decode(
                self.generation_config,
                device=self.accelerator.device,
                user_cache_implementation=self.generation_config.cache_implementation,
            )
            if why:
                log.info("generation: compiled decode not used: %s", why)
            else:
                self.compiled_decode = True
        log.info(
            "generation: LoRA %s, decoding %s",
            "merged while generating" if merge_lora else "unmerged",
            "with a static cache and a compiled step" if self.compiled_decode else "eager (TRL's default)",
        )

    def _generate_single_turn(self, *args, **kwargs):
        if self._lora_merge is None and not self.compiled_decode:
            return super()._generate_single_turn(*args, **kwargs)
        import contextlib

        from mrgfast.train import generation_speed as gs

        merged = self._lora_merge.merged(self.model) if self._lora_merge else contextlib.nullcontext()
        with merged:
            try:
                return super()._generate_single_turn(*args, **kwargs)
            except Exception as e:
                if not (self.compiled_decode and gs.is_compile_error(e)):
                    raise
                log.warning("compiled decoding failed (%s: %s); decoding eagerly from now on", type(e).__name__, e)
                gs.eager_decode(self.generation_config)
                self.compiled_decode = False
                return super()._generate_single_turn(*args, **kwargs)

    # ------------------------------------------------------------------------------------------ data order
    def _generate_and_score_completions(self, inputs):
        if self.vision_cache is not None:
            self.vision_cache.clear()  # a new generation batch: new images (the tower's weights never move)
        if self.data_order_path and self.model.training and self.accelerator.is_main_process:
            ids = [x.get("id") for x in inputs]
            with open(self.data_order_path, "a") as fh:
                fh.write(json.dumps({"step": self.state.global_step, "ids": ids}) + "\n")
        if not self.use_fused_logps or self.compiled_decode:  # a swapped head would defeat the compiled graph
            return super()._generate_and_score_completions(inputs)
        from mrgfast.train.generation_head import onednn_generation_head

        with onednn_generation_head(self.model):  # the decoding steps' LM head through oneDNN on the CPU
            return super()._generate_and_score_completions(inputs)

    # ------------------------------------------------------------------------------------------ log-probs
    def _get_per_token_logps_and_entropies(self, model, *args, compute_entropy=False, compute_aux_loss=False, **kw):
        if self.use_fused_logps and not (torch.is_grad_enabled() or compute_entropy or compute_aux_loss):
            from mrgfast.train import fused_logps

            if fused_logps.supported(model, cast_lm_head_to_fp32=getattr(self.args, "cast_lm_head_to_fp32", False)):
                model = fused_logps.TokenLogpsModel(
                    model,
                    self.temperature,
                    pack=self.pack_sequences,
                    share_prompts=self._sharing(fused_logps.base_model(model)),
                    prompt_width=_prompt_width(args, kw),
                )
        return super()._get_per_token_logps_and_entropies(
            model, *args, compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **kw
        )

    # ------------------------------------------------------------------------------------------ loss
    def _compute_loss(self, model, inputs):
        if not self.use_fused_loss:
            return super()._compute_loss(model, inputs)
        return self._fused_compute_loss(model, inputs)

    def _policy_hidden_states(self, model, inputs):
        """Last hidden states [B, T, H] at the positions that predict the completion tokens."""
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        kw = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
        for key in (
            "pixel_values",
            "image_grid_thw",
            "pixel_attention_mask",
            "image_sizes",
            "token_type_ids",
            "mm_token_type_ids",
        ):
            if inputs.get(key) is not None:
                kw[key] = inputs[key]
        unwrapped = self.accelerator.unwrap_model(model)
        base = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
        # The forward goes through the wrapped model (DDP/FSDP prepare their gradient sync there) and the
        # hidden states are taken from its output, never from inside it: FSDP2 arms its backward hooks
        # (re-gathering a resharded root's parameters, e.g. the final norm) on the outputs only, and a
        # loss reached through an inner tensor backpropagates into freed storage. The LM head runs on
        # one position only.
        packed = self._share(base, kw, prompt_ids.size(1)) or self._pack(base, kw)
        with self.accelerator.autocast():
            outputs = model(**(packed.kwargs if packed else kw), logits_to_keep=1, output_hidden_states=True)
        last = outputs.hidden_states[-1]  # after the final norm (last_hidden_state)
        T = completion_ids.size(1)
        if packed is not None:  # the packed / shared rows' states at the padded positions that predict the completion
            from mrgfast.train.packing import gather

            hidden = gather(last, packed.index[:, -T - 1 : -1])
        else:
            hidden = last[:, -T - 1 : -1, :]
        lm_head = base.get_output_embeddings()
        return hidden, lm_head

    def _sharing(self, base) -> bool:
        """Whether the rows of one prompt may run as one sequence on ``base`` (logged once when the attention
        implementation rules it out)."""
        if not self.share_prompt_prefix:
            return False
        from mrgfast.train import shared_prefix

        why = shared_prefix.why_not(base)
        if why is not None:
            if not getattr(self, "_told_no_sharing", False):
                self._told_no_sharing = True
                log.info(
                    "share_prompt_prefix: not used, %s; rows keep their own prompt (%s)",
                    why,
                    "pack_sequences" if self.pack_sequences else "padded batch",
                )
            return False
        return True

    def _share(self, base, kw, prompt_width):
        """``kw`` with the rows of one prompt as one sequence (:mod:`mrgfast.train.shared_prefix`), or None."""
        if not self._sharing(base):
            return None
        from mrgfast.train import shared_prefix

        shared = shared_prefix.share(base, kw, prompt_width, pack=self.pack_sequences)
        if shared is not None and not getattr(self, "_told_sharing", False):
            self._told_sharing = True
            b, t = kw["attention_mask"].shape
            log.info(
                "policy pass with shared prompts: %d rows x %d slots -> %d x %d (%d sequences, %.0f %% of the slots; "
                "%s attention)",
                b,
                t,
                shared.rows,
                shared.length,
                shared.sequences,
                100 * shared.rows * shared.length / (b * t),
                shared_prefix.packing.attention_implementation(base),
            )
        return shared

    def _pack(self, base, kw):
        """``kw`` packed without padding (:mod:`mrgfast.train.packing`), or None (switch off, or no gain)."""
        if not self.pack_sequences:
            return None
        from mrgfast.train import packing

        packed = packing.pack(base, kw)
        if packed is not None and not getattr(self, "_told_packing", False):
            self._told_packing = True
            b, t = kw["attention_mask"].shape
            log.info(
                "policy pass packed: %d rows x %d slots -> %d x %d (%.0f %% of the slots; %s attention)",
                b,
                t,
                packed.rows,
                packed.length,
                100 * packed.rows * packed.length / (b * t),
                packing.attention_implementation(base),
            )
        return packed

    def _fused_compute_loss(self, model, inputs):
        from mrgfast.kernels import grpo_loss

        hidden, lm_head = self._policy_hidden_states(model, inputs)
        completion_ids = inputs["completion_ids"]
        mask = (
            inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
        )
        advantages = inputs["advantages"]
        mode = "train" if self.model.training else "eval"
        num_items = None
        if self.loss_type == "dapo":
            # TRL's normaliser for dapo, undone of the accumulation scaling the kernel leaves to us
            num_items = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                num_items = num_items / self.args.steps_per_generation * self.current_gradient_accumulation_steps
        with usable_lm_head(lm_head) as (head_weight, head_bias):  # ZeRO-3 / FSDP2: gathered here
            out = grpo_loss(
                hidden,
                head_weight,
                completion_ids,
                mask,
                advantages,
                bias=head_bias,
                old_logps=inputs.get("old_per_token_logps"),
                ref_logps=inputs.get("ref_per_token_logps") if self.beta != 0.0 else None,
                beta=self.beta,
                epsilon_low=self.epsilon_low,
                epsilon_high=self.epsilon_high,
                delta=self.args.delta,
                temperature=self.temperature,
                loss_type=self.loss_type,
                importance_sampling_level=self.importance_sampling_level,
                num_items_in_batch=num_items,
                max_completion_length=self.max_completion_length,
            )
        loss, metrics = _unpack_kernel_output(out)
        if self.loss_type in ("grpo", "bnpo", "dr_grpo") and mode == "train":
            loss = loss / self.current_gradient_accumulation_steps
        for name, value in metrics.items():
            if value is None:
                continue
            v = value.item() if torch.is_tensor(value) else float(value)
            if math.isfinite(v):
                key = {
                    "clip_ratio_low": "clip_ratio/low_mean",
                    "clip_ratio_high": "clip_ratio/high_mean",
                    "clip_ratio_region": "clip_ratio/region_mean",
                    "mean_kl": "kl",
                }.get(name, name)
                if key == "kl" and self.beta == 0.0:
                    continue
                self._metrics[mode][key].append(v)
        return loss


def _prompt_width(args, kw) -> int | None:
    """Prompt columns of the rows TRL's ``_get_per_token_logps_and_entropies`` scores: ``input_ids`` is
    ``[prompt | completion]`` and ``logits_to_keep`` the completion's width."""
    input_ids = args[0] if args else kw.get("input_ids")
    keep = args[2] if len(args) > 2 else kw.get("logits_to_keep")
    if not torch.is_tensor(input_ids) or not isinstance(keep, int):
        return None
    return input_ids.size(1) - keep


def _unpack_kernel_output(out):
    """``grpo_loss`` returns loss + detached per-token logps + metrics (tuple or object); take loss and metrics."""
    if isinstance(out, torch.Tensor):
        return out, {}
    if isinstance(out, tuple):
        loss = out[0]
        metrics = next((x for x in out[1:] if isinstance(x, dict)), {})
        return loss, metrics
    loss = out.loss
    metrics = getattr(out, "metrics", None) or {}
    if not metrics:
        metrics = {
            k: getattr(out, k)
            for k in ("mean_kl", "clip_ratio_low", "clip_ratio_high", "clip_ratio_region", "entropy")
            if getattr(out, k, None) is not None
        }
    return loss, dict(metrics)
