"""perlhf: parameter-efficient RLHF (PERL) with LoRA and full fine-tuning side by side."""

__version__ = "0.1.0"
