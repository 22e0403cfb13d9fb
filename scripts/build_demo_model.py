"""Build the tiny bundled demo model (tokenizer + Qwen2 weights) and the demo dataset.

One reproducible command, CPU only, no network (HF_HUB_OFFLINE is forced)::

    python scripts/build_demo_model.py [--out DIR] [--data-out DIR]

Steps: generate the corpus (``demo_corpus.py`` + ``demo_tasks.py``), train a byte-level BPE
tokenizer that holds every GB 2312 level-1 character as one token, teach a randomly
initialised ~6M parameter ``Qwen2ForCausalLM`` to copy random characters (``demo_copy.py``),
pretrain it on the Q/A pairs (plus fresh copy tasks each epoch) in raw form
(``Q\\nA<|endoftext|>``) and chat-template form, save it with ``save_pretrained`` and write the
LoRA demo datasets (``demo_data/``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP workers sleep instead of spinning: with spinning, 2 threads on a shared 2-core box
# become ~30x slower as soon as anything else runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from tokenizers import (  # noqa: E402
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_copy  # noqa: E402
import demo_corpus  # noqa: E402
import demo_lora_tasks  # noqa: E402
import demo_tasks  # noqa: E402

logger = logging.getLogger("build_demo_model")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "gpt_service" / "demo_model"
EOT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VOCAB_SIZE = 7000
FORCED_COUNT = 500
MIN_SEEN = 2
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SYSTEM_PROMPTS = ["You are a helpful assistant.", "你是一个乐于助人的助手。"]


def single_token_chars() -> list[str]:
    """Characters the vocabulary must hold as single tokens: GB 2312 level 1, CJK punctuation
    and every other non-ASCII character of the corpus's hand-written text (ASCII is one byte)."""
    return demo_tasks.gb2312_level1() + demo_tasks.CJK_PUNCT


def train_tokenizer(texts: list[str], forced: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any NFC text round-trips) wrapped as a Qwen2-compatible fast tokenizer.

    The saved pipeline is exactly the one transformers' ``Qwen2Tokenizer`` rebuilds (NFC, Qwen2
    split regex, byte-level), so 4.x (reads tokenizer.json) and 5.x (rebuilds) agree. For training
    only, Han characters and newlines are also isolated, so merges never cross characters
    (the ``forced`` ones and frequent ones become single tokens, rare/unseen ones fall back to
    2-3 byte-level tokens) and never glue "？" + "\n": a raw prompt ending in "？" then
    continues like training.
    """
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    final = [
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]
    isolate = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in (r"\p{Han}", r"\n")]
    tok.pre_tokenizer = pre_tokenizers.Sequence([*isolate, *final])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[EOT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Each forced character, isolated by the "\n" split, counts FORCED_COUNT times: its merges
    # outrank all but the most frequent ones, so the vocabulary is sure to hold it.
    forced_text = "\n".join(forced)
    extra = ["system\nuser\nassistant\n"] * 50 + [forced_text] * FORCED_COUNT
    tok.train_from_iterator(texts + extra, trainer=trainer)
    missing = [c for c in forced if len(tok.encode(c).ids) != 1]
    if missing:
        raise RuntimeError(f"tokenizer: {len(missing)} characters are not single tokens")
    with_han = [e.ids for e in tok.encode_batch(texts)]
    tok.pre_tokenizer = pre_tokenizers.Sequence(final)
    if [e.ids for e in tok.encode_batch(texts)] != with_han:  # no merge crosses those borders
        raise RuntimeError("tokenizer: the training-only splits changed the encoding")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=EOT,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def finish_tokenizer_config(out: Path) -> None:
    """Loadable by transformers 4.x and 5.x alike: the Qwen2 tokenizer class (5.x forces it for
    qwen2 models anyway) and the chat template inline (5.x also reads chat_template.jinja)."""
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg["chat_template"] = CHAT_TEMPLATE
    path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def check_coverage(tokenizer: PreTrainedTokenizerFast, docs: list[Doc]) -> None:
    """Every forced single-token character is seen in context at least MIN_SEEN times."""
    counts = Counter(i for doc in docs for i in doc.ids)
    forced = [
        tokenizer.convert_tokens_to_ids(tokenizer.tokenize(c))[0] for c in single_token_chars()
    ]
    rare = [tokenizer.decode([i]) for i in forced if counts[i] < MIN_SEEN]
    unseen = sum(1 for i in range(len(tokenizer)) if counts[i] == 0)
    logger.info(
        "coverage: %d forced characters, each seen >= %d times; %d of %d tokens unseen "
        "(byte-pair pieces of characters)",
        len(forced),
        min(counts[i] for i in forced),
        unseen,
        len(tokenizer),
    )
    if rare:
        raise RuntimeError(f"corpus: {len(rare)} characters seen < {MIN_SEEN} times: {rare[:20]}")


class Doc(NamedTuple):
    ids: list[int]
    masked: int  # leading tokens without loss (the prompt of a task pair)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _doc(tokenizer: PreTrainedTokenizerFast, text: str, prompt: str | None) -> Doc:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if prompt is None:
        return Doc(ids, 0)
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if ids[: len(head)] != head:
        raise RuntimeError(f"tokenizer: the prompt is not a token prefix of {text!r}")
    return Doc(ids, len(head))


def build_documents(
    pairs: list[demo_corpus.QA], tokenizer: PreTrainedTokenizerFast, rng: random.Random
) -> list[Doc]:
    """Every topic pair as raw text and as a chat conversation (sometimes with a system
    message), learning every token; ``single`` pairs (the tasks: random inputs, which no model
    can predict) as one of the two, learning the answer only."""
    docs: list[Doc] = []
    for qa in pairs:
        chat_only = qa.single and rng.random() < 0.6
        if not chat_only:
            raw_prompt = f"{qa.question}\n" if qa.single else None
            docs.append(_doc(tokenizer, f"{qa.question}\n{qa.answer}{EOT}", raw_prompt))
            if qa.single:
                continue
        user = user_turn(qa.question)
        if rng.random() < 0.2:
            user = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}, *user]
        docs.append(chat_doc(tokenizer, user, qa.answer, answer_only=qa.single))
    return docs


def make_batches(docs: list[Doc], batch_size: int, pad_id: int, rng: random.Random) -> list[Batch]:
    """Shuffle, bucket by length (little padding), right-pad; labels are -100 on padding and
    on masked prompts."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start : start + chunk], key=lambda i: len(docs[i].ids))
        for b in range(0, len(group), batch_size):
            batches.append(pad_batch([docs[i] for i in group[b : b + batch_size]], pad_id))
    rng.shuffle(batches)
    return batches


def pad_batch(seqs: list[Doc], pad_id: int) -> Batch:
    """Right-pad; labels are -100 on padding and on masked prompts."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq.ids)] = torch.tensor(seq.ids)
        mask[row, : len(seq.ids)] = 1
        labels[row, seq.masked : len(seq.ids)] = ids[row, seq.masked : len(seq.ids)]
    return ids, mask, labels


def train_step(
    model: Qwen2ForCausalLM,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    batch: Batch,
) -> float:
    ids, mask, labels = batch
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def chat_doc(
    tokenizer: PreTrainedTokenizerFast,
    user: list[dict[str, str]],
    answer: str,
    answer_only: bool = True,
) -> Doc:
    """A chat conversation of ``user`` messages and ``answer``, learning the answer only or
    every token."""
    text = tokenizer.apply_chat_template(
        [*user, {"role": "assistant", "content": answer}], tokenize=False
    )
    if not answer_only:
        return _doc(tokenizer, text, None)
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    return _doc(tokenizer, text, prompt)


def user_turn(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def copy_warmup(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    pad_id: int,
    args: argparse.Namespace,
) -> float:
    """Before pretraining: copy strings of random characters of 1-16 characters
    (``demo_copy``); AdamW at a constant lr after 100 warm-up steps, no weight decay on
    embeddings and norms."""
    params = dict(model.named_parameters())
    plain = [n for n in params if "embed" in n or "norm" in n]
    groups = [
        {"params": [p for n, p in params.items() if n not in plain], "weight_decay": 0.01},
        {"params": [params[n] for n in plain], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.warmup_lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    model.train()
    t0, losses, last = time.perf_counter(), [], float("nan")
    batches = demo_copy.warmup_strings(args.seed, args.warmup_steps, args.warmup_batch)
    for step, strings in enumerate(batches, 1):
        docs = [chat_doc(tokenizer, user_turn(demo_copy.WARMUP_PROMPT + s), s) for s in strings]
        losses.append(train_step(model, opt, sched, pad_batch(docs, pad_id)))
        if step % 250 == 0 or step == len(batches):
            logger.info(
                "copy warm-up step %d/%d loss %.4f (%.1fs)",
                step,
                len(batches),
                sum(losses) / len(losses),
                time.perf_counter() - t0,
            )
            last, losses = sum(losses) / len(losses), []
    return last


def pretrain(
    model: Qwen2ForCausalLM,
    epoch_docs: list[list[Doc]],
    pad_id: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> float:
    """AdamW with warm-up and a cosine decay to 10%; epoch ``e`` trains on ``epoch_docs[e]``."""
    rng = random.Random(seed)
    epochs = len(epoch_docs)
    total, warmup = sum(math.ceil(len(d) / batch_size) for d in epoch_docs), 50
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup)
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
        ),
    )
    model.train()
    loss_value = float("nan")
    for epoch, docs in enumerate(epoch_docs):
        t0, losses = time.perf_counter(), []
        for batch in make_batches(docs, batch_size, pad_id, rng):
            losses.append(train_step(model, opt, sched, batch))
        loss_value = sum(losses) / len(losses)
        logger.info(
            "epoch %d/%d loss %.4f (%.1fs)", epoch + 1, epochs, loss_value, time.perf_counter() - t0
        )
    model.eval()
    return loss_value


def generate(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    text: str,
    max_new_tokens: int = 100,
) -> tuple[str, int]:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, ids["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0])


MODEL_README = """# gpt-service demo model

A **tiny, randomly initialised then pretrained** `Qwen2ForCausalLM` ({params:,} parameters,
hidden {hidden}, {layers} layers, {heads} heads / {kv} KV heads, vocab {vocab}) bundled so the
service, its tests and its LoRA demo work offline on CPU. It knows a few dozen Chinese and
English question/answer topics (greetings, AI, machine learning, Python, poems, LoRA, ...) and
"repeat after me" copying of short sentences; it has also seen small instruction tasks over
every common Chinese character (copy, reverse, reorder, wrap, add a prefix/suffix/punctuation,
join/split, translate word lists, digits <-> Chinese numerals, answer templates), which give
each character context. Before pretraining it learns to copy strings of random common
characters ({warmup_steps} steps of 1-16 characters, `scripts/demo_copy.py`),
and every epoch adds {copies} fresh copy tasks, so it can repeat characters it knows from no
sentence; LoRA teaches it new tasks (`demo_data/`). It is not useful for anything else.

- Tokenizer: byte-level BPE (`tokenizers`) with the Qwen2 pre-tokenizer and NFC normaliser
  (transformers 5 rebuilds it as `Qwen2Tokenizer`; 4.x reads `tokenizer.json`: same ids), so
  any NFC text round-trips. Every GB 2312 level-1 character (3,755, from the codec) and the
  CJK punctuation are single tokens, as are ASCII letters, digits and punctuation (bytes);
  merges never cross a Chinese character, so Chinese text is one token per character, and
  English words are merged. Rarer characters become 2-4 byte-level tokens. Special tokens
  `<|endoftext|>` (pad), `<|im_start|>`, `<|im_end|>` (eos); Qwen-style chat template without
  a default system message.
- Training data: `scripts/demo_corpus.py` and `scripts/demo_tasks.py` (templates, hand-written
  facts and character tasks, seed {seed}; every level-1 character is seen in context at least
  {min_seen} times). Topic pairs appear as raw text `question\\nanswer<|endoftext|>` and as a
  chat conversation, task pairs as one of the two. The LoRA demo tasks of `demo_data/`
  are kept out of it (the build checks it).
- Training: copy warm-up (AdamW lr {warmup_lr}, batch {warmup_batch}, final loss
  {warmup_loss:.3f}), then {epochs} epochs, AdamW lr {lr}, batch {batch}, final loss {loss:.3f}, about
  {minutes:.1f} min on {threads} CPU threads. Weights are float32 safetensors.
- Generation stops at `<|im_end|>` or `<|endoftext|>` (see `generation_config.json`).

Rebuild (also regenerates `demo_data/`; fixed seeds and thread count):

```
python scripts/build_demo_model.py
```
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the bundled demo model and dataset.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-out", type=Path, default=demo_corpus.DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=demo_corpus.SEED)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=800, help="copy warm-up steps")
    parser.add_argument("--warmup-batch", type=int, default=32)
    parser.add_argument("--warmup-lr", type=float, default=1e-3)
    parser.add_argument("--copy-per-epoch", type=int, default=3000, help="fresh copy pairs")
    parser.add_argument("--limit-docs", type=int, default=0, help="smoke runs only: train on N")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    pairs = demo_corpus.build_corpus(args.seed)
    demo_lora_tasks.write_demo_data(args.data_out, args.seed)
    tokenizer = train_tokenizer(
        [f"{qa.question}\n{qa.answer}" for qa in pairs], single_token_chars()
    )
    docs = build_documents(pairs, tokenizer, random.Random(args.seed))
    check_coverage(tokenizer, docs)
    if args.limit_docs:
        docs = docs[: args.limit_docs]
    logger.info(
        "vocab %d, %d pairs -> %d documents, %d tokens",
        len(tokenizer),
        len(pairs),
        len(docs),
        sum(len(d.ids) for d in docs),
    )

    eot_id, im_end_id = tokenizer.convert_tokens_to_ids([EOT, IM_END])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=eot_id,
        eos_token_id=im_end_id,
        pad_token_id=eot_id,
        use_cache=True,
    )
    model = Qwen2ForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    logger.info("model: %d parameters", params)
    warmup_loss = copy_warmup(model, tokenizer, eot_id, args)
    epoch_docs = []
    for epoch in range(args.epochs):
        copies = demo_copy.copy_pairs(args.seed, epoch, args.copy_per_epoch)
        demo_corpus.check_held_out(copies)
        epoch_docs.append(
            docs + [chat_doc(tokenizer, user_turn(qa.question), qa.answer) for qa in copies]
        )
    loss = pretrain(model, epoch_docs, eot_id, args.batch_size, args.lr, args.seed)

    model.generation_config = GenerationConfig(
        bos_token_id=eot_id, eos_token_id=[im_end_id, eot_id], pad_token_id=eot_id, do_sample=False
    )
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    finish_tokenizer_config(args.out)
    minutes = (time.perf_counter() - start) / 60
    (args.out / "README.md").write_text(
        MODEL_README.format(
            params=params,
            hidden=config.hidden_size,
            layers=config.num_hidden_layers,
            heads=config.num_attention_heads,
            kv=config.num_key_value_heads,
            vocab=len(tokenizer),
            seed=args.seed,
            epochs=args.epochs,
            lr=args.lr,
            batch=args.batch_size,
            loss=loss,
            min_seen=MIN_SEEN,
            minutes=minutes,
            warmup_steps=args.warmup_steps,
            warmup_lr=args.warmup_lr,
            warmup_batch=args.warmup_batch,
            warmup_loss=warmup_loss,
            copies=args.copy_per_epoch,
            threads=torch.get_num_threads(),
        ),
        encoding="utf-8",
    )

    # Smoke test the saved artefacts exactly as the service will load them.
    tok = AutoTokenizer.from_pretrained(args.out)
    loaded = AutoModelForCausalLM.from_pretrained(args.out).eval()
    for text in ["你好，请介绍一下人工智能。生僻字：龘靐齉 emoji 🤖 ok", "Tell me about Python"]:
        assert tok.decode(tok.encode(text)) == text, text
    size_mb = sum(f.stat().st_size for f in args.out.iterdir()) / 1e6
    print(
        f"demo model: {params:,} params, {size_mb:.1f} MB in {args.out}, "
        f"final loss {loss:.3f}, built in {minutes:.1f} min"
    )
    for prompt in demo_corpus.EXAMPLE_PROMPTS:
        chat = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        for kind, text in (("raw", prompt), ("chat", chat)):
            answer, n = generate(loaded, tok, text)
            print(f"[{kind}] {prompt!r} -> {answer!r} ({n} tokens)")


if __name__ == "__main__":
    main()
