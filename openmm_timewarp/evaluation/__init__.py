"""Evaluation: sampling metrics, the side-by-side benchmark against MD, MD's rate from long runs
and the parallel-tempering reference.

``metrics`` (ESS, TICA, states, divergences); the benchmark: ``settings`` (samplers, MD baselines),
``runs`` (each sampler for a wall-clock budget), ``md_reference`` (the reference MD and what derives
from it), ``analysis`` (metrics of each sampler's chains), ``comparisons`` (ratios, fastest MD
baseline, discovery speed-ups, parallel tempering), ``plots``, ``report`` (Markdown summary),
``benchmark`` (orchestration); ``md_rates`` (long MD runs); ``reference`` (parallel tempering).
"""
