"""One training job, in its own process: ``python -m gpt_service.training.worker --job-id ID``.

The job store is ``GPT_SERVICE_DATABASE_URL`` (set by the launcher; not in argv, as it may
hold a password). Reads the job row (spec and resolved paths) from the store, fine-tunes a PEFT LoRA adapter
with the transformers ``Trainer``, and writes the adapter, the tokenizer and ``metrics.json``
to the job's output directory. Under ``torchrun`` every rank runs this; rank 0 alone writes
to the store and the output directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from gpt_service.log_noise import silence_known_noise
from gpt_service.store.jobs import JobStore
from gpt_service.training.config import TRAIN, TrainJobSpec, TrainParams

logger = logging.getLogger("gpt_service.training.worker")

EXIT_PARENT_GONE = 3
EXIT_CANCELLED = 4
CHECKPOINTS = "checkpoints"


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Exit when the server (or CLI) that owns this job dies, rather than train orphaned.

    The job stays ``running`` in the store; the next server start marks it ``interrupted``
    and it can resume from its last checkpoint.
    """
    import psutil

    def check() -> None:
        while psutil.pid_exists(parent_pid):
            time.sleep(interval)
        logger.error("parent process %d is gone; stopping", parent_pid)
        os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=check, name="parent-watch", daemon=True).start()


def build_datasets(spec: TrainJobSpec, params: TrainParams, tokenizer: Any) -> tuple[Any, Any]:
    from datasets import Dataset

    from gpt_service.training.datasets import load_examples, tokenize_example

    examples = load_examples(Path(params.dataset_file), spec.dataset_format)
    features = [tokenize_example(tokenizer, e, spec.max_seq_length) for e in examples]
    kept = [f for f in features if any(label != -100 for label in f["labels"])]
    if not kept:
        raise ValueError(
            f"no example keeps a response token within max_seq_length={spec.max_seq_length}"
        )
    if len(kept) < len(features):
        logger.warning(
            "%d examples have no response within max_seq_length", len(features) - len(kept)
        )
    data = Dataset.from_list(kept)
    if spec.eval_split > 0 and len(kept) >= 4:
        split = data.train_test_split(test_size=spec.eval_split, seed=spec.seed)
        return split["train"], split["test"]
    return data, None


def training_arguments(spec: TrainJobSpec, output: Path, has_eval: bool, on_cpu: bool) -> Any:
    import inspect

    from transformers import TrainingArguments

    # transformers 5 folded warmup_ratio into warmup_steps (a float below 1 is a ratio).
    if "warmup_ratio" in inspect.signature(TrainingArguments).parameters:
        warmup: dict[str, Any] = {"warmup_ratio": spec.warmup_ratio}
    else:
        warmup = {"warmup_steps": spec.warmup_ratio}
    return TrainingArguments(
        output_dir=str(output / CHECKPOINTS),
        num_train_epochs=spec.num_epochs,
        max_steps=spec.max_steps or -1,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        learning_rate=spec.learning_rate,
        **warmup,
        lr_scheduler_type=spec.lr_scheduler_type,
        logging_steps=1,
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=2,
        eval_strategy="epoch" if has_eval else "no",
        seed=spec.seed,
        data_seed=spec.seed,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        use_cpu=on_cpu,
        # Only under torchrun: a backend outside a process group makes accelerate fail.
        ddp_backend=("gloo" if on_cpu else "nccl") if world_size() > 1 else None,
        ddp_find_unused_parameters=False,
    )


class Stage:
    """What the worker is doing, for the status (``progress.stage``) and for error messages."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id, self.name = store, job_id, "starting"

    def enter(self, name: str) -> None:
        self.name = name
        if is_rank_zero():
            self.store.update(self.job_id, progress={"stage": name}, heartbeat_at=time.time())


def check_module_names(model: Any, field: str, names: list[str]) -> None:
    """PEFT silently ignores a name that matches no module; a typo should fail the job."""
    modules = [name for name, _ in model.named_modules()]
    for wanted in names:
        if not any(m == wanted or m.endswith(f".{wanted}") for m in modules):
            raise ValueError(f"{field}: the base model has no module named '{wanted}'")


def with_lora(model: Any, spec: TrainJobSpec) -> Any:
    """Wrap the base model: only the LoRA matrices train (all linear layers by default)."""
    from peft import LoraConfig, get_peft_model

    tokens = spec.trainable_token_indices
    check_module_names(model, "modules_to_save", spec.modules_to_save or [])
    check_module_names(
        model, "trainable_token_indices", list(tokens) if isinstance(tokens, dict) else []
    )
    lora = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=spec.target_modules or "all-linear",
        modules_to_save=spec.modules_to_save,
        trainable_token_indices=spec.trainable_token_indices,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def train(store: JobStore, job_id: str, stage: Stage) -> dict[str, Any]:
    from transformers import DataCollatorForSeq2Seq, Trainer

    from gpt_service.engine.loader import LoadOptions, load_model
    from gpt_service.training.progress import StoreProgressCallback

    job = store.get(job_id, TRAIN)
    params = job.params
    spec = params.spec
    output = Path(params.output_path)
    options = LoadOptions(params.device, params.dtype, params.trust_remote_code)
    stage.enter("loading the base model")
    model, tokenizer, device = load_model(params.base_model_path, options)
    stage.enter("preparing the dataset")
    train_data, eval_data = build_datasets(spec, params, tokenizer)
    stage.enter("setting up LoRA")
    model = with_lora(model, spec)
    args = training_arguments(spec, output, eval_data is not None, device.type == "cpu")
    callback = StoreProgressCallback(store, job_id, job.progress)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[callback],
        processing_class=tokenizer,
    )
    resume_from = last_complete_checkpoint(output / CHECKPOINTS)
    logger.info("job %s: training (resume from %s)", job_id, resume_from or "scratch")
    stage.enter("training")
    metrics = {
        **run_trainer(trainer, model, resume_from),
        "num_train_examples": len(train_data),
        "num_eval_examples": len(eval_data) if eval_data is not None else 0,
        "resumed_from": Path(resume_from).name if resume_from else None,
        "num_processes": world_size(),
        "num_nodes": int(os.environ.get("GROUP_WORLD_SIZE", "1")),
    }
    if eval_data is not None:
        metrics["eval_loss"] = callback.latest.get("eval_loss")
    stage.enter("saving the adapter")
    if trainer.is_world_process_zero():
        save_result(model, tokenizer, output, spec, params, metrics)
    return metrics


def run_trainer(trainer: Any, model: Any, resume_from: Path | None) -> dict[str, Any]:
    """Train, or continue from a checkpoint; one taken at the last step is used as it is.

    A crash between the last checkpoint and saving the result leaves such a checkpoint, and
    the Trainer resumed from it would run one step past ``max_steps``.
    """
    if resume_from is not None:
        state = json.loads((resume_from / "trainer_state.json").read_text())
        if state.get("max_steps") and state["global_step"] >= state["max_steps"]:
            model.load_adapter(str(resume_from), adapter_name="default")
            losses = [e["loss"] for e in state.get("log_history", []) if "loss" in e]
            return {
                "train_loss": losses[-1] if losses else None,
                "epoch": state.get("epoch"),
                "global_step": state["global_step"],
            }
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return {**result.metrics, "global_step": trainer.state.global_step}


def save_result(
    model: Any,
    tokenizer: Any,
    output: Path,
    spec: TrainJobSpec,
    params: TrainParams,
    metrics: dict[str, Any],
) -> None:
    """A standard PEFT adapter directory: adapter, tokenizer, and what produced it."""
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    report = {
        "base_model": spec.base_model,
        "base_model_path": params.base_model_path,
        "dataset": params.dataset_file,
        "spec": spec.model_dump(),
        "metrics": metrics,
    }
    (output / "metrics.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest ``checkpoint-N`` that was fully written.

    A crash can leave the newest directory half written; the Trainer writes
    ``trainer_state.json`` after the weights, optimizer and RNG states, so it marks a whole one.
    """
    if not checkpoints.is_dir():
        return None
    found = [p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return path
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s", path)
    return None


def prepare_output(params: TrainParams) -> None:
    """A fresh run starts without checkpoints; a resumed one keeps them."""
    checkpoints = Path(params.output_path) / CHECKPOINTS
    if not params.resume and checkpoints.exists():
        shutil.rmtree(checkpoints)


def run(store: JobStore, job_id: str) -> int:
    from gpt_service.training.progress import JobCancelled

    rank_zero = is_rank_zero()
    stage = Stage(store, job_id)
    try:
        job = store.get(job_id, TRAIN)
        if rank_zero:
            prepare_output(job.params)
        metrics = train(store, job_id, stage)
    except JobCancelled as exc:
        logger.warning("%s", exc)
        return EXIT_CANCELLED
    except Exception as exc:
        logger.error("job %s failed:\n%s", job_id, traceback.format_exc())
        if rank_zero:  # the launcher turns the exit code into ``failed`` with this error
            message = f"while {stage.name}: {type(exc).__name__}: {exc}".strip()
            store.update(job_id, error=message[:2000])
        return 1
    if rank_zero:
        # Not ``completed`` yet: whoever launched this process marks it so once the process
        # has exited cleanly (and, in the server, once the adapter is loaded if asked).
        progress = {"progress": 100.0, "eta_seconds": 0.0, "stage": "finished"}
        store.update(job_id, result=metrics, progress=progress)
        logger.info("job %s finished training: %s", job_id, metrics)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run one LoRA fine-tuning job from the job store")
    parser.add_argument("--job-id", required=True)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GPT_SERVICE_DATABASE_URL"),
        help="the job store (default: $GPT_SERVICE_DATABASE_URL)",
    )
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_known_noise()
    if args.parent_pid:
        watch_parent(args.parent_pid)
    if not args.database_url:
        parser.error("no job store: set GPT_SERVICE_DATABASE_URL or --database-url")
    try:
        return run(JobStore(args.database_url, migrate=False), args.job_id)
    finally:
        leave_process_group()


def leave_process_group() -> None:
    """A data-parallel rank leaves its process group (the Trainer joined it) before exiting,
    as PyTorch asks: one that exited without it aborted in a C++ destructor ("terminate called
    without an active exception", SIGABRT) and the launcher failed the finished job."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
