"""aplot's training engine: config, run store, data, models, losses and the trainers.

A training rank started by `engine.launch` finds APLOT_HOLD_STOPS in its environment and holds SIGINT
and SIGTERM from its first line until `engine.runtime.RunContext` has its stop handlers in place (it
releases them there): a stop that arrives while the rank still imports torch — an `aplot stop`
pressed at launch, a Slurm warning signal sent at the job's first second — becomes a checkpointed
stop after the first step instead of a KeyboardInterrupt in the middle of an import.

Until then it also runs without the cyclic garbage collector: the imports (torch, transformers, POT)
allocate about a million objects that live as long as the rank, and the collector's passes over them
are a sixth of a rank's start-up (0.8 of 4.8 CPU-s here). RunContext freezes them out of its reach
and turns it back on.
"""

import gc as _gc
import os as _os
import signal as _signal

HOLD_STOPS_ENV = "APLOT_HOLD_STOPS"
STOP_AT_START_ENV = "APLOT_STOP_AT_START"
STOP_SIGNALS = frozenset({_signal.SIGINT, _signal.SIGTERM})

if _os.environ.pop(HOLD_STOPS_ENV, None) == "1":
    _signal.pthread_sigmask(_signal.SIG_BLOCK, STOP_SIGNALS)
    _gc.disable()
