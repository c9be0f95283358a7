"""Writing figures: always through the Agg canvas, never through pyplot's global state.

Figures are built as ``matplotlib.figure.Figure`` objects, which render with Agg whatever backend
the user has configured, so plotting works headless and inside a training loop. Only ``--show``
touches pyplot, to open a window on the PNG that was written.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from resnet_cifar.errors import UserError

DPI = 100  # pixel size of a figure = its size in inches x DPI
NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of ``fig`` (for inlining into the HTML report)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def open_in_window(paths: list[Path]) -> None:
    """Show PNGs already written in interactive windows (``--show``); blocks until closed."""
    import matplotlib.pyplot as plt  # picks the user's default (interactive) backend

    backend = plt.get_backend().lower()
    if backend.replace("module://", "") in NON_INTERACTIVE:
        written = ", ".join(str(p) for p in paths)
        raise UserError(
            f"--show: no display to open a window on (matplotlib backend {backend!r}); "
            f"the figure was written to {written}"
        )
    for path in paths:
        image = plt.imread(path)
        height, width = image.shape[:2]
        fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        fig.canvas.manager.set_window_title(Path(path).name)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(image)
        ax.set_axis_off()
    plt.show()
