"""``python -m tinybert_lib predict MODEL "a gripping film" ...``: classify sentences with any shipped variant.

Tooling: not taught (lesson 12 runs it once). Setup and command line sit together: ``data_setup``,
``preflight``, ``cli``, ``predict_cli`` and ``__main__``.

``MODEL -`` reads the texts from standard input, one per line. Output: one line per text,
``label<TAB>probability<TAB>text`` after a ``# variant, model`` header, or with ``--json`` one JSON
object per line (JSON Lines) and no header. Exit codes: 0 done, 1 the model cannot be used,
2 the command line or an input is wrong (nothing is printed to stdout then).
"""

from __future__ import annotations

import argparse
import codecs
import json
import sys

from .deploy import DeploymentError, load_classifier, predict
from .errors import debug_enabled

STDIN = "-"


class InputError(ValueError):
    """A text that cannot be classified (not UTF-8, empty); the message names which one."""


def _positive_int(value: str) -> int:
    """argparse ``type=`` for --threads: a thread count of 0 or less would reach PyTorch as a traceback."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more threads, not {number}")
    return number


def _check_text(text: str, where: str) -> str:
    """``text`` unchanged if it can be classified, else an ``InputError`` naming ``where`` it came from."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Python hands undecodable argv bytes over as lone surrogates (surrogateescape): show the bytes.
        try:
            shown = repr(text.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            shown = ascii(text)
        raise InputError(f"{where} is not valid UTF-8 text: {shown}") from None
    if not text.strip():
        raise InputError(f"{where} is empty (or only whitespace): there is nothing to classify")
    return text


def _texts_from_args(texts: list[str]) -> list[str]:
    return [_check_text(text, f"text argument {i}") for i, text in enumerate(texts, 1)]


def _texts_from_stdin() -> list[str]:
    """One text per line of standard input, decoded strictly line by line so an error names its line."""
    data = sys.stdin.buffer.read()  # bytes: the text layer would mangle bad bytes or fail with no line number
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the newline that ends the last line starts no text
        lines.pop()
    if not lines:
        raise InputError("standard input is empty: give one text per line")
    texts = []
    for number, raw in enumerate(lines, 1):
        where = f"line {number} of standard input"
        raw = raw.removesuffix(b"\r")  # a file saved with Windows line ends
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # some editors start UTF-8 files with one; it is no text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{where} is not valid UTF-8 text (byte {raw[err.start]:#04x} at offset "
                             f"{err.start}): {raw[:80]!r}") from None
        texts.append(_check_text(text, where))
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model folder: an export (e.g. build/cpu/artifacts/task_step2/model) "
                                      "or a shipped folder of lesson 12 (build/cpu/artifacts/deploy/student)")
    parser.add_argument("texts", nargs="+", help="one or more sentences to classify; - alone reads them "
                                                 "from standard input, one per line")
    parser.add_argument("--onnx", action="store_true", help="run the ONNX graph with ONNX Runtime (model.onnx)")
    parser.add_argument("--int8", action="store_true",
                        help="the int8 variant: model_int8.onnx with --onnx, else PyTorch's dynamic quantization on load")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="CPU threads, 1 or more (default: PyTorch's)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per line, {"text": ..., "label": ..., "probability": ...}, '
                             "and no header")
    args = parser.parse_args(argv)
    # Every input is checked before anything is printed: a pipe reading stdout sees all the answers or none.
    try:
        if STDIN in args.texts and len(args.texts) > 1:
            raise InputError("- (standard input) must be the only text: give the texts as arguments or "
                             "on stdin, not both")
        texts = _texts_from_stdin() if args.texts == [STDIN] else _texts_from_args(args.texts)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        loaded = load_classifier(args.model, onnx=args.onnx, int8=args.int8, threads=args.threads)
    except DeploymentError as err:
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    answers = predict(loaded, texts)
    if args.json:
        for text, (label, prob) in zip(texts, answers):
            record = {"text": text, "label": label, "probability": round(prob, 3)}
            print(json.dumps(record, ensure_ascii=False))
    else:
        print(f"# {loaded.variant}, {args.model}")
        for text, (label, prob) in zip(texts, answers):
            print(f"{label}\t{prob:.3f}\t{text}")
    return 0
