"""Figures, written headless as PNG (or JPEG, PDF, SVG, by extension): the prediction grid,
training curves, confusion matrix, per-class accuracy and the comparison of runs."""

from resnet_cifar.viz.confusion import (
    confusion_figure,
    eval_figures,
    per_class_figure,
    row_normalized,
    save_eval_plots,
)
from resnet_cifar.viz.curves import (
    check_x_axis,
    curves_figure,
    lr_changes,
    plot_curves,
    val_accuracy_figure,
    write_run_curves,
)
from resnet_cifar.viz.grid import (
    RIGHT_COLOR,
    WRONG_COLOR,
    PredictionSample,
    denormalize,
    grid_shape,
    predict_sample,
    prediction_grid,
    sample_title,
    show_predictions,
)
from resnet_cifar.viz.output import (
    FIGURE_FORMATS,
    check_figure_target,
    figure_format,
    figure_png,
    is_figure,
    open_in_window,
    save_figure,
)

__all__ = ["FIGURE_FORMATS", "RIGHT_COLOR", "WRONG_COLOR", "PredictionSample",
           "check_figure_target", "check_x_axis", "confusion_figure", "curves_figure",
           "denormalize", "eval_figures", "figure_format", "figure_png", "grid_shape", "is_figure",
           "lr_changes", "open_in_window", "per_class_figure", "plot_curves", "predict_sample",
           "prediction_grid", "row_normalized", "sample_title", "save_eval_plots", "save_figure",
           "show_predictions", "val_accuracy_figure", "write_run_curves"]
