"""`mrgfast train`: SFT warm start then GRPO with the MCCS + format reward, on TRL + PEFT."""
