"""perlhf: parameter-efficient RLHF (PERL) with LoRA and full fine-tuning side by side.

The Python API (:mod:`perlhf.api`): :func:`train_reward_model`, :func:`train_sft`, :func:`train_rl`.
Importing perlhf is light: torch and transformers load when a stage runs.
"""

__version__ = "0.1.0"

from perlhf.api import RewardModelResult, StageResult, train_reward_model, train_rl, train_sft  # noqa: E402

__all__ = ["RewardModelResult", "StageResult", "__version__", "train_reward_model", "train_rl", "train_sft"]
