"""Rate-1/2, constraint-length-7 convolutional code (generators 133, 171 octal) with soft-decision Viterbi.

Conventions
-----------
* Encoder state: the last 6 input bits, the most recent in bit 5. For input bit ``b`` in state ``s`` the
  7-bit register is ``(b << 6) | s``; code bit ``j`` is the parity of ``register & G[j]`` (so the MSB of each
  octal generator taps the current input), and the next state is ``register >> 1``.
* Output order: ``c0, c1`` (for 133 then 171) per input bit, input bits in order.
* Zero termination: 6 zero tail bits are appended, so ``n`` bits give ``2 * (n + 6)`` code bits (64 -> 140) and
  the encoder starts and ends in state 0.
* Soft input to :func:`viterbi_decode`: one real value per code bit, **positive means code bit 1**, magnitude is
  confidence (e.g. a log-likelihood ratio up to scale). The decoder maximises the correlation
  ``sum(soft * (2c - 1))`` over terminated code words, which is maximum likelihood for Gaussian noise.
"""

from __future__ import annotations

import numpy as np

CONSTRAINT_LENGTH = 7
GENERATORS = (0o133, 0o171)
MEMORY = CONSTRAINT_LENGTH - 1  # 6 tail bits
N_STATES = 1 << MEMORY  # 64
RATE_INV = len(GENERATORS)  # 2


def _parity(x: int) -> int:
    return bin(x).count("1") & 1


# For next state ns: its two predecessors ((ns & 31) << 1) | x (x = the bit shifted out), the input bit
# ns >> 5, and the +-1 signs of the two code bits on each of the two incoming branches.
_NS = np.arange(N_STATES)
_PRED = ((_NS[:, None] & (N_STATES // 2 - 1)) << 1) | np.arange(2)[None, :]  # (64, 2)
_INPUT = _NS >> (MEMORY - 1)  # (64,)
_REG = (_INPUT[:, None] << MEMORY) | _PRED  # (64, 2) the register on each branch
_BRANCH_SIGN = np.stack(
    [np.vectorize(lambda r, g=g: 2 * _parity(int(r) & g) - 1)(_REG) for g in GENERATORS], axis=0
).astype(np.float64)  # (2, 64, 2)


def code_length(n_bits: int) -> int:
    """Number of code bits for ``n_bits`` information bits (64 -> 140)."""
    return RATE_INV * (n_bits + MEMORY)


def encode(bits: np.ndarray) -> np.ndarray:
    """Encode 0/1 bits (zero-terminated): returns ``code_length(len(bits))`` uint8 code bits."""
    arr = np.asarray(bits).reshape(-1)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("bits to encode must be 0 or 1")
    out = np.empty(code_length(arr.size), dtype=np.uint8)
    state = 0
    for i, b in enumerate(np.concatenate([arr.astype(np.int64), np.zeros(MEMORY, dtype=np.int64)])):
        reg = (int(b) << MEMORY) | state
        for j, g in enumerate(GENERATORS):
            out[RATE_INV * i + j] = _parity(reg & g)
        state = reg >> 1
    return out


def viterbi_decode(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Soft-decision Viterbi decoding of a zero-terminated code word.

    ``soft``: ``code_length(n_bits)`` reals, positive meaning code bit 1. Returns ``n_bits`` uint8 bits: the
    information word whose terminated code word has the largest correlation with ``soft``. Vectorised over the
    64 states (one small numpy step per trellis stage).
    """
    r = np.asarray(soft, dtype=np.float64).reshape(-1)
    if r.size != code_length(n_bits):
        raise ValueError(f"expected {code_length(n_bits)} soft values for {n_bits} bits, got {r.size}")
    if not np.all(np.isfinite(r)):
        raise ValueError("soft values must be finite")
    steps = n_bits + MEMORY
    pairs = r.reshape(steps, RATE_INV)
    # branch metrics for every stage: (steps, 64, 2)
    bm = pairs[:, 0, None, None] * _BRANCH_SIGN[0] + pairs[:, 1, None, None] * _BRANCH_SIGN[1]
    pm = np.full(N_STATES, -np.inf)
    pm[0] = 0.0
    decisions = np.empty((steps, N_STATES), dtype=np.int8)
    for t in range(steps):
        cand = pm[_PRED] + bm[t]
        choice = (cand[:, 1] > cand[:, 0]).astype(np.int8)
        decisions[t] = choice
        pm = np.where(choice == 1, cand[:, 1], cand[:, 0])
    # trace back from the terminating state 0
    out = np.empty(steps, dtype=np.uint8)
    state = 0
    for t in range(steps - 1, -1, -1):
        out[t] = _INPUT[state]
        state = int(_PRED[state, decisions[t, state]])
    return out[:n_bits].copy()
