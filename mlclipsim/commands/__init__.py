"""The ``mlclipsim`` command's larger subcommands, one module each, on the top floor beside
:mod:`mlclipsim.cli` (which registers them): :mod:`~mlclipsim.commands.codec` (``mlclipsim codec``),
:mod:`~mlclipsim.commands.rate` (``mlclipsim compress`` and ``mlclipsim rate-task``).

They live outside the packages they drive so that building their argument parsers imports no torch:
``coding`` and ``rate_task`` load CompressAI and Lightning when imported. Their heavy imports sit
inside the ``run`` functions for the same reason.
"""
