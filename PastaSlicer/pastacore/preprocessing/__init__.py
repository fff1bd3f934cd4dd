"""What a network needs before it runs: HU normalisation and organ/lesion crops."""
