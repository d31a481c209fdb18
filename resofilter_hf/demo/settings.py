"""`StorySettings`: the sizes of one demo run (the world, the model, the trainings), checked by name."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..sweep import ProxySettings


@dataclass(frozen=True)
class StorySettings:
    """Sizes of one story run: `basic()` is the demo's and the quality benchmark's world, `quick()` a few seconds.

    `level` is the toy world's problem set (`resofilter_hf.toy.data.make_math_problems`): on ``"basic"`` (two
    one-digit steps) the `basic()` sizes train a tiny model to well over half the clean held-out problems in
    seconds, and a 30%-flawed pool costs it accuracy. The plain defaults are the ``"gsm"`` world (two to five
    GSM8K-like steps), where final-answer accuracy stays near zero (the model needs ~15k samples to start
    solving those problems) and held-out loss is the signal.

    `equal_steps` retrains every selection for as many optimizer steps as the full pool takes (`full_pool_steps`),
    so a kept half is seen twice as often and selections compare at equal compute. The basic world is
    compute-limited (accuracy still rises at the end of training), so with equal epochs instead (False, the
    paper's protocol) a smaller selection mostly loses for taking fewer steps.

    `n_reference` is the size of the trusted clean set the alignment scorers (`story_steps.ALIGNMENT`) compare each
    row's step with (`story_steps.make_reference`: its own stream, no question of the pool or the test set); 0
    builds none, and then no alignment scorer may be listed. A size or share out of range is refused with the
    field's name; `check_pool` (run by `run_story`) also refuses a pool without both flawed and clean rows.
    """

    level: str = "gsm"
    n_pool: int = 400
    flaw_rate: float = 0.3
    n_warmup: int = 800
    warmup_flaw_rate: float = 0.0
    n_test: int = 100
    num_layers: int = 4
    hidden_size: int = 128
    intermediate_size: int = 256
    num_heads: int = 4
    num_kv_heads: int = 2
    warmup: ProxySettings = field(default_factory=lambda: ProxySettings(epochs=2, learning_rate=2e-3))
    proxy: ProxySettings = field(default_factory=lambda: ProxySettings(epochs=1, learning_rate=1e-3))
    keep: float = 0.5
    scorers: tuple[str, ...] = ("resonance", "resonance_sgd")
    selections: tuple[str, ...] = ("resonance", "baseline_loss", "baseline_random")
    scoring_batch_size: int = 16
    equal_steps: bool = False
    n_reference: int = 0

    def __post_init__(self):
        from ..toy.problems import LEVELS

        if self.level not in LEVELS:
            raise ValueError(f"StorySettings: level must be one of {sorted(LEVELS)}, got {self.level!r}")
        for name in ("n_pool", "n_warmup", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"StorySettings: {name} must be >= 1, got {getattr(self, name)}")
        if self.n_reference < 0:
            raise ValueError(f"StorySettings: n_reference must be >= 0 (0: no reference set), got {self.n_reference}")
        for name in ("flaw_rate", "warmup_flaw_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"StorySettings: {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"StorySettings: keep must be in (0, 1], got {self.keep}")

    def check_pool(self) -> None:
        """Refuse a pool that cannot tell the story: AUROC needs flawed and clean rows in it."""
        n_flawed = round(self.n_pool * self.flaw_rate)
        if not 0 < n_flawed < self.n_pool:
            raise ValueError(
                f"StorySettings: n_pool={self.n_pool} at flaw_rate={self.flaw_rate} gives {n_flawed} flawed of "
                f"{self.n_pool} rows; the story needs both flawed and clean rows (raise n_pool or change flaw_rate)"
            )

    @classmethod
    def basic(cls) -> StorySettings:
        """The world where accuracy moves (fixed on pilot seed 99 from the clean-pool and flawed-pool arms only):
        800 basic problems, a 500-problem clean warm-up that teaches the format (accuracy ~0 after it), a
        3-layer width-96 Llama, 3 epochs on the pool. One training run on the pool and its evaluation take
        about 15 s on one CPU thread."""
        return cls(
            level="basic",
            n_pool=800,
            flaw_rate=0.3,
            n_warmup=500,
            n_test=200,
            num_layers=3,
            hidden_size=96,
            intermediate_size=192,
            num_heads=4,
            num_kv_heads=2,
            warmup=ProxySettings(epochs=2, batch_size=16, learning_rate=3e-3, max_length=96, max_new_tokens=64),
            proxy=ProxySettings(epochs=3, batch_size=16, learning_rate=3e-3, max_length=96, max_new_tokens=64),
            equal_steps=True,
            n_reference=128,
            scorers=("resonance", "resonance_sgd", "resonance_alignment"),
            selections=("resonance", "resonance_alignment", "baseline_loss", "baseline_random"),
        )

    @classmethod
    def quick(cls) -> StorySettings:
        """A few seconds: the basic world at a size that exercises every step, with numbers that mean nothing."""
        tiny = ProxySettings(max_steps=2, batch_size=4, max_new_tokens=24, eval_batch_size=16)
        sizes = dict(n_pool=24, n_warmup=16, n_test=8, hidden_size=64, intermediate_size=128, n_reference=8)
        return replace(cls.basic(), warmup=tiny, proxy=tiny, **sizes)

    def with_progress(self) -> StorySettings:
        """The same sizes with tqdm bars while training."""
        return replace(
            self, warmup=replace(self.warmup, show_progress=True), proxy=replace(self.proxy, show_progress=True)
        )
