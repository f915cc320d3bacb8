"""What ``edge-agent export`` says about a model's held-out accuracy before it writes the file.

The number judged is the exported model's accuracy on clean windows of the time-held-out test
split (int8 when int8 is exported): the most favourable condition it is measured in, so a model
that fails here fails everywhere. Relative to chance (1 / number of labels):

- below ``REFUSE_BELOW_CHANCE`` x chance (1.5 x: 15 % for CWRU's 10 labels, 50 % for 3) the
  export is refused unless forced. Such a model is hardly better than guessing the label at random:
  an untrained or diverged run, a broken quantisation, the wrong data. Its alerts would be noise on
  every sensor. The floor is low on purpose: it stops only files that are clearly broken.
  A model that learned something but not enough gets the warning below, and the user decides.
- below ``WARN_BELOW`` (90 %) the export goes ahead with a loud warning. The networks in
  docs/results score 98-100 % clean on this split (mean over seeds), the shipped model 100 %, so
  under 90 % the recipe was not followed (too few epochs, another window length) or training
  went wrong.
"""

from __future__ import annotations

REFUSE_BELOW_CHANCE = 1.5
WARN_BELOW = 0.90
REFUSED = "not exported: train longer, or check the run and its data (--force exports it anyway)"


class LowAccuracyError(ValueError):
    """The model is too close to chance to export without ``--force``."""


def accuracy_problem(clean_accuracy: float, labels: int) -> tuple[bool, str] | None:
    """``(refuse, message)`` when ``clean_accuracy`` is too low for a model with ``labels`` labels, else None."""
    chance = 1.0 / labels
    floor = REFUSE_BELOW_CHANCE * chance
    measured = f"held-out accuracy on clean test windows is {clean_accuracy:.1%} ({labels} labels, chance {chance:.1%})"
    if clean_accuracy < floor - 1e-9:  # 1.5 x 0.1 is 0.15000000000000002
        return True, (
            f"{measured}, below {REFUSE_BELOW_CHANCE:g} x chance ({floor:.1%}): this model is about as good as "
            "guessing; its alerts would be noise"
        )
    if clean_accuracy < WARN_BELOW:
        return False, (
            f"{measured}, below {WARN_BELOW:.0%} (the shipped model: 100 %); "
            "expect missed faults and false alarms from this model"
        )
    return None
