"""Configuration: presets validate with --dry-run (no model needed), flags override, errors are clear."""

from __future__ import annotations

import pytest

from mrgfast.cli.main import main as cli
from mrgfast.train.config import ConfigError, build_config, parse_overrides


@pytest.mark.parametrize("preset", ["tiny", "mrg-r1-iu-xray", "mrg-r1-mimic-cxr"])
def test_presets_dry_run(preset, capsys):
    assert cli(["train", "--preset", preset, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out and "0.75*MCCS" in out and "0.25*format" in out


def test_paper_presets_hold_the_recipe():
    for preset, kind, views in (("mrg-r1-iu-xray", "iu_xray", 2), ("mrg-r1-mimic-cxr", "mimic_cxr", 1)):
        cfg = build_config(preset)
        assert cfg.mrg.dataset_kind == kind and cfg.mrg.max_images == views
        assert cfg.grpo.reward_weights == [0.75, 0.25]
        assert cfg.mrg.grpo_use_lora and cfg.mrg.lora_r > 0
        assert cfg.grpo.num_generations >= 2


def test_flags_override_yaml_and_reach_the_right_stage(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("preset: tiny\noutput_dir: x\ngrpo:\n  learning_rate: 1.0e-4\n")
    ov = parse_overrides(
        [
            "--learning_rate",
            "3e-4",
            "--grpo.num_generations",
            "4",
            "--model-path",
            "/m",
            "--lora_target_modules",
            "q_proj,v_proj",
            "--tensorboard",
        ]
    )
    cfg = build_config(None, str(y), ov)
    assert cfg.sft.learning_rate == 3e-4 and cfg.grpo.learning_rate == 3e-4  # the shared flag beats the YAML
    assert cfg.grpo.num_generations == 4
    assert cfg.mrg.model_name_or_path == "/m" and cfg.mrg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.mrg.tensorboard and "tensorboard" in cfg.grpo.report_to
    assert cfg.sft.output_dir.endswith("x/sft") and cfg.grpo.output_dir.endswith("x/grpo")
    assert cfg.mrg.preset == "tiny" and cfg.grpo.max_steps == 60  # from the preset named in the YAML


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="unknown setting 'no_such_field'"):
        build_config("tiny", None, {"no_such_field": "1"})
    with pytest.raises(ConfigError, match="grpo: unknown GRPOConfig field"):
        build_config("tiny", None, {"grpo": {"bogus": "1"}})
    with pytest.raises(ConfigError, match=r"grpo\.num_generations: expected an integer"):
        build_config("tiny", None, {"grpo": {"num_generations": "many"}})
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config("nope")
    with pytest.raises(ConfigError, match="invalid GRPOConfig"):  # TRL's own validation
        build_config("tiny", None, {"grpo": {"num_generations": "7", "per_device_train_batch_size": "8"}})


def test_cli_reports_config_errors(capsys):
    assert cli(["train", "--preset", "tiny", "--dry-run", "--grpo.bogus", "1"]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_speed_levers_are_documented_switches_that_off_turns_off(capsys):
    """The benches turn each lever off with `--LEVER off`: every name in SPEED_LEVERS is an MrgConfig field with
    help text, listed by --list-fields, on by default (compile_generation: "auto", which decides per device), and off
    from that flag."""
    import dataclasses

    from mrgfast.train.config import LEVER_OFF, MRG_FIELDS, SPEED_LEVERS, MrgConfig, describe, lever_is_on

    assert len(set(SPEED_LEVERS)) == len(SPEED_LEVERS) >= 7
    defaults = MrgConfig()
    assert cli(["train", "--list-fields"]) == 0
    listed = capsys.readouterr().out
    for name in SPEED_LEVERS:
        f = MRG_FIELDS[name]
        assert f.metadata.get("help") and f"--{name}" in listed
        assert f.default is not dataclasses.MISSING and lever_is_on(getattr(defaults, name)), name
        cfg = build_config("tiny", None, {name: LEVER_OFF})
        assert not lever_is_on(getattr(cfg.mrg, name)), name
        assert f"{name}={getattr(cfg.mrg, name)}" in describe(cfg)
    assert defaults.compile_generation == "auto"
    off = build_config("tiny", None, dict.fromkeys(SPEED_LEVERS, LEVER_OFF))  # what the ablation benches pass
    assert not any(lever_is_on(getattr(off.mrg, name)) for name in SPEED_LEVERS)
    with pytest.raises(ConfigError, match="compile_generation must be one of auto, on, off"):
        build_config("tiny", None, {"compile_generation": "always"})
    assert cli(["train", "--preset", "tiny", "--dry-run"]) == 0
    assert "speed levers: use_fused_loss=True, vision_cache=True" in capsys.readouterr().out


def test_vllm_generation_is_checked_before_any_stage(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ConfigError, match=r"grpo\.use_vllm is true but vllm is not installed"):
        build_config("tiny", None, {"grpo": {"use_vllm": "true"}})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    assert build_config("tiny", None, {"grpo": {"use_vllm": "true", "vllm_mode": "server"}}).grpo.use_vllm
    with pytest.raises(ConfigError, match="vllm_gpu_memory_utilization must be in"):
        build_config("tiny", None, {"grpo": {"use_vllm": "true", "vllm_gpu_memory_utilization": "1.5"}})


def test_the_mccs_plus_switch_is_a_checked_setting(capsys):
    """``mccs_sides`` (MrgConfig) switches the GRPO reward to MCCS+; its weight is checked before any stage."""
    from mrgfast.train.run import build_rewards

    assert cli(["train", "--preset", "tiny", "--dry-run", "--mccs_sides", "true"]) == 0
    assert "0.75*MCCS+(margin=0.5, uncertain=1.0, side_weight=0.5)" in capsys.readouterr().out
    cfg = build_config("tiny", None, {"mccs_sides": "true", "mccs_side_weight": "0.3"})
    clinical = build_rewards(cfg)[0]
    assert clinical.sides is True and clinical.side_weight == 0.3 and clinical.__name__ == "mccs_plus_reward"
    plain = build_rewards(build_config("tiny"))[0]
    assert plain.sides is False and plain.__name__ == "mccs_reward"  # the paper-exact default
    with pytest.raises(ConfigError, match="mccs_side_weight: side_weight must lie strictly between 0 and 1"):
        build_config("tiny", None, {"mccs_sides": "true", "mccs_side_weight": "1.5"})
    with pytest.raises(ConfigError, match="'mccs_sides': expected a boolean"):
        build_config("tiny", None, {"mccs_sides": "sometimes"})
