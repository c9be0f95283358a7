"""The one check for a refused input: exit code 2, one line on stderr, no traceback, the offending
value or path named, and nothing created or changed under the folder the command works in.

Bad-input tests are tables of (argv, the value the error must name) that call `assert_refused`:
they assert behaviour, never wording beyond the named value.
"""

from __future__ import annotations

from pathlib import Path

from resnet_cifar.cli import main


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``, with its size and mtime."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1,
                                        p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def run(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code or 0)


def assert_refused(argv, named, root: Path, capsys) -> str:
    """Run ``argv``; assert a clean refusal naming ``named`` that leaves ``root`` untouched."""
    capsys.readouterr()
    before = snapshot(root)
    code = run(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(named) in lines[0], (named, lines[0])
    assert snapshot(root) == before, "a refused command created or changed files"
    return lines[0]
