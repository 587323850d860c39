"""Detecting adversarial and unfit inputs.

- :func:`ws_statistic`, :class:`WSDetector`: the weighted-stego residual detector of
  Schöttle et al. (EUSIPCO 2018), and :mod:`advqa.detect.stego_eval`, their experiment.
- :class:`Gate`: the IQA-aware fit-for-task gate of Feng & Cai (SVM on top-5 softmax
  plus a no-reference quality score), with feature squeezing and a quality threshold;
  saved as JSON plus .npz, never pickle, and signed (HMAC-SHA256) with a key from
  :func:`create_gate_key` / :func:`read_gate_key`.
- :func:`detect_study`: the WS detector on a study directory (the report's section).
"""

from advqa.detect.gate import (
    Decision,
    Gate,
    GateFormatError,
    GateSignatureError,
    create_gate_key,
    read_gate_key,
)
from advqa.detect.study import detect_study
from advqa.detect.ws import WSDetector, ws_statistic

__all__ = ["Decision", "Gate", "GateFormatError", "GateSignatureError", "WSDetector",
           "create_gate_key", "detect_study", "read_gate_key", "ws_statistic"]
