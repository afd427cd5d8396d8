"""llama.cpp's own logits for token ids, through the ``llama-cpp-cffi`` wheel (llama.cpp's C API, no hub).

Runs in any Python that has ``llama-cpp-cffi`` and numpy (``pip install llama-cpp-cffi``, ~290 MB); the
project's venv does not need it. ``python bench/llama_cpp_logits.py model.gguf ids.npy out.npy [n_new]``
writes float32[T, vocab] logits of every position of ``ids`` (int32[T]) and, with ``n_new``, the greedy
continuation's token ids to ``out.npy.greedy.npy``.
"""

from __future__ import annotations

import sys

import numpy as np
from llama.llama_cpp import ffi, lib


def main(model_path: str, ids_path: str, out_path: str, n_new: int = 0) -> None:
    ids = np.load(ids_path).astype(np.int32)
    lib.llama_backend_init()
    lib.llama_log_set(lib.llama_cpp_cffi_ggml_log_callback, ffi.NULL)  # quiet
    mparams = lib.llama_model_default_params()
    model = lib.llama_model_load_from_file(model_path.encode(), mparams)
    if model == ffi.NULL:
        raise SystemExit(f"llama.cpp could not load {model_path}")
    cparams = lib.llama_context_default_params()
    cparams.n_ctx = len(ids) + n_new + 8
    cparams.n_batch = cparams.n_ubatch = len(ids) + n_new + 8
    cparams.n_threads = cparams.n_threads_batch = 2
    ctx = lib.llama_init_from_model(model, cparams)
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))

    batch = lib.llama_batch_init(len(ids) + n_new, 0, 1)
    batch.n_tokens = len(ids)
    for i, token in enumerate(ids):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = int(token), i, 1
        batch.seq_id[i][0], batch.logits[i] = 0, True
    if lib.llama_decode(ctx, batch) != 0:
        raise SystemExit("llama_decode failed")

    def row(i: int) -> np.ndarray:
        return np.frombuffer(ffi.buffer(lib.llama_get_logits_ith(ctx, i), 4 * n_vocab), np.float32).copy()

    logits = np.stack([row(i) for i in range(len(ids))])  # [T, vocab]
    np.save(out_path, logits)

    greedy, pos, last = [], len(ids), int(logits[-1].argmax())
    for _ in range(n_new):  # greedy decoding, one token at a time on the same KV cache
        greedy.append(last)
        batch.n_tokens = 1
        batch.token[0], batch.pos[0], batch.n_seq_id[0], batch.seq_id[0][0], batch.logits[0] = last, pos, 1, 0, True
        if lib.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        last, pos = int(row(0).argmax()), pos + 1
    if n_new:
        np.save(out_path + ".greedy.npy", np.array(greedy, dtype=np.int32))
    lib.llama_batch_free(batch)
    lib.llama_free(ctx)
    lib.llama_model_free(model)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
