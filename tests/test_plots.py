"""The plot helpers accept what they document."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from toylab import plots
from toylab.core.config import ConfigError


def test_llc_over_training_plot_without_phases_or_test_loss():
    snaps = np.array([0, 50, 100])
    steps = np.arange(0, 101, 10)
    loss = np.linspace(2.0, 0.1, steps.size)
    llc, std = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.1, 0.2])
    fig = plots.llc_over_training_plot(snaps, llc, std, steps, loss)  # bounds=None, no test loss
    top, bottom = fig.axes
    assert len(top.patches) == 0 and len(bottom.patches) == 0  # no phase shaded
    assert [line.get_label() for line in bottom.get_lines()] == ["train"]
    shaded = plots.llc_over_training_plot(snaps, llc, std, steps, loss, 2 * loss, bounds=(20, 60, None))
    assert len(shaded.axes[1].patches) == 3  # three phases, the last running to the final step
    assert shaded.axes[1].patches[-1].get_x() + shaded.axes[1].patches[-1].get_width() == pytest.approx(100)
    with pytest.raises(ConfigError, match="bounds"):
        plots.llc_over_training_plot(snaps, llc, std, steps, loss, bounds=(20, 60))
    matplotlib.pyplot.close("all")
