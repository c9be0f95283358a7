"""The README's examples are tests.

Every shell command line and Python block of README.md and of the docs it links to runs here, in
document order, in one temporary folder per document laid out like a clone: the working folder
(`configs/`, `benchmarks/`, `experiments/`, `hubconf.py` linked in, an empty `docs/img/`) with
`../shared/data/` beside it holding a tiny synthetic stand-in for the JPEG copy and for akamaster's
checkpoint. A block that cannot run here says why in a comment just above it, which this file
reads:

    <!-- not run: needs the network (pip installs torch) -->          the whole block
    <!-- not run `torchrun`: needs 8 GPUs -->                         its lines that hold `torchrun`
    <!-- real data: published weights are refused other data -->      run by the slow variant only,
                                                                       on the real ../shared/data

Shortened, not skipped: a training command runs 1 epoch (`--epochs N` becomes 1, and is added
where it is absent) and a benchmark its least (SHORT). Synopsis placeholders stand for what the
document has made by then: PATH the data, RUN the latest run, TAG a published tag, IMAGE an
image; `[...]` groups are left out and `a|b` reads as a.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import SHARED
from data_fixtures import make_image_folder, make_tar
from PIL import Image

from resnet_cifar.cli import main as cli_main
from resnet_cifar.models import create_model

REPO = Path(__file__).resolve().parents[1]
REAL_SHARED = SHARED  # the real JPEG copy, where this machine has it
README = "README.md"
DATA = "../shared/data/cifar10-jpeg.tar.gz"
LINKED_IN = ("configs", "benchmarks", "experiments", "hubconf.py")  # what commands name, read-only
SHELL_LANGS, PYTHON_LANGS = {"bash", "sh", "shell", "console"}, {"python", "py", "pycon"}
# a line whose first word (after VAR=value) is one of these is a command, in any block
COMMANDS = {"resnet-cifar", "python", "python3", "bash", "make", "torchrun", "pip", "mkdir",
            "tar", "cd", "git", "curl", "wget"}
# The least work a command's knobs allow, by command: the value each flag gets, added where absent.
# A recipe's epochs are at most 1; a benchmark times one step of 8 images in one round, on one
# thread as every test here runs (conftest.py's _one_thread says why).
BENCH = {"--steps": "1", "--repeats": "1", "--warmup": "0", "--batch-size": "8",
         "--eval-images": "16", "--threads": "1"}
SHORT = {
    ("resnet-cifar", "train"): {"--epochs": "1"},
    ("resnet-cifar", "bench"): BENCH,
    ("benchmarks/bench_train.py",): BENCH,
    ("benchmarks/profile_train.py",): {"--steps": "1", "--warmup": "0", "--batch-size": "8",
                                       "--threads": "1"},
    ("benchmarks/scaling.py",): {"--models": "resnet20", "--batches": "8", "--images": "8",
                                 "--threads": "1"},
}
# A dozen benchmarks, five of them compiling with torch.compile: tests/conftest.py's HEAVY.
HEAVY_DOCS = ("docs/benchmarks.md",)
MARK = re.compile(r"<!--\s*(not run|real data)\b\s*(?:`([^`]*)`)?\s*:?(.*?)-->", re.S)


@dataclass
class Mark:
    kind: str  # "not run" | "real data"
    only: str | None  # the mark applies to the block's lines that contain this, or to all
    reason: str


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the block's first line
    kind: str  # "shell" | "python" | "text"
    body: list[str]
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Example:
    where: str  # doc:line
    kind: str  # "shell" | "python"
    text: str
    mark: Mark | None


def linked_docs() -> list[str]:
    """README.md and the Markdown files in docs/ that it links to, in order of first mention."""
    found = re.findall(r"\]\((docs/[^)#\s]+\.md)", (REPO / README).read_text())
    return [README, *dict.fromkeys(found)]


def first_word(line: str) -> str:
    """The command a shell line starts, after any VAR=value (quoted values included)."""
    words = re.sub(r"""^\s*(\w+=("[^"]*"|'[^']*'|\S*)\s+)*""", "", line).split()
    return words[0] if words else ""


def kind_of(body: list[str]) -> str:
    """An indented block's kind, read from its first line that is not a comment."""
    first = next((line for line in body if line.strip() and not line.startswith("#")), "")
    if first.startswith("$ ") or first_word(first) in COMMANDS:
        return "shell"
    if first.startswith(("from ", "import ")):
        return "python"
    return "text"


def marks_above(lines: list[str], start: int) -> list[Mark]:
    """The marks in the comment lines just above line index ``start`` (blank lines between)."""
    marks, i = [], start - 1
    while i >= 0 and (not lines[i].strip() or lines[i].lstrip().startswith("<!--")):
        for kind, only, reason in MARK.findall(lines[i]):
            marks.append(Mark(kind, only or None, reason.strip()))
        i -= 1
    return marks


def blocks(doc: str) -> list[Block]:
    """The fenced and the indented code blocks of ``doc``."""
    lines = (REPO / doc).read_text().splitlines()
    found, i, after_blank = [], 0, True
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"\s*(```+|~~~+)\s*(\w*)", line)
        if fence:
            end = next(j for j in range(i + 1, len(lines))
                       if lines[j].strip().startswith(fence.group(1)))
            lang = fence.group(2).lower()
            kind = ("shell" if lang in SHELL_LANGS else "python" if lang in PYTHON_LANGS
                    else "text")
            found.append(Block(doc, i + 2, kind, lines[i + 1:end], marks_above(lines, i)))
            i, after_blank = end + 1, False
            continue
        if after_blank and line.startswith("    ") and line.strip():
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            while not lines[end - 1].strip():
                end -= 1
            body = [text[4:] for text in lines[i:end]]
            found.append(Block(doc, i + 1, kind_of(body), body, marks_above(lines, i)))
            i = end
            continue
        after_blank = not line.strip()
        i += 1
    return found


def ends(command: str) -> bool:
    """Whether ``command`` is whole: no trailing backslash, no quote left open."""
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True


def mark_for(block: Block, text: str) -> Mark | None:
    return next((m for m in block.marks if m.only is None or m.only in text), None)


def examples(doc: str) -> list[Example]:
    """The doc's shell commands (one per command, continuation lines joined) and Python blocks."""
    found = []
    for block in blocks(doc):
        if block.kind == "python":
            text = "\n".join(block.body)
            found.append(Example(f"{doc}:{block.line}", "python", text, mark_for(block, text)))
        if block.kind != "shell":
            continue
        prompted = any(line.startswith("$ ") for line in block.body)
        command = None
        for n, line in enumerate(block.body):
            if command is not None:
                command[1] += "\n" + line
            elif prompted and line.startswith("$ "):  # the lines after a prompt are its output
                command = [block.line + n, line[2:]]
            elif not prompted and line.strip() and not line.lstrip().startswith("#"):
                command = [block.line + n, line]
            if command is not None and ends(command[1]):
                line_no, text = command
                found.append(Example(f"{doc}:{line_no}", "shell", text, mark_for(block, text)))
                command = None
    return found


# ------------------------------------------------------------------------ checks of the docs


def test_every_doc_the_readme_links_to_exists():
    text = (REPO / README).read_text()
    linked = re.findall(r"\]\(((?:docs|configs|experiments|benchmarks)/[^)#\s]+)", text)
    missing = sorted({path for path in linked if not (REPO / path).exists()})
    assert not missing, f"README.md links to files that do not exist: {', '.join(missing)}"


def test_every_mark_gives_a_reason_and_every_command_is_in_a_code_block():
    problems = []
    for doc in linked_docs():
        lines = (REPO / doc).read_text().splitlines()
        for n, line in enumerate(lines, 1):
            for kind, _only, reason in MARK.findall(line):
                if not reason.strip():
                    problems.append(f"{doc}:{n}: `{kind}` mark without a reason: {line.strip()}")
        for block in blocks(doc):
            if block.kind == "text":  # output or pseudocode: no command may hide in it
                for n, line in enumerate(block.body):
                    if line.startswith("$ ") or first_word(line) in COMMANDS:
                        problems.append(f"{doc}:{block.line + n}: a command in a block of output "
                                        f"or pseudocode, which nothing runs: {line.strip()}")
            for mark in block.marks:
                if mark.only and mark.only not in "\n".join(block.body):
                    problems.append(f"{doc}:{block.line}: a mark for `{mark.only}`, which the "
                                    f"block below it does not hold")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------ running them


def expand(text: str, cwd: Path) -> str:
    """The command with its synopsis placeholders filled in and its optional groups left out."""
    runs = sorted((cwd / "runs").glob("*/config.toml"), key=lambda p: p.stat().st_mtime)
    text = re.sub(r" \[(?:--|RUN|same)[^\]]*\]", "", text).replace(" ...", "")
    text = re.sub(r"\b(\w+)(?:\|[\w.]+)+", r"\1", text)  # a|b|c: the first
    fill = {"PATH": DATA, "TAG": "resnet20.fast15_jpeg", "IMAGE": "image.png",
            "RUN": str(runs[-1].parent.relative_to(cwd)) if runs else "RUN"}
    return re.sub(r"\b(PATH|TAG|IMAGE|RUN)\b", lambda m: fill[m.group(1)], text)


def shorten(argv: list[str]) -> list[str]:
    """``argv`` with the knobs that set its length at their least (SHORT)."""
    key = next((k for k in SHORT if tuple(argv[:len(k)]) == k
                or argv[0].startswith("python") and tuple(argv[1:1 + len(k)]) == k), None)
    if key is None or "--resume" in argv:  # a resume keeps its recorded epochs
        return argv
    argv = list(argv)
    for flag, value in SHORT[key].items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def needs_a_shell(text: str) -> bool:
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"|#.*", "", text)
    return bool(re.search(r"[&|;<>*?{}~$`]|^\s*\w+=", unquoted))


@contextlib.contextmanager
def argv_as(argv: list[str]):
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def run_in_process(argv: list[str], cwd: Path) -> int:
    """``resnet-cifar ...``, ``python -m resnet_cifar ...``, ``python -c ...`` and
    ``python SCRIPT.py ...`` in this process: the same code, without a second of startup each."""
    try:
        if argv[0] == "resnet-cifar":
            return cli_main(argv[1:])
        if argv[1] == "-c":
            exec(compile(argv[2], "<python -c>", "exec"), {"__name__": "__main__"})
            return 0
        with argv_as(argv[1:]):
            runpy.run_path(str(cwd / argv[1]), run_name="__main__")
        return 0
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)


def run_example(example: Example, cwd: Path) -> tuple[int, str]:
    """Run one example in ``cwd``: its exit status and its output."""
    out = io.StringIO()
    if example.kind == "python":
        code = re.sub(r'"epochs": \d+', '"epochs": 1', example.text)  # shortened, as commands are
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                exec(compile(code, example.where, "exec"), {"__name__": "__main__"})
            return 0, out.getvalue()
        except Exception as err:  # noqa: BLE001 - reported with the example's place
            return 1, f"{out.getvalue()}{type(err).__name__}: {err}"
    text = expand(example.text.replace("\\\n", " "), cwd)
    argv = shlex.split(text, comments=True)
    python = argv[0] in ("python", "python3") and len(argv) > 1
    in_process = argv[0] == "resnet-cifar" or python and (
        argv[1] == "-c" or argv[1].endswith(".py") or argv[1:3] == ["-m", "resnet_cifar"])
    if in_process and not needs_a_shell(text):
        if argv[1:3] == ["-m", "resnet_cifar"]:  # the same as resnet-cifar
            argv = ["resnet-cifar", *argv[3:]]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            status = run_in_process(shorten(argv), cwd)
        return status, out.getvalue()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HOME=str(cwd.parent))
    done = subprocess.run(["bash", "-c", text], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A stand-in for ../shared: a tiny JPEG copy with the real one's layout (train/<class>/NNNN.jpg
    at the top, 13 a class so that a batch of 128 fits, 5 test images a class so that the
    README's five examples exist) and a random ResNet-20 in akamaster's checkpoint format."""
    root = tmp_path_factory.mktemp("docs")
    data = root / "shared" / "data"
    (data / "foreign").mkdir(parents=True)
    folder = make_image_folder(root, 13, 5, learnable=True, fmt="jpeg")
    make_tar(folder, data / "cifar10-jpeg.tar.gz", include_folder=False)
    model = create_model("resnet20", shortcut="A")
    torch.save({"best_prec1": 91.78,
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               data / "foreign" / "resnet20-12fca82f.th")
    return root / "shared"


def working_folder(root: Path, shared: Path) -> Path:
    """``root/work``, laid out as a clone is: ../shared beside it, the files commands name."""
    cwd = root / "work"
    (cwd / "docs" / "img").mkdir(parents=True)
    for name in LINKED_IN:
        (cwd / name).symlink_to(REPO / name)
    (root / "shared").symlink_to(shared)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(cwd / "image.png")  # IMAGE: any size will do
    return cwd


def run_doc(doc: str, root: Path, shared: Path, monkeypatch, *, real: bool) -> list[str]:
    """Run ``doc``'s examples in order, in one folder; the failures, each naming its line."""
    cwd = working_folder(root, shared)
    monkeypatch.chdir(cwd)
    failures, ran = [], 0
    for example in examples(doc):
        mark = example.mark
        if mark is not None and not (real and mark.kind == "real data"):
            continue
        if real and mark is None:
            continue
        status, output = run_example(example, cwd)
        ran += 1
        if status != 0:
            tail = "\n    ".join(output.strip().splitlines()[-8:])
            failures.append(f"{example.where}: exit {status}: {example.text}\n    {tail}")
    assert ran, f"{doc}: nothing ran"
    return failures


@pytest.mark.parametrize("doc", [doc for doc in linked_docs() if doc not in HEAVY_DOCS])
def test_doc_examples_run(doc, shared, tmp_path, monkeypatch):
    failures = run_doc(doc, tmp_path, shared, monkeypatch, real=False)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("doc", HEAVY_DOCS)
def test_benchmark_examples_run(doc, shared, tmp_path, monkeypatch):
    failures = run_doc(doc, tmp_path, shared, monkeypatch, real=False)
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_SHARED / DATA.removeprefix("../shared/")).exists(),
                    reason=f"needs the real {DATA}")
@pytest.mark.parametrize("doc", [doc for doc in linked_docs() if (REPO / doc).exists()
                                 and any(e.mark and e.mark.kind == "real data"
                                         for e in examples(doc))])
def test_doc_examples_that_need_the_real_data_run_on_it(doc, jpeg_cache, tmp_path, monkeypatch):
    failures = run_doc(doc, tmp_path, REAL_SHARED, monkeypatch, real=True)
    assert not failures, "\n".join(failures)
