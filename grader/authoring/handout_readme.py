"""The README.md of a handout: for students (install, self-check, what is hidden) and for
instructors (what the zip holds, the commands to grade and to rebuild)."""

from __future__ import annotations

from grader.rubric import Rubric


def points(value: float) -> str:
    return f"{value:g}"


def describe(item) -> str:
    """What an item checks, in words a student understands."""
    target = getattr(item, "target", None)
    call = target.call_text() if target is not None else ""
    where = f" ({target.file})" if target is not None else ""
    if item.check == "output_shape":
        shape = f" {item.expected}" if item.expected else ""
        return f"`{call}`{where} gives an output of shape{shape} for input {item.inputs[0]}"
    if item.check == "param_count":
        return f"`{call}`{where} has {item.expected:,} parameters" if item.expected else \
            f"`{call}`{where} has the expected number of parameters"
    if item.check == "accuracy":
        with_ckpt = f" with `{item.checkpoint}`" if item.checkpoint else ""
        return f"test accuracy of `{call}`{with_ckpt} is at least {item.threshold:.0%}"
    if item.check == "equivalence":
        return f"`{target.name}`{where} computes what the reference computes"
    if item.check == "blanks":
        return f"the blanks of `{target.name}`{where}, one point each"
    if item.check == "structure":
        return f"the blocks of `{target.name}.{item.module}`{where}"
    return item.title or item.id


def _environment_lines(public: Rubric) -> list[str]:
    """The course's packages besides PyTorch (rubric environment.packages): the only others graded code may import."""
    declared = list(public.environment.packages) if public.environment else []
    if not declared:
        return []
    return [f"The course's environment also has {', '.join(f'`{p}`' for p in declared)}: your files may import "
            "these (`python -m pip install " + " ".join(declared) + "`); a file importing another package that is "
            "not installed where your work is graded cannot be graded.", ""]


def student(public: Rubric, files: list[str], checkpoints: list[str], install: str,
            carried_for: tuple[str, ...] | None = None) -> str:
    """`carried_for`: the platforms whose wheels the handout carries, when `install` installs from them."""
    name = public.assignment
    title = public.title or name
    accuracy = [i for i in public.items if i.check == "accuracy"]
    named = sorted({i.checkpoint for i in accuracy if i.checkpoint})
    # A rubric with a `checkpoints:` folder grades with the instructor's checkpoints; otherwise
    # the checkpoints are the students' own trained models, handed in with the code.
    instructors = named if public.checkpoints else []
    own = [c for c in named if c not in instructors]
    lines = [
        f"# {title}", "",
        "## What to hand in", "",
        f"Complete the files of this folder where they say so (every `#blank#`, every \"fill in here\"), "
        f"then hand in: {', '.join(f'`{f}`' for f in public.files)}"
        + (f" and your trained checkpoint{'s' * (len(own) > 1)} {', '.join(f'`{c}`' for c in own)}" if own else "")
        + ".", "",
        "## Install the grader (once)", "",
        "```console", f"$ {install}", "```", "",
    ]
    if carried_for:
        lines += [f"Run it in this folder: it installs the grader and what it needs from `wheels/`, without the "
                  f"network, on {_platforms(carried_for)} with Python {_pythons()}. Elsewhere pip says \"No "
                  "matching distribution\" for a dependency: run the same line online without `--no-index`.", ""]
    lines += [
        "It is the `cnn-grader` package (`pip install grader` installs another project). It needs Python 3.10 "
        "or newer and uses the PyTorch and torchvision you have (Colab's, say; numpy and pillow come with them). "
        "On a laptop without PyTorch, install the CPU build first, online: `python -m pip install torch "
        "torchvision --extra-index-url https://download.pytorch.org/whl/cpu`.", "",
        *_environment_lines(public),
        "## Check your work", "",
        "In this folder:", "",
        "```console", "$ grader check .", "```", "",
        f"This runs the public part of the rubric ({len(public.items)} item{'s' * (len(public.items) != 1)}, "
        f"{points(public.total_points)} points):", "",
        "| Item | Points | What it checks |", "|---|---:|---|",
    ]
    lines += [f"| {i.id} | {points(i.points)} | {describe(i)} |" for i in public.items]
    lines.append("")
    if public.hidden and public.hidden.items:
        lines += [f"**The rest is hidden** ({public.hidden.items} item{'s' * (public.hidden.items != 1)}, "
                  f"{points(public.hidden.points)} points): your instructor grades it after you hand in, with "
                  "the reference solution. Hidden items may still fail when every public item passes.", ""]
    if public.answers:
        lines += ["There is no solution here: what these items compare your code with (the reference's outputs on "
                  "some random inputs and weights, and digests of its layers' settings, from which no setting can be "
                  "read) is in `answers.json` and `answers.safetensors`, as numbers. A failing item names your layer "
                  "and which of its settings is wrong, not the value it should have. A PASS means your code computes what the reference computes on "
                  "those inputs; your instructor grades again with other inputs and weights, so code that returns "
                  "the stored numbers instead of computing them gets nothing.", ""]
    lines += ["`grader check` exits with 0 when every public item passes and 1 otherwise; "
              "`grader check . --verbose` shows every detail, and what your code printed.", ""]
    if accuracy:
        lines += ["### Test data and checkpoints", ""]
        if public.data.dataset == "cifar10":
            lines += ["Accuracy is measured on the CIFAR-10 test set. `grader check . --download` fetches it once "
                      "(online); `--data-dir DIR` uses a copy you have (the `cifar-10-batches-py` folder or "
                      "`test/<class>/` image folders). Without either, grader uses a 3,000-image sample of the "
                      "test set that it ships with, and reports a 95% interval.", ""]
        else:
            lines += ["Accuracy is measured on the course's image folder: pass `--data-dir DIR`, where "
                      f"`DIR/{public.data.split}/<class name>/` holds the images of each class "
                      f"(`grader check . --data-dir DIR`).", ""]
        given = [c for c in instructors if c in checkpoints]
        if given:
            lines += [f"Your instructor's checkpoints {', '.join(f'`{c}`' for c in given)} are in this folder.", ""]
        elsewhere = [c for c in instructors if c not in checkpoints]
        if elsewhere:
            lines += [f"Put your instructor's checkpoints {', '.join(f'`{c}`' for c in elsewhere)} in this folder, "
                      "or pass `--checkpoints DIR` for the folder that holds them.", ""]
        if own:
            lines += [f"Your own checkpoint{'s' * (len(own) > 1)} ({', '.join(f'`{c}`' for c in own)}) "
                      "must be in this folder, where your training code saves it.", ""]
    extra = ", `answers.json` and `answers.safetensors` (what the checks compare with)" if public.answers else ""
    if carried_for:
        extra += ", `wheels/` (the grader and what it needs, to install it)"
    lines += [f"Files in this folder: {', '.join(f'`{f}`' for f in files)}, `{name}.yaml` (the public "
              f"rubric){extra} and this README.", ""]
    return "\n".join(lines)


_PLATFORM_NAMES = {"linux": "Linux (x86-64, Colab)", "linux-arm": "Linux (ARM)", "macos": "macOS (Apple silicon)",
                   "macos-intel": "macOS (Intel)", "windows": "Windows"}


def _platforms(names: tuple[str, ...]) -> str:
    words = [_PLATFORM_NAMES.get(n, n) for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"


def _pythons() -> str:
    from grader.authoring.wheel import DEFAULT_PYTHONS

    return f"{DEFAULT_PYTHONS[0]} to {DEFAULT_PYTHONS[-1]}"


def instructor(rubric: Rubric, folders: list[str]) -> str:
    name = rubric.assignment
    yaml_name = f"{name}.yaml"
    lines = [
        f"# {rubric.title or name}: instructor bundle", "",
        f"`{yaml_name}` is the complete rubric ({len(rubric.items)} items, {points(rubric.total_points)} points); "
        f"its paths point into this folder: {', '.join(f'`{f}/`' for f in folders)}.", "",
        "```console",
        f"$ grader rubric show {yaml_name}                      # items, points, visibility",
        f"$ grader check SUBMISSION --rubric {yaml_name}        # grade one submission",
        f"$ grader check skeleton --rubric {yaml_name} --public # what students see in their self-check",
        f"$ grader skeleton {yaml_name}                         # after editing reference/",
        f"$ grader bundle {yaml_name} --student -o handout.zip  # the students' handout",
        "```", "",
    ]
    return "\n".join(lines)
