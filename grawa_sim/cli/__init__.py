"""The command line (`python -m grawa_sim`) and the torch.distributed entry point."""
