#!/usr/bin/env python3
"""Independent numpy GPT-2 forward pass: mean next-token cross-entropy of an llm.c checkpoint
(version 3 fp32 or 5 bf16) on the first B*T+1 tokens of a token shard.
usage: gpt2_ref.py MODEL.bin SHARD.bin B T   (prints the loss; exit 77 without numpy)"""
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(77)


def load_model(path):
    raw = open(path, "rb").read()
    h = np.frombuffer(raw[:1024], dtype="<i4")
    assert h[0] == 20240326 and h[1] in (3, 5), "not a checkpoint"
    maxT, V, L, NH, C, Vp = (int(x) for x in h[2:8])
    if h[1] == 3:
        flat = np.frombuffer(raw[1024:], dtype="<f4").astype(np.float64)
    else:
        flat = (np.frombuffer(raw[1024:], dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    shapes = [("wte", (Vp, C)), ("wpe", (maxT, C)), ("ln1w", (L, C)), ("ln1b", (L, C)), ("qkvw", (L, 3 * C, C)),
              ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)), ("attprojb", (L, C)), ("ln2w", (L, C)), ("ln2b", (L, C)),
              ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)), ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)),
              ("lnfw", (C,)), ("lnfb", (C,))]
    p, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        p[name] = flat[off:off + n].reshape(shape)
        off += n
    assert off == flat.size, "size mismatch"
    return p, dict(maxT=maxT, V=V, L=L, NH=NH, C=C, Vp=Vp)


def layernorm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def forward_loss(p, cfg, idx, tgt):
    B, T = idx.shape
    C, NH, L, V = cfg["C"], cfg["NH"], cfg["L"], cfg["V"]
    hs = C // NH
    x = p["wte"][idx] + p["wpe"][:T]
    mask = np.tril(np.ones((T, T), dtype=bool))
    for l in range(L):
        h = layernorm(x, p["ln1w"][l], p["ln1b"][l])
        qkv = h @ p["qkvw"][l].T + p["qkvb"][l]
        q, k, v = np.split(qkv, 3, axis=-1)
        q = q.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        k = k.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        v = v.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
        att = np.where(mask, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + y @ p["attprojw"][l].T + p["attprojb"][l]
        h = layernorm(x, p["ln2w"][l], p["ln2b"][l])
        x = x + gelu(h @ p["fcw"][l].T + p["fcb"][l]) @ p["fcprojw"][l].T + p["fcprojb"][l]
    x = layernorm(x, p["lnfw"], p["lnfb"])
    logits = x @ p["wte"][:V].T
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(logits, tgt[..., None], -1)[..., 0]
    return float((lse - picked).mean())


def main():
    model, shard, B, T = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    p, cfg = load_model(model)
    raw = open(shard, "rb").read()
    h = np.frombuffer(raw[:1024], dtype="<i4")
    assert h[0] == 20240520 and h[1] == 1, "not a shard"
    tok = np.frombuffer(raw[1024:], dtype="<u2").astype(np.int64)
    n = B * T
    assert tok.size >= n + 1, "shard too short"
    idx = tok[:n].reshape(B, T)
    tgt = tok[1:n + 1].reshape(B, T)
    print("%.10f" % forward_loss(p, cfg, idx, tgt))


if __name__ == "__main__":
    main()
