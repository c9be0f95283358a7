"""Writing figures through the Agg canvas (only ``show`` touches pyplot), atomically, in the format
the extension names (PNG, JPEG, PDF, SVG); any other is refused before drawing."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from resnet_cifar.atomic import atomic_write, cannot_write, check_target, explain_write_errors
from resnet_cifar.errors import UserError

DPI = 100  # pixel size of a figure = its size in inches x DPI
NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
# extension -> matplotlib format; JPEG goes through Pillow, a dependency of matplotlib
FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}
WINDOW_FORMATS = {"png", "jpeg"}  # what plt.imread can read back for --show


def figure_format(path: str | Path, what: str = "figure", flag: str = "`out` (--out)") -> str:
    """The matplotlib format ``path``'s extension names; a one-line UserError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        kind = f"unsupported file type {suffix!r}" if suffix else "no file extension"
        raise cannot_write(path, what, kind, f"end {flag} in one of {', '.join(FIGURE_FORMATS)}")
    return FIGURE_FORMATS[suffix]


def check_figure_target(path: str | Path, what: str = "figure",
                        flag: str = "`out` (--out)") -> Path:
    """``path`` as a Path, once a figure can be written there: cheap, so call it before loading
    data."""
    path = check_target(path, what, flag)  # a folder first: "no file extension" would mislead
    figure_format(path, what, flag)
    return path


def save_figure(fig: Figure, path: str | Path, what: str = "figure",
                flag: str = "`out` (--out)") -> Path:
    """Write ``fig`` atomically in the format of ``path``'s extension; a failure is a one-line
    UserError naming ``what`` and the path."""
    path = check_figure_target(path, what, flag)
    with explain_write_errors(path, what, flag), atomic_write(path) as f:
        fig.savefig(f, format=figure_format(path), dpi=DPI)
    return path


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of ``fig`` (for inlining into the HTML report)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def is_figure(path: Path) -> bool:
    return path.suffix.lower() in FIGURE_FORMATS


def open_in_window(paths: list[Path]) -> None:
    """Show written PNG/JPEG figures in interactive windows (``show``); blocks until closed."""
    import matplotlib.pyplot as plt  # picks the user's default (interactive) backend

    written = ", ".join(str(p) for p in paths)
    vector = [p for p in paths if figure_format(p) not in WINDOW_FORMATS]
    if vector:
        raise UserError(f"`show` (--show) opens .png and .jpg figures only, not "
                        f"{vector[0].suffix}; the figure was written to {written}: open it with "
                        "a viewer")
    backend = plt.get_backend().lower()
    if backend.replace("module://", "") in NON_INTERACTIVE:
        raise UserError(f"`show` (--show): no display to open a window on (matplotlib backend "
                        f"{backend!r}); the figure was written to {written}")
    for path in paths:
        image = plt.imread(path)
        height, width = image.shape[:2]
        fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        fig.canvas.manager.set_window_title(Path(path).name)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(image)
        ax.set_axis_off()
    plt.show()
