"""The autotuner: closed-loop search over kernel parameters with a persistent archive."""
