"""advqa: judge adversarial examples the way people see them.

The package follows the pipeline, one way: ``data`` → ``models`` → ``attacks`` →
``study`` (AdvDB-style datasets) → ``cli``. Later stages (quality, evaluate,
robustness, detect, annotate, report) read what earlier ones wrote.
"""

__version__ = "0.1.0"
