"""What the gatekeeper vouches for, signed with a key of its own: verification summaries
pushed beside images (``summaries``), checkpoints of the access log's hash chain
(``checkpoints``), and the DSSE envelopes both are made of (``dsse``)."""
