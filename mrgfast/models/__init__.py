"""Model loading from local folders (Qwen2.5-VL family, Auto classes), LoRA configs, the tiny model builder."""
