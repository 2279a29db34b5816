"""How to fine-tune: dataset build, training backends and offline evaluation."""
