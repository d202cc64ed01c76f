"""The demo's synthetic preference task: generated from a seed, with a known gold reward.

A prompt names a topic and three distractor words: `"fruit: dog red plum."`. A response is a run
of words (`" pear fig cat"`). The gold reward is the on-topic share of the response, counted as if
every answer began with two empty pseudo-words:

    gold(prompt, response) = on / (n + 2)

where n is the number of words and `on` those from the prompt's topic (any other word, fragment or
stray token is off topic). Each on-topic word raises it, each other word lowers it, it lies in
[0, 1), and saying nothing (0) is as bad as saying only off-topic words: a policy can only raise it
by answering on topic, at some length. A causal transformer learns it with two attention hops
(each response word looks up the topic, the last token averages the matches), so a tiny RM fits it
in a few hundred steps.

The reference behaviour the tiny policy is first fitted to (`reference_completions`) is mediocre
on purpose: 4–10 words, each on topic with probability 0.4, so PPO has room to improve. Everything
here draws from its own `random.Random(seed)`; the global RNGs are never touched.
"""

from __future__ import annotations

import random

TOPICS: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "pear", "plum", "fig", "grape", "lemon", "mango", "peach"),
    "color": ("red", "blue", "green", "pink", "gold", "gray", "teal", "white"),
    "animal": ("cat", "dog", "fox", "owl", "bee", "cow", "yak", "hen"),
    "tool": ("saw", "axe", "drill", "hammer", "wrench", "nail", "rope", "chisel"),
}
WORDS: tuple[str, ...] = tuple(w for ws in TOPICS.values() for w in ws)
TOPIC_OF: dict[str, str] = {w: t for t, ws in TOPICS.items() for w in ws}

REFERENCE_ON_TOPIC = 0.4  # the mediocre reference's on-topic rate (chance is 1/len(TOPICS))
REFERENCE_WORDS = (4, 10)  # reference response length range, in words
PAIR_WORDS = (1, 12)  # length range of the responses in preference pairs


def topic_of_prompt(prompt: str) -> str:
    """The topic a prompt asks for: its first word, before the colon."""
    head = prompt.strip().split(":", 1)[0].strip()
    if head not in TOPICS:
        raise ValueError(f"not a synthetic prompt (unknown topic {head!r}): {prompt!r}")
    return head


def _prompt(rng: random.Random) -> str:
    topic = rng.choice(sorted(TOPICS))
    hints = " ".join(rng.choice(WORDS) for _ in range(3))
    return f"{topic}: {hints}."


def _response(rng: random.Random, topic: str, p_on: float, n_words: int) -> str:
    """n_words words, each from `topic` with probability p_on, else from another topic."""
    others = [w for w in WORDS if TOPIC_OF[w] != topic]
    words = [rng.choice(TOPICS[topic]) if rng.random() < p_on else rng.choice(others) for _ in range(n_words)]
    return "".join(" " + w for w in words)  # a leading space: the response continues the prompt


# --- the gold rule --------------------------------------------------------------------------


def gold_reward(prompt: str, response: str) -> float:
    """on-topic words / (words + 2); see the module docstring for why this form."""
    topic = topic_of_prompt(prompt)
    words = response.split()
    return sum(TOPIC_OF.get(w) == topic for w in words) / (len(words) + 2)


def gold_judge(prompt: str, resp_a: str, resp_b: str) -> float:
    """1.0 if the gold rule prefers a, 0.0 if it prefers b, 0.5 for a tie."""
    ga, gb = gold_reward(prompt, resp_a), gold_reward(prompt, resp_b)
    if abs(ga - gb) < 1e-9:
        return 0.5
    return 1.0 if ga > gb else 0.0


# --- generators -----------------------------------------------------------------------------


def make_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(f"prompts-{seed}")  # noqa: S311 - the demo task is seeded on purpose
    return [_prompt(rng) for _ in range(n)]


def make_pairs(n: int, seed: int, label_noise: float, length_bias: float = 0.0) -> list[dict]:
    """n rows {prompt, chosen, rejected}, chosen = the gold-preferred response, then a `label_noise`
    share of rows swapped. Both responses of a pair draw their own quality (on-topic rate) and
    length, so pairs range from easy to nearly tied; exact gold ties are redrawn.

    `length_bias`: the share of rows a length-biased rater labels instead, choosing the longer
    response whatever it says (pairs of equal length keep the gold label). Gold pays for on-topic
    words and never for length itself (an off-topic word always lowers it), so a reward model that
    learns this rater's habit can be gamed by a policy that just says more: the temptation
    `bench/length_temptation.py` measures. 0 draws nothing extra, so the rows are those of before."""
    rng = random.Random(f"pairs-{seed}")  # noqa: S311 - the demo task is seeded on purpose
    rows = []
    while len(rows) < n:
        prompt = _prompt(rng)
        topic = topic_of_prompt(prompt)
        a, b = (_response(rng, topic, rng.random(), rng.randint(*PAIR_WORDS)) for _ in range(2))
        rated = rate(rng, prompt, a, b, label_noise, length_bias)
        if rated is not None:
            rows.append({"prompt": prompt, "chosen": rated[0], "rejected": rated[1]})
    return rows


def rate(rng: random.Random, prompt: str, a: str, b: str, label_noise: float,
         length_bias: float = 0.0) -> tuple[str, str] | None:
    """The task's rater: (chosen, rejected) by the gold rule, then flipped for a `label_noise` share, and
    for a `length_bias` share labelled \"longer wins\" instead (see `make_pairs`); None for an exact gold tie."""
    ga, gb = gold_reward(prompt, a), gold_reward(prompt, b)
    if abs(ga - gb) < 1e-9:
        return None
    chosen, rejected = (a, b) if ga > gb else (b, a)
    if rng.random() < label_noise:
        chosen, rejected = rejected, chosen
    if length_bias and rng.random() < length_bias:
        n_chosen, n_rejected = len(chosen.split()), len(rejected.split())
        if n_rejected > n_chosen:
            chosen, rejected = rejected, chosen
    return chosen, rejected


def rate_pairs(prompts: list[str], first: list[str], second: list[str], seed: int, label_noise: float,
               length_bias: float = 0.0) -> list[dict]:
    """Rows {prompt, chosen, rejected} of two given responses per prompt (a policy's own samples),
    labelled by `rate` from its own seeded stream; gold ties and pairs with an empty response are left out."""
    rng = random.Random(f"rater-{seed}")  # noqa: S311 - the demo task is seeded on purpose
    rows = []
    for prompt, a, b in zip(prompts, first, second, strict=True):
        rated = rate(rng, prompt, a, b, label_noise, length_bias) if a.strip() and b.strip() else None
        if rated is not None:
            rows.append({"prompt": prompt, "chosen": rated[0], "rejected": rated[1]})
    return rows


def reference_completions(prompts: list[str], seed: int) -> list[str]:
    """One mediocre completion per prompt: what the tiny policy imitates before PPO."""
    rng = random.Random(f"reference-{seed}")  # noqa: S311 - the demo task is seeded on purpose
    return [_response(rng, topic_of_prompt(p), REFERENCE_ON_TOPIC, rng.randint(*REFERENCE_WORDS))
            for p in prompts]


def corpus(seed: int, n: int = 2000) -> list[str]:
    """Text covering the task's whole vocabulary, to train a tokenizer on: prompts, responses of
    every quality, and each topic's word list."""
    rng = random.Random(f"corpus-{seed}")  # noqa: S311 - the demo task is seeded on purpose
    texts = [" ".join(TOPICS) + ":."]
    texts += [f"{t}:" + "".join(" " + w for w in ws) for t, ws in TOPICS.items()]
    for _ in range(n):
        prompt = _prompt(rng)
        response = _response(rng, topic_of_prompt(prompt), rng.random(), rng.randint(*PAIR_WORDS))
        texts.append(prompt + response)
    return texts
