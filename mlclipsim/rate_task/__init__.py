"""The rate-task study: codecs scored by task models, curves of bpp vs task agreement, BD-rates.

:mod:`~mlclipsim.rate_task.study` holds the configuration, the per-photo worker and the runner on
``Trainer.predict``; :mod:`~mlclipsim.rate_task.curves` the mean curves, BD-rates, tables and plots;
:mod:`~mlclipsim.commands.rate` the ``mlclipsim compress`` and ``mlclipsim rate-task`` commands.
"""

from mlclipsim.rate_task.curves import bd_rates, mean_curves, per_photo_bd_rates, plot_curves
from mlclipsim.rate_task.study import LearnedFamily, RateTaskConfig, run_rate_task

__all__ = ["LearnedFamily", "RateTaskConfig", "bd_rates", "mean_curves", "per_photo_bd_rates", "plot_curves",
           "run_rate_task"]
