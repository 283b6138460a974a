"""PyTorch's MiniLM encoding speed on this machine, for the ratio of issue #6's speed goal.

The issue's anchor (31 documents/s at 256 tokens with PyTorch) was measured on the machine its
author had; sessions here run on different CPUs, so `risk-bench`'s "x PyTorch" is only fair
against PyTorch on the same machine. This encodes the documents `risk-bench` times at 256
tokens (the first 200 e-mails of `spam/spamassassin_dev.jsonl`, subject + body, that fill 256
tokens) with sentence-transformers on the CPU, from the same model directory (`make minilm`).
Not part of the benchmark; needs `pip install torch sentence-transformers`.

    python3 bench/scripts/minilm_pytorch_speed.py [MODEL_DIR]
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

root = os.environ.get("AUGUR_DATASETS", "../shared/datasets")
model_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUGUR_MINILM_DIR", "models/minilm")
torch.set_num_threads(os.cpu_count() or 1)


def subject_body(raw):
    i = raw.find("\n\n")
    head, body = (raw[:i], raw[i + 2:]) if i >= 0 else (raw, "")
    subject = next((l[len("Subject:"):] for l in head.splitlines() if l.startswith("Subject:")), "")
    return subject.strip() + "\n" + body


docs = [subject_body(json.loads(l)["text"]) for l in open(os.path.join(root, "spam/spamassassin_dev.jsonl"))]
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = 256
tok = model.tokenizer
long = [d for d in docs if len(tok(d, truncation=True, max_length=256)["input_ids"]) == 256][:200]
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(long)} documents of 256 tokens")
model.encode(long[:16], batch_size=16)  # warm-up
for batch in (16, 32, 16, 32):
    t = time.perf_counter()
    e = model.encode(long, batch_size=batch, normalize_embeddings=True)
    dt = time.perf_counter() - t
    print(f"batch {batch}: {len(long) / dt:.1f} docs/s ({e.shape})", flush=True)
