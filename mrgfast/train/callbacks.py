"""Trainer callbacks: JSONL metrics log, Ctrl-C → checkpoint → stop."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import sys
import time

from transformers import TrainerCallback

log = logging.getLogger("mrgfast.train")


class MetricsJSONLCallback(TrainerCallback):
    """Appends every ``log`` event as one JSON line: ``{"stage", "step", "time", <metrics>}``."""

    def __init__(self, path, stage: str):
        self.path = str(path)
        self.stage = stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"stage": self.stage, "step": state.global_step, "time": round(time.time(), 3)}
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not (isinstance(v, float) and not math.isfinite(v)):
                row[k] = v
            elif isinstance(v, float):
                row[k] = str(v)  # NaN/Inf kept visible, JSON-safe
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")


class InterruptCallback(TrainerCallback):
    """First Ctrl-C (SIGINT) or SIGTERM: finish the current optimizer step, save a checkpoint, stop.
    A second Ctrl-C aborts at once (the last saved checkpoint stays)."""

    def __init__(self):
        self.requested = False
        self.signal_name = None
        self._old = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        print(
            f"\n[mrgfast] {self.signal_name}: saving a checkpoint at the end of this step, then stopping "
            "(Ctrl-C again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._old[sig] = signal.signal(sig, self._handler)

    def on_train_end(self, args, state, control, **kwargs):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control
