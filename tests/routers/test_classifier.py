from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from routers.classifier import MODELS_DIR, TaskClassifier
from routers.dataset import Example
from routers.encoder import Encoder
from routers.training import embed, export_head, fit_head

PROMPTS = {
    "code": [
        "Write a function that sorts a list",
        "Fix this Python error",
        "def add(a, b): implement it",
        "SQL query for users",
    ],
    "math": ["What is 7 times 8?", "Solve 2x + 3 = 9", "Compute 15% of 200", "What is the square root of 81?"],
    "qa": ["Who wrote Hamlet?", "Why is the sea salty?", "What is the capital of Peru?", "When did WW2 end?"],
}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(MODELS_DIR / "minilm-l6", threads=1, head_tokens=24, tail_tokens=23)


def test_onnx_head_gives_the_sklearn_pipelines_predictions(encoder: Encoder, tmp_path: Path) -> None:
    examples = [Example(p, label, label) for label, prompts in PROMPTS.items() for p in prompts]
    embeddings = embed(encoder, [e.prompt for e in examples])
    head = fit_head(examples, embeddings)
    export_head(head, tmp_path / "head.onnx")
    session = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    probe = encoder.encode(["Implement quicksort in Go", "What is 12 / 4?", "Who painted Guernica?", "hello there"])
    (labels, onnx_probabilities) = session.run(None, {session.get_inputs()[0].name: probe})
    np.testing.assert_allclose(onnx_probabilities, head.predict_proba(probe), atol=1e-5)
    assert list(labels) == list(head.predict(probe))


def test_encoder_reads_head_and_tail_of_long_prompts(encoder: Encoder) -> None:
    ids = encoder.token_ids("start " + "filler " * 500 + "end")
    assert len(ids) == 24 + 23 + 2
    assert ids[0] == 101
    assert ids[-1] == 102


def test_shipped_model_routes_clear_prompts() -> None:
    classifier = TaskClassifier(threads=1)
    prompts = {
        "code": "Write a Python function that checks whether a string is a palindrome.",
        "math": "A shop sells 3 apples for $2. How much do 12 apples cost?",
        "summarization": "Summarize the following article in two sentences: The city council voted on Tuesday to ...",
    }
    scores = classifier.scores(list(prompts.values()))
    assert [classifier.labels[i] for i in scores.argmax(axis=1)] == list(prompts)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)


def test_classifier_serves_without_torch_or_sklearn() -> None:
    script = (
        "import sys\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'transformers', 'sklearn', 'scipy'}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Blocker())\n"
        "from routers.classifier import TaskClassifier\n"
        "c = TaskClassifier(threads=1)\n"
        "rows = c.scores(['What is 2 + 2?', 'Please explain, in a few words, ' * 20])\n"
        "print(c.labels[int(rows.argmax(axis=1)[0])])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "math"
