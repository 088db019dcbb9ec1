"""``python -m preimage ...`` is the same as the ``preimage`` command (handy under torchrun)."""
from .cli import main

main()
