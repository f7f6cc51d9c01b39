"""Axis labelling of the figures: a log axis labels as many steps as its range can show."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from distill_lib.plots import log_axis  # noqa: E402


@pytest.mark.parametrize("low, high, expected", [
    (16, 55, [20, 30, 40, 50]),                       # within a decade: 1, 1.5, 2, 3, 4, 5, 7
    (10, 900, [10, 20, 50, 100, 200, 500]),           # a few decades: 1-2-5
    (10, 3e9, [10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]),  # many decades: powers of ten only
])
def test_a_log_axis_labels_as_many_steps_as_its_range_shows(low, high, expected):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [low, high])
    ax.set_ylim(low, high)
    log_axis(ax)
    ticks = [t for t in ax.get_yticks() if low <= t <= high]
    assert ticks == pytest.approx(expected)
    labels = [ax.yaxis.get_major_formatter()(t) for t in ticks]
    assert labels[-1] == ("$10^{9}$" if high > 1e8 else f"{expected[-1]:,.0f}")
    plt.close(fig)
