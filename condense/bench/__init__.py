"""The analysis suite: one module per experiment, each run by ``python -m condense.bench <experiment>``.

Every experiment module has ``run(cfg) -> dict`` (the results, JSON-ready) and ``report(results, figures) ->
list[str]`` (the Markdown section of ``docs/results.md``, drawing its plots into ``figures``).
"""

EXPERIMENTS = ("scaling", "ablations", "compute", "transfer", "prompting", "qualitative")
