"""``python -m tinybert_lib predict MODEL "a gripping film" ...``: classify sentences with any shipped variant.

Tooling: not taught (lesson 12 runs it once). Setup and command line sit together: ``data_setup``,
``preflight``, ``cli``, ``predict_cli`` and ``__main__``.
"""

from __future__ import annotations

import argparse
import sys

from .deploy import DeploymentError, load_classifier, predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model folder: an export (e.g. build/cpu/artifacts/task_step2/model) "
                                      "or a shipped folder of lesson 12 (build/cpu/artifacts/deploy/student)")
    parser.add_argument("texts", nargs="+", help="one or more sentences to classify")
    parser.add_argument("--onnx", action="store_true", help="run the ONNX graph with ONNX Runtime (model.onnx)")
    parser.add_argument("--int8", action="store_true",
                        help="the int8 variant: model_int8.onnx with --onnx, else PyTorch's dynamic quantization on load")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    args = parser.parse_args(argv)
    try:
        loaded = load_classifier(args.model, onnx=args.onnx, int8=args.int8, threads=args.threads)
    except DeploymentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"# {loaded.variant}, {args.model}")
    for text, (label, prob) in zip(args.texts, predict(loaded, args.texts)):
        print(f"{label}\t{prob:.3f}\t{text}")
    return 0
