"""Small tasks a user might teach the demo model, to see what LoRA can and cannot teach it.

Writes ``<name>_train.jsonl`` (400 rows) and ``<name>_test.jsonl`` (80 held-out rows) for:

- ``classify``: a corpus-style sentence -> one of 运动 / 学习 / 生活 (by its activity);
- ``subject``: a sentence -> ``说的是<subject>。``;
- ``when``: a sentence -> ``时间：<time word>``;
- ``translate``: 2-3 words of the corpus's dictionary -> their English, ``/``-separated (the
  corpus translates word lists too, but ``、`` -> ``, ``).

(the bundled ``tag_*.jsonl`` is the fifth: words of random characters.) None of these is in the
pretraining corpus. Usage: ``python scripts/demo_user_tasks.py DIR``, then for each task
``gpt-service train demo DIR/<name>_train.jsonl --output-dir models/lora/<name>`` and
``gpt-service evaluate --dataset DIR/<name>_test.jsonl --metrics exact_match [--adapter ...]``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from demo_corpus import PREDICATES, SUBJECTS, TIMES
from demo_tasks import DICTIONARY

SPORT = {"打篮球", "跑步", "踢足球", "游泳", "爬山", "骑自行车"}
STUDY = {"看书", "写代码", "做作业", "学英语", "学数学", "学习Python", "学习人工智能", "读新闻",
         "去图书馆", "去学校", "训练模型", "写日记"}  # fmt: skip
Row = dict[str, str]


def _classify(s: str, t: str, p: str) -> Row:
    label = "运动" if p in SPORT else "学习" if p in STUDY else "生活"
    return {
        "instruction": "这句话属于哪一类（运动、学习、生活）？",
        "input": s + t + p,
        "output": label,
    }


def _subject(s: str, t: str, p: str) -> Row:
    return {"instruction": "这句话说的是谁？", "input": s + t + p, "output": f"说的是{s}。"}


def _when(s: str, t: str, p: str) -> Row:
    return {"instruction": "这件事是什么时候？", "input": s + t + p, "output": f"时间：{t}"}


def _translate(rng: random.Random) -> Row:
    words = rng.sample(DICTIONARY, rng.randint(2, 3))
    return {
        "instruction": "把这些词翻译成英文，用斜线隔开：",
        "input": "、".join(zh for zh, _ in words),
        "output": " / ".join(en for _, en in words),
    }


def build(seed: int = 7, rows: int = 480) -> dict[str, list[Row]]:
    rng = random.Random(seed)
    parts = [(s, t, p) for s in SUBJECTS for t in TIMES for p in PREDICATES]
    tasks: dict[str, list[Row]] = {}
    for name, make in (("classify", _classify), ("subject", _subject), ("when", _when)):
        rng.shuffle(parts)
        tasks[name] = [make(*x) for x in parts[:rows]]
    rng = random.Random(seed + 1)
    seen: dict[str, Row] = {}
    while len(seen) < rows:  # distinct inputs: train and test never share a word list
        row = _translate(rng)
        seen.setdefault(row["input"], row)
    tasks["translate"] = list(seen.values())
    return tasks


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "user_tasks")
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in build().items():
        for split, part in (("train", rows[:400]), ("test", rows[400:])):
            lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in part]
            (out / f"{name}_{split}.jsonl").write_text("".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
