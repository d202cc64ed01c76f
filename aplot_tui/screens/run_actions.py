"""Stop and resume, confirmed first, then carried out in a thread worker of the App.

App-level workers, not a screen's: a stop takes as long as the trainer needs to checkpoint,
and it must finish even if the person leaves the screen it was started from.
"""

from __future__ import annotations

from functools import partial

from textual.app import App

from engine.runs import lifecycle
from engine.runs import status as S
from engine.runs import store as mf

from .confirm import ConfirmScreen

STOP_DETAIL = ("SIGINT first: the trainer saves a checkpoint and exits. SIGTERM, then SIGKILL, "
               "only if it does not exit in time (a Slurm job: scancel). A stopped run can be resumed.")


def confirm_stop(app: App, paths: mf.RunPaths) -> None:
    status = S.effective(paths)
    if status not in S.UNFINISHED:
        app.notify(f"{paths.id} is {status}, not running", severity="warning")
        return

    def answered(yes: bool | None) -> None:
        if yes:
            app.notify(f"stopping {paths.id}…")
            app.run_worker(partial(_stop, app, paths), thread=True, group="process", exit_on_error=False)

    app.push_screen(ConfirmScreen(f"Stop {paths.id}?", STOP_DETAIL, yes="Stop"), answered)


def confirm_resume(app: App, paths: mf.RunPaths) -> None:
    manifest = mf.read(paths)
    status = S.effective(paths, manifest)
    steps = mf.checkpoint_steps(paths)
    if status not in S.RESUMABLE or not steps:
        why = "has no complete checkpoint" if not steps else f"is {status}"
        app.notify(f"cannot resume {paths.id}: it {why}", severity="warning")
        return

    def answered(yes: bool | None) -> None:
        if yes:
            app.run_worker(partial(_resume, app, paths), thread=True, group="process", exit_on_error=False)

    app.push_screen(ConfirmScreen(f"Resume {paths.id}?", f"Continues from checkpoints/step-{steps[-1]}.",
                                  yes="Resume"), answered)


def _stop(app: App, paths: mf.RunPaths) -> None:
    try:
        status = lifecycle.stop(paths)
    except mf.RunError as e:
        app.call_from_thread(app.notify, str(e), severity="error")
        return
    app.call_from_thread(app.notify, f"{paths.id}: {status}")


def _resume(app: App, paths: mf.RunPaths) -> None:
    try:
        lifecycle.watch(paths, lifecycle.resume(paths))
    except (mf.RunError, OSError) as e:
        app.call_from_thread(app.notify, str(e), severity="error")
        return
    app.call_from_thread(app.notify, f"resumed {paths.id}")
