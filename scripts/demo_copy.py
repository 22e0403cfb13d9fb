"""Copy warm-up: teach the fresh demo model to copy characters it is shown.

A user's task over arbitrary text (tag these words, wrap these names) needs a model that copies
characters from its prompt, characters it knows from no sentence. The corpus's copy tasks alone
do not teach a 6M-parameter model that (it copied none of 360 random strings). So the build
first trains the fresh model on copying only: chat conversations ``请重复：\\n<s>`` -> ``<s>``
over random GB 2312 level-1 characters, lengths 1-16 from the first step
(``warmup_strings``: 800 steps of 32 at lr 1e-3 reach ~0.4 loss). Pretraining then runs at the
same lr 1e-3 (at 3e-3 it erased the skill) and each epoch adds fresh copy tasks
(``copy_pairs``: 1-16 characters, or 1-6 words of 1-4 characters with a separator) so the skill
stays. Measured on held-out strings (greedy): lengths 1-8 98% exact, 9-16 35% exact / 89% of
characters; longer strings than trained are not copied. No ``#`` and no instruction of the LoRA
demo tasks (``demo_corpus.check_held_out``).
"""

from __future__ import annotations

import random

from demo_corpus import QA
from demo_tasks import gb2312_level1

WARMUP_PROMPT = "请重复：\n"
MIN_LENGTH, MAX_LENGTH = 1, 16
COPY_ASKS = ["请重复：", "原样输出：", "照抄：", "跟我写一遍：", "Copy:", "Repeat exactly:"]
SEPARATORS = ["", "", " ", " ", "、", "，", "/"]


def random_string(rng: random.Random, chars: list[str], low: int, high: int) -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))


def warmup_strings(seed: int, steps: int, batch_size: int) -> list[list[str]]:
    """``steps`` batches of random level-1 character strings of MIN_LENGTH..MAX_LENGTH."""
    rng = random.Random(seed + 77)
    chars = gb2312_level1()
    return [
        [random_string(rng, chars, MIN_LENGTH, MAX_LENGTH) for _ in range(batch_size)]
        for _ in range(steps)
    ]


def copy_pairs(seed: int, epoch: int, count: int) -> list[QA]:
    """Fresh copy tasks for one pretraining epoch: random characters, sometimes as words with
    a separator, under one of several instructions (answer = the input)."""
    rng = random.Random(seed * 1000 + epoch)
    chars = gb2312_level1()
    pairs = []
    for _ in range(count):
        sep = rng.choice(SEPARATORS)
        if sep:
            text = sep.join(random_string(rng, chars, 1, 4) for _ in range(rng.randint(1, 6)))
        else:
            text = random_string(rng, chars, MIN_LENGTH, MAX_LENGTH)
        pairs.append(QA(f"{rng.choice(COPY_ASKS)}\n{text}", text, single=True))
    return pairs
