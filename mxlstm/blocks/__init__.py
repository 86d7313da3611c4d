"""The building blocks: cells (one step), recurrent layers (time, stacks, directions, the
fused fast path in ``_fused``, length helpers in ``_sequence``), regularisers and the task
models built from them."""
