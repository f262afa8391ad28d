"""Synthetic transcripts for the benchmarks: alternating T/P turns of realistic length."""

from __future__ import annotations

import random

WORDS = (
    "I feel he just does not care and that is obvious what do you think was going on in "
    "your mind when she said that maybe I am not sure why it matters so much to me now"
).split()


def make_transcript(rng: random.Random, n_utterances: int, index: int) -> bytes:
    """A txt transcript with ``[hh:mm:ss] T:``/``P:`` turns; ``index`` makes each file unique."""
    lines = []
    for i in range(n_utterances):
        speaker = "T" if i % 2 == 0 else "P"
        secs = i * 4
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))
        lines.append(f"[{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}] {speaker}: {text} ({index})")
    return ("\n".join(lines) + "\n").encode()
