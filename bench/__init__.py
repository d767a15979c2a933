"""Load-benchmark harness for broadcaster: ``python -m bench run --quick|--full``.

Publisher, server and subscribers run as separate processes on loopback; the core hub
also runs alone in-process. Results go to ``bench/results/`` (JSON per scenario, a
markdown summary and PNG plots). See bench/README.md.
"""
