"""TRL's GRPOTrainer on the work of one of our training steps: the peer of bench/trainer_overhead.py.

Runs in its own virtualenv (var/.venv-trl, created by trainer_overhead.py; TRL is not a project
dependency). Same model folder, the same arith prompts through the same chat template, 2 prompts
× 8 generations of at most 64 tokens at temperature 1, fp32 on CPU, one optimizer step per
generation batch (num_iterations 1), no KL (beta 0). Prints ``TRL_STEP_S <median seconds>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a local model folder")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--generations", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("PSL_TORCH_THREADS", "2")))

    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trainer.data.datasets import ArithTask

    task = ArithTask()
    questions = task.questions("train", seed=0)[: args.questions * (args.steps + 1)]
    by_prompt = {q.prompt: q for q in questions}
    data = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": q.prompt}], "question": q.prompt} for q in questions]
    )

    def reward(completions: list, question: list, **_: object) -> list[float]:
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [task.grade(by_prompt[q], t) for q, t in zip(question, texts, strict=True)]

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.t0 = 0.0

        def on_step_begin(self, *a: object, **k: object) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, *a: object, **k: object) -> None:
            self.times.append(time.perf_counter() - self.t0)

    timer = StepTimer()
    n = args.questions * args.generations
    config = GRPOConfig(
        output_dir="/tmp/trl-peer",
        per_device_train_batch_size=n,
        num_generations=args.generations,
        gradient_accumulation_steps=1,
        num_iterations=1,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        beta=0.0,
        learning_rate=1e-6,
        max_steps=args.steps + 1,
        logging_steps=1,
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to=[],
        save_strategy="no",
        seed=0,
        shuffle_dataset=False,
        dataloader_num_workers=0,
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "left"
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=reward,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    measured = timer.times[1:]  # the first step warms up
    print(f"TRL steps (s): {', '.join(f'{x:.2f}' for x in timer.times)}")
    print(f"TRL_STEP_S {statistics.median(measured):.4f}")


if __name__ == "__main__":
    main()
