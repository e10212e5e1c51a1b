"""Printing for people: one place that makes the consoles and prints plain text.

Text that comes from students, rubrics or paths is printed with `say`: no rich markup
(a `[bold]` in a student's message stays as it is), no highlighting, no wrapping inside
a path.  rich itself drops colours when the output is piped.
"""

from __future__ import annotations

import contextlib
import time

from rich.console import Console


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr)


def say(out: Console, text: str, **kwargs) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True, **kwargs)


def error(text: str) -> None:
    """`error: TEXT` on stderr, as every command reports what it could not do."""
    say(console(stderr=True), f"error: {text}")


def training_progress(out: Console, item: str):
    """A progress bar with the time left in a terminal; a line per tenth (or minute) when piped."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from grader.checks.accuracy import duration

    @contextlib.contextmanager
    def bar():
        with Progress(TextColumn(f"training {item}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("{task.fields[info]}"), console=out, transient=False) as progress:
            task = progress.add_task("train", total=None, info="starting")

            def update(p: dict) -> None:
                info = (f"epoch {p['epoch']:.2f}/{p['epochs']:g}  loss {p['loss']:.3f}  "
                        f"{duration(p['elapsed_s'])} elapsed, {duration(p.get('eta_s'))} left")
                progress.update(task, completed=p["step"], total=p["steps"], info=info)
            yield update

    @contextlib.contextmanager
    def lines():
        last = {"time": 0.0, "tenth": -1}

        def update(p: dict) -> None:
            tenth = int(10 * p["step"] / max(1, p["steps"]))
            if tenth != last["tenth"] or time.monotonic() - last["time"] > 60:
                last.update(time=time.monotonic(), tenth=tenth)
                out.print(f"training {item}: epoch {p['epoch']:.2f}/{p['epochs']:g}, loss {p['loss']:.3f}, "
                          f"{duration(p.get('eta_s'))} left", markup=False, highlight=False)
        yield update

    return bar() if out.is_terminal else lines()
